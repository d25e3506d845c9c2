"""The 90% BERT-base-shaped models with fp32 and with int8 attention matmuls, against dense int8 ONNX Runtime.

    python benchmarks/bench_attention_precision.py --out results/bench_attention_precision_vnni.json

One interleaved run (engines shuffled every round, a 50 ms pause before each sample, as `pruneofa bench`)
per (threads, batch) at sequence 128: ONNX Runtime dense int8 and, for each pattern (1x4 blocks,
unstructured), the same artifact loaded with `attention='fp32'` and `attention='int8'`. Also, on the
same input, each one's logits against `pruneofa.export.load` of the artifact (PyTorch, fp32 throughout):
the largest difference and the argmax agreement, over `--check-batches` batches of random tokens with
random padding (the first sequence full). Needs the 'onnx' extra and the VNNI (or portable) kernels for
int8 attention. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pruneofa.bench.model import SETTLE_S, build_models, machine_info, ort_session, time_per_call
from pruneofa.fsutil import atomic_write_text
from pruneofa.runtime.model import SparseModel

PATTERNS = ("block1x4", "unstructured")
PRECISIONS = ("fp32", "int8")


def check_logits(models: dict, rts: dict, batches: int, batch: int, rng: np.random.Generator) -> dict:
    """Per engine: max |logits - PyTorch loader|, the loader's max |logit|, argmax agreement (padded inputs)."""
    import torch

    from pruneofa.export import load

    out: dict[str, dict] = {}
    for pattern in PATTERNS:
        ref = load(models[pattern])
        diffs: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        agree: dict[str, list[bool]] = {p: [] for p in PRECISIONS}
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
            for p in PRECISIONS:
                got = rts[(pattern, p)].run(ids, mask, types).logits
                diffs[p].append(float(np.abs(got - want).max()))
                agree[p] += list(got.argmax(1) == want.argmax(1))
        for p in PRECISIONS:
            out[f"{pattern}/{p}"] = {"max_abs_diff": max(diffs[p]), "ref_max_abs": ref_max,
                                     "argmax_agree": float(np.mean(agree[p])), "sequences": len(agree[p])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample-ms", type=float, default=0, help="0: one call per sample (a lone request)")
    parser.add_argument("--check-batches", type=int, default=8, help="batches of 8 padded sequences to check")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    random.seed(0)
    info = machine_info()
    print(f"machine: {info['cpu']}, load average {info['loadavg']}, isa {info['features']['auto_isa']}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = build_models("bert-base", tmp, 0)
        for th in args.threads:
            rts = {(pat, p): SparseModel.load(models[pat], threads=th, attention=p)
                   for pat in PATTERNS for p in PRECISIONS}
            check = check_logits(models, rts, args.check_batches, 8, rng) if th == args.threads[0] else None
            if check:
                for name, c in check.items():
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
                for fn in fns.values():
                    fn()
                samples = {e: [] for e in fns}
                for _ in range(args.rounds):
                    order = list(fns)
                    random.shuffle(order)
                    for e in order:
                        time.sleep(SETTLE_S)
                        samples[e].append(time_per_call(fns[e], args.sample_ms / 1000) * 1e3)
                med = {e: statistics.median(v) for e, v in samples.items()}
                row = {"threads": th, "batch": batch, "seq": 128, "median_ms": med,
                       "spread_ms": {e: [min(v), max(v)] for e, v in samples.items()},
                       "vs_ort_int8": {e: med["ort_int8"] / med[e] for e in med if e != "ort_int8"},
                       "int8_over_fp32": {pat: med[f"{pat}/fp32"] / med[f"{pat}/int8"] for pat in PATTERNS},
                       "check": check}
                rows.append(row)
                print(f"threads {th} batch {batch}: ORT int8 {med['ort_int8']:.1f} ms; " + "; ".join(
                    f"{pat} fp32 {med[pat + '/fp32']:.1f} (x{row['vs_ort_int8'][pat + '/fp32']:.2f} ORT), "
                    f"int8 {med[pat + '/int8']:.1f} (x{row['vs_ort_int8'][pat + '/int8']:.2f} ORT), "
                    f"int8 over fp32 x{row['int8_over_fp32'][pat]:.2f}" for pat in PATTERNS), flush=True)
            for rt in rts.values():
                rt.close()
    result = {"meta": {**info, "loadavg_after": machine_info()["loadavg"], "shape": "bert-base", "sparsity": 0.9,
                       "rounds": args.rounds, "sample_ms": args.sample_ms, "settle_s": SETTLE_S}, "rows": rows}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
