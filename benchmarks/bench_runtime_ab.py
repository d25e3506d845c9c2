"""Two ways of loading the 90% BERT-base-shaped models, A/B in one interleaved run, against dense int8 ONNX Runtime.

    python benchmarks/bench_runtime_ab.py --ab attention --out results/bench_attention_precision_vnni.json
    python benchmarks/bench_runtime_ab.py --ab ranges --out results/bench_fused_ranges_vnni.json

--ab attention: the same artifact with `attention='fp32'` and `attention='int8'` (both attention matmuls in
int8). --ab ranges: the encoder's LayerNorms and GELU handing their output's range to the next Linear
(`pass_ranges`, the default) against every Linear finding its own (logits identical: asserted here).

One interleaved run (engines shuffled every round, a 50 ms pause before each sample, as `pruneofa bench`)
per (threads, batch) at sequence 128: ONNX Runtime dense int8 and, for each pattern (1x4 blocks,
unstructured), both variants. Also, on the same input, each one's logits against `pruneofa.export.load` of
the artifact (PyTorch, fp32 throughout): the largest difference and the argmax agreement, over
`--check-batches` batches of random tokens with random padding (the first sequence full). Needs the 'onnx'
extra (and the VNNI or portable kernels for int8 attention). Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np

from pruneofa.bench.model import SETTLE_S, build_models, interleaved_samples, machine_info, ort_session
from pruneofa.fsutil import atomic_write_text
from pruneofa.runtime.model import SparseModel

PATTERNS = ("block1x4", "unstructured")


def _attention(precision: str):
    return lambda path, threads: SparseModel.load(path, threads=threads, attention=precision)


def _ranges(passed: bool):
    def load(path, threads):
        rt = SparseModel.load(path, threads=threads)
        rt.encoder.pass_ranges = passed
        return rt
    return load


# --ab: (variant name, loader) for A then B; the ratio reported is A's time over B's
VARIANTS = {"attention": (("fp32", _attention("fp32")), ("int8", _attention("int8"))),
            "ranges": (("measured", _ranges(False)), ("passed", _ranges(True)))}


def check_logits(models: dict, rts: dict, variants: tuple[str, str], batches: int, batch: int,
                 rng: np.random.Generator) -> dict:
    """Per engine: max |logits - PyTorch loader|, the loader's max |logit|, argmax agreement (padded inputs)."""
    import torch

    from pruneofa.export import load

    out: dict[str, dict] = {}
    for pattern in PATTERNS:
        ref = load(models[pattern])
        diffs: dict[str, list[float]] = {p: [] for p in variants}
        agree: dict[str, list[bool]] = {p: [] for p in variants}
        logits: dict[str, list[np.ndarray]] = {p: [] for p in variants}
        ref_max = 0.0
        for _ in range(batches):
            ids = rng.integers(1000, models["config"].vocab_size, size=(batch, 128), dtype=np.int64)
            lengths = rng.integers(8, 129, size=batch)
            lengths[0] = 128
            mask = (np.arange(128)[None, :] < lengths[:, None]).astype(np.int64)
            types = np.zeros_like(ids)
            with torch.inference_mode():
                want = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                           token_type_ids=torch.from_numpy(types)).logits.numpy()
            ref_max = max(ref_max, float(np.abs(want).max()))
            for p in variants:
                got = rts[(pattern, p)].run(ids, mask, types).logits
                logits[p].append(got.copy())
                diffs[p].append(float(np.abs(got - want).max()))
                agree[p] += list(got.argmax(1) == want.argmax(1))
        a, b = variants
        out[f"{pattern}/identical"] = all(np.array_equal(x, y) for x, y in zip(logits[a], logits[b], strict=True))
        for p in variants:
            out[f"{pattern}/{p}"] = {"max_abs_diff": max(diffs[p]), "ref_max_abs": ref_max,
                                     "argmax_agree": float(np.mean(agree[p])), "sequences": len(agree[p])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ab", choices=sorted(VARIANTS), default="attention", help="what to compare")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample-ms", type=float, default=0, help="0: one call per sample (a lone request)")
    parser.add_argument("--check-batches", type=int, default=8, help="batches of 8 padded sequences to check")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    random.seed(0)
    variants = VARIANTS[args.ab]
    names = tuple(name for name, _ in variants)
    a, b = names
    info = machine_info()
    print(f"machine: {info['cpu']}, load average {info['loadavg']}, isa {info['features']['auto_isa']}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = build_models("bert-base", tmp, 0)
        for th in args.threads:
            rts = {(pat, name): loader(models[pat], th) for pat in PATTERNS for name, loader in variants}
            check = check_logits(models, rts, names, args.check_batches, 8, rng) if th == args.threads[0] else None
            if check:
                for name, c in check.items():
                    if name.endswith("/identical"):
                        print(f"check {name}: {c}")
                        continue
                    print(f"check {name}: max |runtime - export.load| {c['max_abs_diff']:.2e} (logits up to "
                          f"{c['ref_max_abs']:.2f}), argmax agreement {c['argmax_agree']:.1%} of {c['sequences']}")
            for batch in args.batch:
                ids = rng.integers(1000, models["config"].vocab_size, size=(batch, 128), dtype=np.int64)
                mask, types = np.ones_like(ids), np.zeros_like(ids)
                sess = ort_session(models["dense"], batch, 128, th, tmp)
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
                fns = {"ort_int8": lambda sess=sess, feeds=feeds: sess.run(None, feeds),
                       **{f"{pat}/{p}": (lambda rt=rt, ids=ids, mask=mask, types=types: rt.run(ids, mask, types))
                          for (pat, p), rt in rts.items()}}
                samples = {e: [v * 1e3 for v in ms] for e, ms in interleaved_samples(fns, args.rounds,
                                                                                      args.sample_ms).items()}
                med = {e: statistics.median(v) for e, v in samples.items()}
                row = {"threads": th, "batch": batch, "seq": 128, "median_ms": med,
                       "spread_ms": {e: [min(v), max(v)] for e, v in samples.items()},
                       "vs_ort_int8": {e: med["ort_int8"] / med[e] for e in med if e != "ort_int8"},
                       f"{b}_over_{a}": {pat: med[f"{pat}/{a}"] / med[f"{pat}/{b}"] for pat in PATTERNS},
                       "check": check}
                rows.append(row)
                print(f"threads {th} batch {batch}: ORT int8 {med['ort_int8']:.1f} ms; " + "; ".join(
                    f"{pat} {a} {med[f'{pat}/{a}']:.1f} (x{row['vs_ort_int8'][f'{pat}/{a}']:.2f} ORT), "
                    f"{b} {med[f'{pat}/{b}']:.1f} (x{row['vs_ort_int8'][f'{pat}/{b}']:.2f} ORT), "
                    f"{b} over {a} x{row[f'{b}_over_{a}'][pat]:.2f}" for pat in PATTERNS), flush=True)
            for rt in rts.values():
                rt.close()
    result = {"meta": {**info, "loadavg_after": machine_info()["loadavg"], "ab": args.ab, "variants": names,
                       "shape": "bert-base", "sparsity": 0.9,
                       "rounds": args.rounds, "sample_ms": args.sample_ms, "settle_s": SETTLE_S}, "rows": rows}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
