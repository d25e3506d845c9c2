"""Attention alone, fused in the extension vs the encoder's NumPy path, per forward (all layers).

    /work/bin/timed .venv/bin/python benchmarks/bench_attention.py --rounds 5

Both paths get the same fused-QKV output ``[3H, B*T]`` and write the context ``[H, B*T]``; the NumPy
path is `Encoder._attention_numpy` (BLAS matmuls on one thread per part, the extension's softmax),
what the runtime ran before the fused kernel. Rounds interleave the two; medians are reported.
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
    args = ap.parse_args()
    print(f"isa {kernels._k.isa_name(0)}; ms per forward (attention of all layers), median of {args.rounds}")
    print("model      batch threads   numpy   fused   x")
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
                enc = SimpleNamespace(heads=heads, head_dim=h // heads, hidden=h, splitter=Splitter(th),
                                      timer=Timer(), _masked=False, pos_bias=None)
                old, new = [], []
                with blas():
                    for _ in range(args.rounds):
                        old.append(_time(partial(Encoder._attention_numpy, enc, ws, b, t), args.sample_s))
                        new.append(_time(partial(ops.attention_, qkv, ws["ctx"], heads, b), args.sample_s))
                o, f = statistics.median(old) * 1e3 * layers, statistics.median(new) * 1e3 * layers
                print(f"{name:10s} {b:5d} {th:7d} {o:7.2f} {f:7.2f} {o / f:5.2f}")
                enc.splitter.close()


if __name__ == "__main__":
    main()
