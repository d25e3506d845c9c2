"""Attention alone per forward (all layers): the encoder's NumPy path, the fused fp32 kernel, the fused int8 one.

    python benchmarks/bench_attention.py --rounds 5 [--isa avx2]

All paths get the same fused-QKV output ``[3H, B*T]`` and write the context ``[H, B*T]``; the NumPy
path is `Encoder._attention_numpy` (BLAS matmuls on one thread per part, the extension's softmax),
what the runtime ran before the fused kernel. Rounds interleave the paths; medians are reported. The
int8 column is '-' where the path (--isa) has no int8 attention (avx2).
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from types import SimpleNamespace

import numpy as np

from pruneofa.runtime import kernels, ops
from pruneofa.runtime.encoder import Encoder
from pruneofa.runtime.layers import Splitter, Timer
from pruneofa.runtime.model import _blas_controller

SHAPES = {"bert-base": (768, 12, 12), "minilm": (384, 12, 6)}  # hidden, heads, layers (as `pruneofa bench`)


def _time(fn, sample_s: float) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < sample_s:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sample-s", type=float, default=0.3)
    ap.add_argument("--isa", default=None, help="force_isa of the fused kernels (default: this CPU's best)")
    args = ap.parse_args()
    isa = kernels._k.isa_name(kernels._isa_code(args.isa) if args.isa else 0)
    int8 = ops.attention_int8_available(args.isa)
    print(f"isa {isa}; ms per forward (attention of all layers), median of {args.rounds}")
    print("model      batch threads   numpy    fp32    int8  fp32/int8")
    blas = _blas_controller()
    for name in args.models:
        h, heads, layers = SHAPES[name]
        for b in args.batch:
            t = args.seq
            rng = np.random.default_rng(0)
            qkv = rng.standard_normal((3 * h, b * t)).astype(np.float32)
            ws = {"qkv": qkv, "ctx": np.empty((h, b * t), np.float32), "bias": np.zeros((b, 1, t), np.float32)}
            for th in args.threads:
                kernels.set_num_threads(th)
                splitter = Splitter(th)
                enc = SimpleNamespace(heads=heads, head_dim=h // heads, hidden=h, timer=Timer(), pos_bias=None)
                run = SimpleNamespace(ws=ws, masked=False, splitter=splitter)
                paths = {"numpy": partial(Encoder._attention_numpy, enc, run, b, t),
                         "fp32": partial(ops.attention_, qkv, ws["ctx"], heads, b, force_isa=args.isa)}
                if int8:
                    paths["int8"] = partial(ops.attention_, qkv, ws["ctx"], heads, b, force_isa=args.isa, int8=True)
                times: dict[str, list[float]] = {k: [] for k in paths}
                with blas():
                    for _ in range(args.rounds):
                        for key, fn in paths.items():
                            times[key].append(_time(fn, args.sample_s))
                ms = {k: statistics.median(v) * 1e3 * layers for k, v in times.items()}
                i8 = f"{ms['int8']:7.2f} {ms['fp32'] / ms['int8']:9.2f}" if int8 else "      -         -"
                print(f"{name:10s} {b:5d} {th:7d} {ms['numpy']:7.2f} {ms['fp32']:7.2f} {i8}")
                splitter.close()


if __name__ == "__main__":
    main()
