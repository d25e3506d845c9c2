"""Layer-level benchmark: sparse kernels vs dense int8 ONNX Runtime (not run in CI).

For each shape (N x K), token count and thread count, times in one interleaved run:
  ort_int8      dense MatMul quantized by onnxruntime.quantization.quantize_dynamic (per-tensor
                uint8 activations, int8 weights), token-major [T, K] in and [T, N] out as ORT wants
  numpy_fp32    dense W @ X with NumPy's BLAS
  block1x4_int8 90% sparse in 1x4 blocks, PackedLinearInt8 (quantize + matmul + dequantize)
  unstr_int8    90% unstructured, PackedLinearInt8
  unstr_fp32    90% unstructured, PackedLinearF32
Our kernels take feature-major [K, T] and return [N, T] (the runtime's layout between layers).
Each round runs every method once in a shuffled order (so load from other processes lands on all
methods alike); each sample is the mean of enough calls to last ~`--sample-ms`. Reports the median,
the spread (min..max over rounds) and ratio = ORT median / method median.

  python benchmarks/bench_kernels.py --out results/bench_kernels.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
from pathlib import Path

import numpy as np

SHAPES = {"bert-base": [(768, 768), (3072, 768), (768, 3072)], "minilm": [(384, 384), (1536, 384), (384, 1536)]}
METHODS = ["ort_int8", "numpy_fp32", "block1x4_int8", "unstr_int8", "unstr_fp32"]


def sparse_weights(rng, n, k, sparsity):
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.05
    blocks = rng.random((n, (k + 3) // 4)) >= sparsity
    w_block = w * np.repeat(blocks, 4, axis=1)[:, :k]
    w_unstr = w * (rng.random((n, k)) >= sparsity)
    return w_block, w_unstr


def quantize_weight(w):
    scale = np.maximum(np.abs(w).max(axis=1), 1e-8) / 127.0
    return np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8), scale.astype(np.float32)


def ort_session(w, bias, threads, tmp):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    n, k = w.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wT"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", n])],
        [numpy_helper.from_array(np.ascontiguousarray(w.T), "wT"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    src, dst = Path(tmp) / f"fp32_{n}x{k}.onnx", Path(tmp) / f"int8_{n}x{k}.onnx"
    onnx.save(model, src)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(dst), opts, providers=["CPUExecutionProvider"])


def time_sample(fn, sample_s):
    from pruneofa.bench.model import time_per_call

    fn()  # warm-up: first-call allocations and packing stay out of the sample
    return time_per_call(fn, sample_s)


def bench_config(n, k, t, threads, args, tmp, rng):
    from threadpoolctl import threadpool_limits

    from pruneofa.runtime import kernels

    kernels.set_num_threads(threads)
    w_block, w_unstr = sparse_weights(rng, n, k, 0.9)
    bias = rng.standard_normal(n).astype(np.float32) * 0.1
    x_tk = rng.standard_normal((t, k)).astype(np.float32)
    x_kt = np.ascontiguousarray(x_tk.T)
    qb, sb = quantize_weight(w_block)
    qu, su = quantize_weight(w_unstr)
    sess = ort_session(w_unstr, bias, threads, tmp)
    lin_b = kernels.PackedLinearInt8(qb, sb, bias, pattern="block1x4")
    lin_u = kernels.PackedLinearInt8(qu, su, bias, pattern="unstructured")
    lin_f = kernels.PackedLinearF32(w_unstr, bias)
    out_b, out_u, out_f = (np.empty((n, t), np.float32) for _ in range(3))
    wd = np.ascontiguousarray(w_unstr)
    fns = {
        "ort_int8": lambda: sess.run(None, {"x": x_tk}),
        "numpy_fp32": lambda: wd @ x_kt,
        "block1x4_int8": lambda: lin_b(x_kt, out=out_b),
        "unstr_int8": lambda: lin_u(x_kt, out=out_u),
        "unstr_fp32": lambda: lin_f(x_kt, out=out_f),
    }
    # sanity: the sparse int8 result is close to ORT's on the same unstructured weights
    ref = sess.run(None, {"x": x_tk})[0].T
    err = float(np.abs(lin_u(x_kt) - ref).max() / (np.abs(ref).max() + 1e-12))
    samples = {m: [] for m in METHODS}
    with threadpool_limits(limits=threads):
        for _ in range(args.rounds):
            order = METHODS[:]
            random.shuffle(order)
            for m in order:
                samples[m].append(time_sample(fns[m], args.sample_ms / 1000))
    med = {m: float(np.median(v)) for m, v in samples.items()}
    return {
        "N": n,
        "K": k,
        "tokens": t,
        "threads": threads,
        "isa": kernels.cpu_features()["auto_isa"],
        "blocks_kept_unstructured": lin_u.nblocks / (n * ((k + 3) // 4)),
        "rel_err_unstr_int8_vs_ort": err,
        "median_us": {m: med[m] * 1e6 for m in METHODS},
        "min_us": {m: min(v) * 1e6 for m, v in samples.items()},
        "max_us": {m: max(v) * 1e6 for m, v in samples.items()},
        "ratio_vs_ort": {m: med["ort_int8"] / med[m] for m in METHODS},
    }


def _cell(r: dict, m: str) -> str:
    med, lo, hi = r["median_us"][m], r["min_us"][m], r["max_us"][m]
    return f"{med:7.0f} ({lo:.0f}-{hi:.0f}) x{r['ratio_vs_ort'][m]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--models", nargs="+", default=["bert-base", "minilm"], choices=sorted(SHAPES))
    ap.add_argument("--tokens", nargs="+", type=int, default=[128, 1024])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--sample-ms", type=float, default=15.0)
    ap.add_argument("--quick", action="store_true", help="3 rounds, 128 tokens, 1 thread")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.tokens, args.threads = 3, [128], [1]

    import onnxruntime

    from pruneofa.runtime import kernels

    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)
    rows = []
    hdr = f"{'model':10} {'N x K':>10} {'T':>5} {'thr':>3} | " + " | ".join(f"{m:>22}" for m in METHODS)
    print(f"cpu: {kernels.cpu_features()}  onnxruntime {onnxruntime.__version__}  numpy {np.__version__}")
    print("cells: median us (min-max) xRATIO = ORT int8 median / median")
    print(hdr)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for n, k in SHAPES[model]:
                for t in args.tokens:
                    for th in args.threads:
                        r = bench_config(n, k, t, th, args, tmp, rng)
                        r["model"] = model
                        rows.append(r)
                        cells = [_cell(r, m) for m in METHODS]
                        print(
                            f"{model:10} {f'{n}x{k}':>10} {t:>5} {th:>3} | " + " | ".join(f"{c:>22}" for c in cells),
                            flush=True,
                        )
    meta = {
        "cpu": kernels.cpu_features(),
        "machine": platform.processor() or platform.machine(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "sparsity": 0.9,
        "rounds": args.rounds,
        "sample_ms": args.sample_ms,
        "methods": METHODS,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
