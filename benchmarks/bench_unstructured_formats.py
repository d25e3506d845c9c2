"""The unstructured 90% BERT-base-shaped model with each int8 kernel format, against dense int8 ONNX Runtime.

    python benchmarks/bench_unstructured_formats.py --out results/bench_unstructured_formats_vnni.json

One interleaved run (engines shuffled every round) per (threads, batch) at sequence 128: ONNX Runtime
dense int8, and the same unstructured artifact loaded with kernel_format 'blocks' (padded 1x4, the
format before 'gathered' existed), 'gathered' and 'auto' (per Linear kind, the format under which the
model's forward was faster, timed at load). The three give identical logits (checked). Also lists what
'auto' chose and measured. Needs the 'onnx' extra. Run on a quiet machine.
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

from pruneofa.bench.model import build_models, interleaved_samples, machine_info, ort_session
from pruneofa.fsutil import atomic_write_text
from pruneofa.runtime import kernels
from pruneofa.runtime.model import SparseModel

FORMATS = ("blocks", "gathered", "auto")


def chosen_by_kind(rt: SparseModel) -> dict[str, dict]:
    """The format 'auto' gave each Linear kind (qkv, attn_out, ffn_in, ffn_out), and the model's forward
    (one sequence of 128 tokens, median ms) it measured with that kind in each format."""
    chosen = {name.split(".")[1]: fmt for name, fmt in rt.kernel_formats().items()}
    return {kind: {"format": fmt, "forward_ms": rt.format_ms.get(kind, {})} for kind, fmt in chosen.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sample-ms", type=float, default=300)
    parser.add_argument("--linears-isa", choices=["auto", "avx2"], default="auto",
                        help="avx2: the sparse Linears take the AVX2 path (on a VNNI CPU: the format choice as an "
                        "AVX2 machine would face it, not that machine's speed; ORT keeps its own kernels)")
    args = parser.parse_args()
    if args.linears_isa == "avx2":
        kernels._ISA_CODES[None] = kernels._ISA_CODES["avx2"]  # every PackedLinearInt8 built without force_isa
    rng = np.random.default_rng(0)
    random.seed(0)
    info = machine_info()
    print(f"machine: {info['cpu']}, load average {info['loadavg']}, isa {info['features']['auto_isa']}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        models = build_models("bert-base", tmp, 0)
        for th in args.threads:
            rts, load_s = {}, {}
            for f in FORMATS:
                t0 = time.perf_counter()
                rts[f] = SparseModel.load(models["unstructured"], threads=th, kernel_format=f)
                load_s[f] = time.perf_counter() - t0
            choice = chosen_by_kind(rts["auto"])
            print(f"threads {th}: load s {json.dumps({f: round(v, 2) for f, v in load_s.items()})}; "
                  f"auto chose {json.dumps(choice)}")
            for batch in args.batch:
                ids = rng.integers(1000, models["config"].vocab_size, size=(batch, 128), dtype=np.int64)
                mask, types = np.ones_like(ids), np.zeros_like(ids)
                logits = {f: rt.run(ids, mask, types).logits for f, rt in rts.items()}
                assert all(np.array_equal(logits[f], logits["blocks"]) for f in FORMATS), "formats disagree"
                sess = ort_session(models["dense"], batch, 128, th, tmp)
                feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
                fns = {"ort_int8": lambda sess=sess, feeds=feeds: sess.run(None, feeds),
                       **{f: (lambda rt=rt, ids=ids, mask=mask, types=types: rt.run(ids, mask, types))
                          for f, rt in rts.items()}}
                samples = {e: [v * 1e3 for v in ms] for e, ms in interleaved_samples(fns, args.rounds,
                                                                                      args.sample_ms).items()}
                med = {e: statistics.median(v) for e, v in samples.items()}
                row = {"threads": th, "batch": batch, "seq": 128, "median_ms": med,
                       "spread_ms": {e: [min(v), max(v)] for e, v in samples.items()},
                       "vs_ort_int8": {f: med["ort_int8"] / med[f] for f in FORMATS},
                       "auto_vs_blocks": med["blocks"] / med["auto"], "auto_choice": choice, "load_s": load_s}
                rows.append(row)
                print(f"threads {th} batch {batch}: ORT int8 {med['ort_int8']:.1f} ms; " + "; ".join(
                    f"{f} {med[f]:.1f} ms (x{row['vs_ort_int8'][f]:.2f} ORT)" for f in FORMATS)
                    + f"; auto over blocks x{row['auto_vs_blocks']:.2f}")
            for rt in rts.values():
                rt.close()
    result = {"meta": {**info, "loadavg_after": machine_info()["loadavg"], "shape": "bert-base", "sparsity": 0.9,
                       "pattern": "unstructured", "linears_isa": args.linears_isa, "rounds": args.rounds,
                       "sample_ms": args.sample_ms}, "rows": rows}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
