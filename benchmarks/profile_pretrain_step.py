"""Where a sparse pre-training step's time goes, and what each cheaper objective buys.

On the real MiniLM (or any `--model`), one sparse pre-training step at batch x seq tokens, with masks
fixed at 90% (the machinery's steady state), for each objective in one interleaved run:

    python benchmarks/profile_pretrain_step.py --steps 6 --out results/pretrain_step_profile.json

It reports
- the breakdown of the paper's step (teacher forward, student forward, loss, backward, optimizer) in ms;
- per objective: median step time and tokens per second as a ratio to the paper's objective;
- the sparsity machinery's cost: the same step with the masks' gradient hooks and post-step
  re-masking against the same weights with the masks detached.

Run it on a quiet machine: it is a timing.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from pruneofa.cli.run_cmd import _keep_large_allocations
from pruneofa.config.schema import DistillConfig, LRConfig, OptimConfig, SparsityConfig
from pruneofa.data.mlm import IGNORE_INDEX, BatchStream, MaskedBatch
from pruneofa.distill import FrozenTeacher, kd_logits_loss
from pruneofa.fsutil import atomic_write_text
from pruneofa.masks.core import detach_masks
from pruneofa.modeling import load_model
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.loop import MLMTrainer, PhaseSpec, make_optimizer
from pruneofa.train.metrics import MetricsLog

OBJECTIVES: dict[str, dict[str, Any]] = {
    "paper: MLM + logit KD, every token": {"alpha_kd": 0.5, "alpha_mlm": 0.5},
    "MLM + logit KD at masked positions": {"alpha_kd": 0.5, "alpha_mlm": 0.5, "positions": "masked"},
    "masked KD + hidden MSE (all layers)": {"alpha_kd": 0.5, "alpha_mlm": 0.5, "positions": "masked",
                                            "alpha_hidden": 1.0},
    "hidden cosine (last layer) + MLM": {"alpha_kd": 0.0, "alpha_mlm": 0.5, "alpha_hidden": 1.0,
                                         "hidden_loss": "cosine", "hidden_layers": "last"},
    "hidden MSE (all layers) alone": {"alpha_kd": 0.0, "alpha_mlm": 0.0, "alpha_hidden": 1.0},
    "hidden MSE + attention KL (eager attention)": {"alpha_kd": 0.0, "alpha_mlm": 0.0, "alpha_hidden": 1.0,
                                                    "alpha_attention": 1.0},
}
BF16 = {  # the same objectives under bfloat16 autocast (optim.precision: bf16)
    "paper, bf16 autocast": "paper: MLM + logit KD, every token",
    "masked-position KD, bf16 autocast": "MLM + logit KD at masked positions",
}


def _batch(vocab: int, batch: int, seq: int, seed: int) -> MaskedBatch:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, vocab, (batch, seq), generator=gen)
    chosen = torch.rand(batch, seq, generator=gen) < 0.15
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return MaskedBatch(torch.where(chosen, torch.full_like(ids, 103), ids), labels)


def _trainer(student, teacher, distill: dict[str, Any], sparsifier, out: Path, precision: str = "fp32") -> MLMTrainer:
    spec = PhaseSpec("profile", 10, LRConfig(peak=1e-5), OptimConfig(precision=precision),
                     distill=DistillConfig(**distill))
    stream = BatchStream(torch.zeros(1, 1, dtype=torch.long), 1, 0)
    return MLMTrainer(model=student, spec=spec, stream=stream, out_dir=out, device=torch.device("cpu"), seed=0,
                      metrics=MetricsLog.for_stage(out, False), teacher=teacher, sparsifier=sparsifier)


def _step(trainer: MLMTrainer, batch: MaskedBatch) -> float:
    # SDPA attention, as training runs it, except where the objective needs the eager attention's maps
    implementation = "eager" if trainer.spec.distill.alpha_attention > 0 else "sdpa"
    for model in (trainer.model, trainer.teacher.model):
        model.set_attn_implementation(implementation)
    began = time.perf_counter()
    with trainer.autocast():
        trainer.losses(batch)["loss"].backward()
    torch.nn.utils.clip_grad_norm_(trainer.optimizer.param_groups[0]["params"], 1.0)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - began


def breakdown(student, teacher: FrozenTeacher, batch: MaskedBatch, rounds: int) -> dict[str, float]:
    """The paper's step in parts (ms, medians): teacher forward, student forward, losses, backward, optimizer."""
    optimizer = make_optimizer(student.parameters(), OptimConfig())
    parts: dict[str, list[float]] = {k: [] for k in ("teacher_forward", "student_forward", "loss_kd_mlm",
                                                     "backward", "optimizer")}
    chosen = batch.labels != IGNORE_INDEX
    for model in (student, teacher.model):
        model.set_attn_implementation("sdpa")
    for _ in range(rounds):
        t0 = time.perf_counter()
        target = teacher(input_ids=batch.input_ids)
        t1 = time.perf_counter()
        out = student(input_ids=batch.input_ids)
        t2 = time.perf_counter()
        loss = 0.5 * torch.nn.functional.cross_entropy(out.logits[chosen], batch.labels[chosen])
        loss = loss + 0.5 * kd_logits_loss(out.logits, target.logits, 2.0)
        t3 = time.perf_counter()
        loss.backward()
        t4 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            parts[key].append(value * 1e3)
    return {k: round(statistics.median(v), 1) for k, v in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, nargs="+", default=[128])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per objective (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("results/pretrain_step_profile.json"))
    parser.add_argument("--machinery-only", action="store_true",
                        help="only the sparsity machinery's overhead, added to the --out file's other figures")
    args = parser.parse_args()
    _keep_large_allocations()  # as `pruneofa run` does, so the step costs what it costs in a run
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dense, _, _ = load_model(args.model, head="mlm")
    vocab = dense.config.vocab_size
    scratch = Path("/tmp/pruneofa-profile")
    scratch.mkdir(exist_ok=True)
    teacher = FrozenTeacher(copy.deepcopy(dense))
    student = copy.deepcopy(dense).train()
    sparsifier = Sparsifier(student, SparsityConfig())
    sparsifier.prune_to(0.9)
    result: dict[str, Any] = {"model": args.model, "batch": args.batch, "threads": args.threads,
                              "torch": torch.__version__, "sequence": {}}
    if args.machinery_only:
        previous = json.loads(args.out.read_text()) if args.out.is_file() else result
        previous["sparsity_machinery"] = machinery_overhead(student, teacher, sparsifier, args, vocab, scratch)
        print(json.dumps(previous["sparsity_machinery"], indent=1))
        atomic_write_text(args.out, json.dumps(previous, indent=2))
        return
    for seq in args.seq:
        batch = _batch(vocab, args.batch, seq, seed=seq)
        trainers = {name: _trainer(student, teacher, cfg, sparsifier, scratch) for name, cfg in OBJECTIVES.items()}
        trainers |= {name: _trainer(student, teacher, OBJECTIVES[base], sparsifier, scratch, "bf16")
                     for name, base in BF16.items()}
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for trainer in trainers.values():  # one warm-up step each
            _step(trainer, batch)
        for _ in range(args.steps):  # interleaved rounds
            for name, trainer in trainers.items():
                times[name].append(_step(trainer, batch))
        paper = statistics.median(times[next(iter(OBJECTIVES))])
        rows = {}
        for name, samples in times.items():
            median = statistics.median(samples)
            rows[name] = {"step_ms": round(median * 1e3, 1), "tokens_per_s": round(args.batch * seq / median, 1),
                          "speed_vs_paper": round(paper / median, 2)}
        result["sequence"][str(seq)] = {"objectives": rows,
                                        "paper_breakdown_ms": breakdown(student, teacher, batch, args.steps)}
        print(json.dumps({seq: result["sequence"][str(seq)]}, indent=1), flush=True)
    result["sparsity_machinery"] = machinery_overhead(student, teacher, sparsifier, args, vocab, scratch)
    print(json.dumps(result["sparsity_machinery"], indent=1))
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def machinery_overhead(student, teacher, sparsifier, args, vocab: int, scratch: Path) -> dict[str, float]:
    """The same masked-position KD step with and without the masks' hooks and re-masking, interleaved."""
    batch = _batch(vocab, args.batch, args.seq[0], seed=7)
    cfg = OBJECTIVES["MLM + logit KD at masked positions"]
    plain = copy.deepcopy(student)
    detach_masks(plain)  # same weights, exact zeros, no hooks and no re-masking
    with_masks = _trainer(student, teacher, cfg, sparsifier, scratch)
    without = _trainer(plain, teacher, cfg, None, scratch)
    samples: dict[str, list[float]] = {"with": [], "without": []}
    _step(with_masks, batch)
    _step(without, batch)
    for _ in range(args.steps):
        samples["with"].append(_step(with_masks, batch))
        samples["without"].append(_step(without, batch))
    on, off = statistics.median(samples["with"]), statistics.median(samples["without"])
    return {"step_ms_with_masks": round(on * 1e3, 1), "step_ms_without": round(off * 1e3, 1),
            "overhead_percent": round(100 * (on / off - 1), 2), "steps": args.steps,
            "overhead_percent_per_pair": [round(100 * (a / b - 1), 1) for a, b in
                                          zip(samples["with"], samples["without"], strict=True)]}


if __name__ == "__main__":
    main()
