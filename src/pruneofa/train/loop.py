"""The reference masked-LM training loop (teacher preparation and sparse pre-training).

The whole step is `train_step`: mask update (the sparsifier's per-step hook, `Sparsifier.on_step`, which
every adapter calls too) -> learning rate (with rewinding) -> micro-batches
(MLM + distillation losses with row-keyed dropout, backward) -> clip -> optimizer step (the sparsifier's post-step hook
re-masks the weights). Adapters for other trainers copy this order.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from pruneofa.config.schema import DistillConfig, LRConfig, OptimConfig
from pruneofa.data.mlm import IGNORE_INDEX, BatchStream, MaskedBatch, MLMMasker, masking_generator
from pruneofa.distill import FrozenTeacher, attention_kl_loss, hidden_state_loss, kd_logits_loss
from pruneofa.pruning.schedule import GMPSchedule, lr_at
from pruneofa.pruning.sparsifier import Sparsifier
from pruneofa.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from pruneofa.train.distributed import current
from pruneofa.train.dropout import forward_key, row_keyed_dropout
from pruneofa.train.metrics import MetricsLog
from pruneofa.train.precision import resolve_precision

log = logging.getLogger(__name__)


@dataclass
class PhaseSpec:
    """One training phase: its length, optimizer, LR schedule and (optionally) distillation and pruning."""

    name: str
    steps: int
    lr: LRConfig
    optim: OptimConfig
    distill: DistillConfig | None = None
    schedule: GMPSchedule | None = None
    eval_every: int = 100
    checkpoint_every: int = 100


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=0.0, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=0.0, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@contextlib.contextmanager
def decode_only(model: nn.Module, chosen: torch.Tensor) -> Iterator[None]:
    """Run the vocabulary projection only at `chosen` positions ([B, L] bool); logits come out [n, V].

    The projection to a ~30k vocabulary costs as much as the whole encoder of a small model; the
    masked-LM loss needs it only at the ~15% masked positions. A pre-hook on the output embeddings
    (the decoder, whatever the architecture calls it) selects those rows of its input.
    """
    decoder = model.get_output_embeddings()
    if decoder is None:
        yield
        return
    handle = decoder.register_forward_pre_hook(lambda _module, args: (args[0][chosen], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def _decode_at(model: nn.Module, chosen: torch.Tensor | None, call: Callable[[], Any]) -> Any:
    """`call()` with the vocabulary projection at `chosen` positions only (None: at every position)."""
    if chosen is None:
        return call()
    with decode_only(model, chosen):
        return call()


def masked_lm_logits(
    model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor, forward: nn.Module | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels at the masked positions only (`forward`: the module to call, e.g. DDP-wrapped)."""
    chosen = labels != IGNORE_INDEX
    with decode_only(model, chosen):
        logits = (forward or model)(input_ids=input_ids).logits
    if logits.dim() == 3:  # no decoder found to hook: full logits, select here
        logits = logits[chosen]
    return logits, labels[chosen]


