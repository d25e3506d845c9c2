"""Whole-model benchmark: pruneofa's runtime against dense PyTorch and dense int8 ONNX Runtime.

Engines, all on the same token ids (full attention mask), one forward = tokens in, logits out:
  torch_fp32     the dense model (random weights) in PyTorch fp32, torch.set_num_threads(n)
  torch_int8     torch.ao.quantization.quantize_dynamic of the dense model (int8 Linears)
  ort_int8       the dense model exported to ONNX (static shape) then onnxruntime quantize_dynamic (QInt8
                 weights, uint8 activations per tensor): the honest competitor, intra_op_num_threads=n
  sparse_block   pruneofa runtime, 90% in 1x4 blocks, int8 (exported post-training, dynamic activations)
  sparse_unstr   pruneofa runtime, 90% unstructured, int8
Each round runs every engine once in a shuffled order, so load from other processes lands on all alike;
a sample is the mean of enough calls to last `--sample-ms` (at least one), after a 50 ms pause (see
`SETTLE_S`). Reported: median, min-max over
rounds, ratio = other median / this median against torch_fp32 and against ort_int8, "no speed-up" where
that ratio is <= 1.05. Also: the runtime's logits against `pruneofa.export.load` of the same artifact,
and a profile of the runtime (seconds per section) for each configuration.

This module imports torch, onnxruntime and the training code (it measures and builds with them); the
runtime modules never do, which is why it lives outside `pruneofa.runtime`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = ("torch_fp32", "torch_int8", "ort_int8", "sparse_block", "sparse_unstr")
SHAPES = {
    "bert-base": {},  # BertConfig() defaults: hidden 768, 12 layers, 12 heads, intermediate 3072
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536},
    # RobertaConfig() / MPNetConfig() defaults: BERT-base's sizes, with padding-offset positions and (MPNet)
    # the relative position bias in every layer's attention
    "roberta-base": {},
    "mpnet-base": {},
}
# shape -> (transformers class prefix, whether the model takes token_type_ids)
FAMILY = {"bert-base": ("Bert", True), "minilm": ("Bert", True), "roberta-base": ("Roberta", True),
          "mpnet-base": ("MPNet", False)}
NO_SPEEDUP = 1.05
# Pause before each sample: OpenMP (torch) and ONNX Runtime worker threads spin-wait for a while after a
# run; on a 2-core machine they would steal the next engine's cores and make multi-thread figures noise.
SETTLE_S = 0.05


def machine_info() -> dict[str, Any]:
    """CPU model and features, core count, load average: a benchmark is only as good as its machine."""
    from pruneofa.runtime import kernels

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "features": kernels.cpu_features(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version()}


def build_models(shape: str, tmp: Path, seed: int) -> dict[str, Any]:
    """Dense model + the two 90% sparse artifacts (exported post-training int8)."""
    import torch
    import transformers

    from pruneofa.config.schema import SparsityConfig
    from pruneofa.export import export_model
    from pruneofa.pruning.sparsifier import Sparsifier

    torch.manual_seed(seed)
    prefix, types = FAMILY[shape]
    config = getattr(transformers, f"{prefix}Config")(num_labels=2, **SHAPES[shape])
    dense = getattr(transformers, f"{prefix}ForSequenceClassification")(config).eval()
    out = {"dense": dense, "config": dense.config, "types": types}
    for pattern in ("block1x4", "unstructured"):
        model = copy.deepcopy(dense)
        sparsifier = Sparsifier(model, SparsityConfig(pattern=pattern))
        sparsifier.prune_to(0.9)
        out[pattern] = export_model(model, tmp / f"{shape}-{pattern}", sparsifier_metadata=sparsifier.metadata())
    return out


def ort_session(dense: Any, batch: int, seq: int, threads: int, tmp: Path, types: bool = True) -> Any:
    """The dense model as static-shape ONNX, dynamically quantized by onnxruntime (QInt8 weights)."""
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = tmp / f"dense-{id(dense)}-{batch}x{seq}.onnx"
    dst = src.with_suffix(".int8.onnx")
    if not dst.is_file():
        class Logits(torch.nn.Module):
            def __init__(self, m: Any) -> None:
                super().__init__()
                self.m = m

            def forward(self, ids: Any, mask: Any, *token_types: Any) -> Any:
                extra = {"token_type_ids": token_types[0]} if token_types else {}
                return self.m(input_ids=ids, attention_mask=mask, **extra).logits

        ids = torch.zeros((batch, seq), dtype=torch.int64)
        names = ["input_ids", "attention_mask", "token_type_ids"][:3 if types else 2]
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on HF's mask code; the static shape is intended
            torch.onnx.export(Logits(dense), (ids, torch.ones_like(ids), ids)[:len(names)], str(src), dynamo=False,
                              opset_version=17, input_names=names, output_names=["logits"], do_constant_folding=True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's quantizer logs a line per tensor, and advice, on the root logger
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        finally:
            root.setLevel(level)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])


def time_per_call(fn: Any, sample_s: float) -> float:
    """Seconds per call of `fn`, averaged over as many calls as fill `sample_s` (at least one)."""
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= sample_s:
            return dt / calls


def interleaved_samples(fns: dict[str, Any], rounds: int, sample_ms: float) -> dict[str, list[float]]:
    """Seconds per call of each engine, `rounds` samples each: one warm-up call each, then every round runs
    the engines in a shuffled order, pausing SETTLE_S before each sample."""
    for fn in fns.values():
        fn()  # warm-up: first-call allocations, ORT arena, kernel packing caches
    samples: dict[str, list[float]] = {e: [] for e in fns}
    for _ in range(rounds):
        order = list(fns)
        random.shuffle(order)
        for e in order:
            time.sleep(SETTLE_S)  # let the previous engine's spinning worker threads park
            samples[e].append(time_per_call(fns[e], sample_ms / 1000))
    return samples


def bench_config(models: dict[str, Any], runtimes: dict[str, Any], batch: int, seq: int, threads: int,
                 rounds: int, sample_ms: float, tmp: Path, rng: np.random.Generator) -> dict[str, Any]:
    import torch

    from pruneofa.export import load

    torch.set_num_threads(threads)
    dense = models["dense"]
    ids_np = rng.integers(1000, models["config"].vocab_size, size=(batch, seq), dtype=np.int64)
    mask_np, types_np = np.ones_like(ids_np), np.zeros_like(ids_np)
    ids, mask, types = (torch.from_numpy(a) for a in (ids_np, mask_np, types_np))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the deprecation notice of torch's quantized tensors
        qdense = models.setdefault("torch_int8", torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(dense), {torch.nn.Linear}, dtype=torch.qint8))
    takes_types = models.get("types", True)
    sess = ort_session(dense, batch, seq, threads, tmp, takes_types)
    feeds = {"input_ids": ids_np, "attention_mask": mask_np, "token_type_ids": types_np}
    if not takes_types:
        del feeds["token_type_ids"]
    block, unstr = runtimes["block1x4"], runtimes["unstructured"]

    def torch_run(m: Any) -> Any:
        with torch.inference_mode():
            extra = {"token_type_ids": types} if takes_types else {}
            return m(input_ids=ids, attention_mask=mask, **extra).logits

    fns = {
        "torch_fp32": lambda: torch_run(dense),
        "torch_int8": lambda: torch_run(qdense),
        "ort_int8": lambda: sess.run(None, feeds),
        "sparse_block": lambda: block.run(ids_np, mask_np, types_np),
        "sparse_unstr": lambda: unstr.run(ids_np, mask_np, types_np),
    }
    check = {}
    for pattern, rt in runtimes.items():  # correctness on this very input, against the PyTorch loader
        ref = models.setdefault(f"loaded-{pattern}", load(models[pattern]))
        want = torch_run(ref).numpy()
        got = rt.run(ids_np, mask_np, types_np).logits
        check[pattern] = {"max_abs_diff": float(np.abs(got - want).max()), "ref_max_abs": float(np.abs(want).max()),
                          "argmax_agree": float((got.argmax(1) == want.argmax(1)).mean())}
    samples = interleaved_samples(fns, rounds, sample_ms)
    med = {e: float(np.median(v)) for e, v in samples.items()}
    return {
        "batch": batch, "seq": seq, "threads": threads,
        "median_ms": {e: med[e] * 1e3 for e in ENGINES},
        "min_ms": {e: min(v) * 1e3 for e, v in samples.items()},
        "max_ms": {e: max(v) * 1e3 for e, v in samples.items()},
        "speedup_vs_fp32": {e: med["torch_fp32"] / med[e] for e in ENGINES},
        "speedup_vs_ort_int8": {e: med["ort_int8"] / med[e] for e in ENGINES},
        "check_vs_pytorch_loader": check,
        "profile_ms": {p: {k: v * 1e3 for k, v in rt.profile(ids_np, mask_np, repeats=3).items()}
                       for p, rt in runtimes.items()},
    }


def _ratio(r: float) -> str:
    return f"x{r:.2f}" if r > NO_SPEEDUP else f"x{r:.2f} no speed-up"


def format_row(shape: str, r: dict[str, Any]) -> list[str]:
    lines = [f"{shape} batch {r['batch']} seq {r['seq']} threads {r['threads']}"]
    for e in ENGINES:
        lines.append(f"  {e:13} {r['median_ms'][e]:9.1f} ms ({r['min_ms'][e]:.1f}-{r['max_ms'][e]:.1f})  "
                     f"vs fp32 {_ratio(r['speedup_vs_fp32'][e]):20} vs ORT int8 {_ratio(r['speedup_vs_ort_int8'][e])}")
    for p, c in r["check_vs_pytorch_loader"].items():
        lines.append(f"  check {p}: max |runtime - pruneofa.export.load| = {c['max_abs_diff']:.2e} "
                     f"(logits up to {c['ref_max_abs']:.2f}), argmax agreement {c['argmax_agree']:.0%}")
    return lines


def format_profile(profile: dict[str, float]) -> str:
    total = profile.get("total", 0.0) or 1e-12
    parts = sorted(((k, v) for k, v in profile.items() if k != "total"), key=lambda kv: -kv[1])
    other = total - sum(v for _, v in parts)
    cells = [f"{k} {v:.1f} ms ({v / total:.0%})" for k, v in parts] + [f"python/other {other:.1f} ms"]
    return f"total {total:.1f} ms: " + ", ".join(cells)


def run_benchmark(shapes: list[str], batches: list[int], seqs: list[int], threads: list[int], rounds: int = 5,
                  sample_ms: float = 0.0, seed: int = 0, out: Path | None = None,
                  skip: list[tuple[str, int, int]] | None = None, log: Any = print) -> dict[str, Any]:
    """Run every (shape, threads, batch, seq) configuration; print as it goes; write JSON to `out`."""
    import onnxruntime
    import torch

    from pruneofa.runtime.model import SparseModel

    random.seed(seed)
    rng = np.random.default_rng(seed)
    info = machine_info()
    log(f"machine: {info['cpu']}, {info['cores']} cores, load average {info['loadavg']}")
    log(f"kernel ISA: {info['features']['auto_isa']} (features {info['features']})")
    log(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, numpy {np.__version__}")
    log("cells: median ms (min-max over rounds); ratio = other engine's median / this median")
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for shape in shapes:
            models = build_models(shape, tmp, seed)
            for th in threads:
                runtimes = {p: SparseModel.load(models[p], threads=th) for p in ("block1x4", "unstructured")}
                for seq in seqs:
                    for batch in batches:
                        if skip and (shape, batch, seq) in skip:
                            continue
                        r = bench_config(models, runtimes, batch, seq, th, rounds, sample_ms, tmp, rng)
                        r["shape"] = shape
                        rows.append(r)
                        for line in format_row(shape, r):
                            log(line)
                        log(f"  profile sparse_block: {format_profile(r['profile_ms']['block1x4'])}")
                for rt in runtimes.values():
                    rt.close()
            del models
    info_after = machine_info()["loadavg"]
    log(f"load average after: {info_after}; wall {time.perf_counter() - t_start:.0f} s")
    result = {"meta": {**info, "loadavg_after": info_after, "engines": list(ENGINES), "sparsity": 0.9,
                       "rounds": rounds, "sample_ms": sample_ms, "settle_s": SETTLE_S, "torch": torch.__version__,
                       "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
                       "activations": "dynamic per tensor (post-training artifacts)"},
              "rows": rows}
    if out is not None:
        write_results(result, out, log)
    return result


def write_results(result: dict[str, Any], out: Path, log: Any = print) -> None:
    """The JSON (atomically) and, beside it, the plot of speed-ups and the runtime profile (`.png`)."""
    from pruneofa.fsutil import atomic_write_text
    from pruneofa.reports.plots import plot_bench

    atomic_write_text(out, json.dumps(result, indent=1))
    log(f"wrote {out}")
    png = plot_bench(result, out.with_suffix(".png"))
    if png is not None:
        log(f"wrote {png}")