@torch.no_grad()
def evaluate_mlm(model: nn.Module, batches: list[MaskedBatch], device: torch.device) -> dict[str, float]:
    """Masked-token accuracy, mean cross-entropy and perplexity over fixed, pre-masked eval batches."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for batch in batches:
        logits, labels = masked_lm_logits(model, batch.input_ids.to(device), batch.labels.to(device))
        logits = logits.float()
        total_loss += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        count += int(labels.numel())
    model.train(was_training)
    mean = total_loss / max(count, 1)
    return {"mlm_accuracy": correct / max(count, 1), "loss": mean, "perplexity": float(torch.tensor(mean).exp())}


@dataclass
class Trainer:
    """The generic phase loop: schedule, LR, micro-batches, clip, step, eval, checkpoint, resume.

    Subclasses say what a batch is (`next_batch`), what the loss is (`losses`) and how to evaluate
    (`evaluate`); the step itself (`train_step`) is the same for masked-LM and downstream tasks.
    """

    model: nn.Module
    spec: PhaseSpec
    stream: BatchStream
    out_dir: Path
    device: torch.device
    seed: int
    metrics: MetricsLog
    stage: str = "train"
    teacher: FrozenTeacher | None = None
    sparsifier: Sparsifier | None = None
    params: list[nn.Parameter] | None = None
    on_step_end: list[Callable[[int], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dist = current()
        self.forward = self.dist.wrap(self.model)  # what the step calls; `self.model` stays unwrapped
        self.optimizer = make_optimizer(self.params or self.model.parameters(), self.spec.optim)
        if self.spec.schedule is not None and self.sparsifier is None:
            raise ValueError(f"phase '{self.spec.name}' has a pruning schedule but no sparsifier to apply it")
        if self.sparsifier is not None:
            self.sparsifier.bind_optimizer(self.optimizer)
        self.updates = self.spec.schedule.update_steps() if self.spec.schedule else []
        self.checkpoint_dir = self.out_dir / "checkpoints" / self.spec.name
        if self.spec.optim.precision == "auto":
            log.info("%s: precision auto -> %s on %s", self.spec.name,
                     resolve_precision("auto", self.device), self.device)

    def next_batch(self, step: int, micro: int) -> Any:
        raise NotImplementedError

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def evaluate(self) -> dict[str, Any]:
        raise NotImplementedError

    def distilling(self) -> bool:
        kd = self.spec.distill
        return self.teacher is not None and kd is not None and (
            kd.alpha_kd > 0 or kd.alpha_hidden > 0 or getattr(kd, "alpha_attention", 0.0) > 0)

    # -- the step -----------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        spec, accum = self.spec, self.spec.optim.grad_accum_steps
        target = self.sparsifier.on_step(step, spec.schedule) if self.sparsifier is not None else None
        if target is not None:  # a mask update: every process must have computed the same masks
            self.dist.check_same_masks(self.sparsifier.masks(), f"{spec.name} step {step}")
        lr = lr_at(step, spec.lr, spec.steps, self.updates)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        totals: dict[str, float] = {}
        for micro in range(accum):
            with self.dist.no_sync(self.forward, sync=micro == accum - 1), self.autocast():
                batch = self.next_batch(step, micro)
                with row_keyed_dropout(forward_key(self.seed, spec.name, step, micro), self.dist.rank):
                    terms = self.losses(batch)  # dropout masks as one process draws them, however many run
                (terms["loss"] / accum).backward()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / accum
        if spec.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], spec.optim.grad_clip)
        self.optimizer.step()  # post-step hook: weights re-masked
        self.optimizer.zero_grad(set_to_none=True)
        sparsity = self.sparsifier.sparsity if self.sparsifier else 0.0
        return {**totals, "lr": lr, "sparsity": sparsity, "mask_update": target is not None}

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast for the step's forward and backward when the phase asks for it (fp32 masters)."""
        enabled = resolve_precision(self.spec.optim.precision, self.device) == "bf16"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # -- the phase ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        start = 0
        if resume and has_checkpoint(self.checkpoint_dir):
            state = load_checkpoint(self.checkpoint_dir, self.model, self.optimizer)
            self.stream.load_state_dict(state["stream"])
            if self.sparsifier is not None:
                self.sparsifier.load_state_dict(state["sparsifier"])
                self.sparsifier.check(where=f"{self.spec.name} resume")
            start = int(state["step"])
            self.metrics.truncate_after(self.spec.name, start)
            log.info("%s: resumed at step %d from %s", self.spec.name, start, self.checkpoint_dir)
        self.model.train()
        main = self.dist.is_main
        bar = tqdm(range(start, self.spec.steps), desc=self.spec.name, initial=start, total=self.spec.steps,
                   dynamic_ncols=True, mininterval=2.0, disable=not main)
        for step in bar:
            began = time.perf_counter()
            record = self.train_step(step)
            record["step_time"] = time.perf_counter() - began
            if main:
                self.metrics.write({"stage": self.stage, "phase": self.spec.name, "step": step + 1, **record})
            bar.set_postfix(loss=f"{record['loss']:.3f}", sparsity=f"{record['sparsity']:.3f}",
                            lr=f"{record['lr']:.2e}", refresh=False)
            done = step + 1
            if done % self.spec.eval_every == 0 or done == self.spec.steps:
                result = self.evaluate()
                if main:
                        self.metrics.write({"stage": self.stage, "phase": "eval", "of": self.spec.name, "step": done,
                                        "eval": result})
                shown = ", ".join(f"{k} {v:.4g}" for k, v in flatten_metrics(result).items())
                bar.write(f"{self.spec.name} step {done}: {shown}")
            if done % self.spec.checkpoint_every == 0 or done == self.spec.steps:
                self.save(done)
            for callback in self.on_step_end:
                callback(done)
        bar.close()
        return self.evaluate()

    def save(self, step: int) -> None:
        state: dict[str, Any] = {"step": step, "stream": self.stream.state_dict(), "phase": self.spec.name}
        if self.sparsifier is not None:
            state["sparsifier"] = self.sparsifier.state_dict()
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_dir, self.model, self.optimizer, state)
        self.dist.barrier()


def flatten_metrics(result: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """{'dev': {'accuracy': 90.1}} -> {'dev.accuracy': 90.1}, for one-line display."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update(flatten_metrics(value, f"{prefix}{key}."))
        elif isinstance(value, int | float):
            out[f"{prefix}{key}"] = float(value)
    return out


def mlm_loss_scale(labels: torch.Tensor, rows: slice, world: int) -> float:
    """Factor that turns a rank's mean masked-LM loss into its share of the global batch's mean.

    Ranks hold different numbers of masked tokens; DDP averages their gradients, so each rank's mean must
    be weighted by world * (its masked tokens) / (all masked tokens). Exactly 1.0 with one process.
    """
    if world == 1:
        return 1.0
    chosen = labels != IGNORE_INDEX
    return world * int(chosen[rows].sum()) / max(int(chosen.sum()), 1)


@dataclass
class MLMTrainer(Trainer):
    """Masked-LM phases: teacher head warm-up and adaptation, sparse pre-training with distillation."""

    masker: MLMMasker | None = None
    eval_batches: list[MaskedBatch] = field(default_factory=list)
    mlm_scale: float = 1.0  # see mlm_loss_scale; set per micro-batch

    def next_batch(self, step: int, micro: int) -> MaskedBatch:
        ids = next(self.stream)  # the global batch: every rank draws and masks it, then keeps its rows
        accum = self.spec.optim.grad_accum_steps
        batch = self.masker(ids, masking_generator(self.seed, step * accum + micro))
        rows = self.dist.shard(batch, len(ids))
        self.mlm_scale = mlm_loss_scale(batch.labels, rows, self.dist.world)
        return MaskedBatch(batch.input_ids[rows].to(self.device), batch.labels[rows].to(self.device))

    def losses(self, batch: MaskedBatch) -> dict[str, torch.Tensor]:
        if not self.distilling():  # masked-LM alone needs the vocabulary projection only at masked positions
            logits, labels = masked_lm_logits(self.model, batch.input_ids, batch.labels, self.forward)
            loss = nn.functional.cross_entropy(logits.float(), labels) * self.mlm_scale
            return {"loss_mlm": loss, "loss": loss}
        kd = self.spec.distill
        masked = batch.labels != IGNORE_INDEX
        # The vocabulary projection runs where a term needs logits: everywhere for the paper's all-token KD,
        # at the masked positions for MLM or masked-position KD, nowhere for representation distillation.
        if kd.alpha_kd > 0 and kd.positions == "all":
            decoded = None
        else:
            decoded = masked if kd.alpha_kd > 0 or kd.alpha_mlm > 0 else torch.zeros_like(masked)
        extras = {"output_hidden_states": kd.alpha_hidden > 0, "output_attentions": kd.alpha_attention > 0}
        out = _decode_at(self.model, decoded, lambda: self.forward(input_ids=batch.input_ids, **extras))
        with torch.no_grad():
            target = _decode_at(self.teacher.model, decoded if kd.alpha_kd > 0 else torch.zeros_like(masked),
                                lambda: self.teacher(input_ids=batch.input_ids, **extras))
        logits_at_masked = out.logits[masked] if out.logits.dim() == 3 else out.logits  # no decoder to hook
        terms: dict[str, torch.Tensor] = {}
        loss = torch.zeros((), device=batch.input_ids.device)
        if kd.alpha_mlm > 0 or kd.alpha_kd > 0:
            terms["loss_mlm"] = nn.functional.cross_entropy(
                logits_at_masked.float(), batch.labels[masked]) * self.mlm_scale
            loss = loss + kd.alpha_mlm * terms["loss_mlm"]
        if kd.alpha_kd > 0:  # packed blocks: no padding, every position counts
            terms["loss_kd"] = kd_logits_loss(out.logits, target.logits, kd.temperature)
            if decoded is not None:  # a mean over this rank's masked tokens, weighted like the MLM term
                terms["loss_kd"] = terms["loss_kd"] * self.mlm_scale
            loss = loss + kd.alpha_kd * terms["loss_kd"]
        if kd.alpha_hidden > 0:
            chosen = slice(None) if kd.hidden_layers == "all" else slice(-1, None)
            terms["loss_hidden"] = hidden_state_loss(out.hidden_states[chosen], target.hidden_states[chosen],
                                                     kind=kd.hidden_loss)
            loss = loss + kd.alpha_hidden * terms["loss_hidden"]
        if kd.alpha_attention > 0:
            terms["loss_attention"] = attention_kl_loss(out.attentions, target.attentions)
            loss = loss + kd.alpha_attention * terms["loss_attention"]
        terms["loss"] = loss
        return terms

    def evaluate(self) -> dict[str, Any]:
        return evaluate_mlm(self.model, self.eval_batches, self.device)
