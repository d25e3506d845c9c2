"""Linear layers of the runtime (sparse int8 kernels or dense NumPy), a section timer and a thread splitter.

Activation quantization, per pruned Linear (the `activations` mode of `SparseModel.load`):

* ``"static"``: the artifact's QAT input scale and zero point (uint8 affine, per tensor), rounded as
  PyTorch's fake-quant does (``rint(x / scale) + zp``, clipped to 0..255). This is what the QAT model
  trained with and what `pruneofa.export.load` computes, so the runtime reproduces it closely.
* ``"dynamic"``: per-tensor uint8 from this call's min/max, as ONNX Runtime's dynamic quantization
  does (the kernels' fused quantize). The only choice for a post-training artifact (it has no
  activation scales); its error against the fp32-activation reference is the quantization error.
* ``"fp32"``: no activation quantization; the dequantized weights through the sparse fp32 kernel. It
  matches `pruneofa.export.load` of a post-training artifact to float rounding, which makes it the
  mode that tests the encoder's wiring tightly.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pruneofa.runtime import kernels

MODES = ("auto", "static", "dynamic", "fp32")


class Timer:
    """Accumulated seconds per section of the forward (always on: ~100 clock reads per forward)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.split_quantize = False  # profile mode: time the dynamic quantize apart from the matmul

    def lap(self, name: str, t0: float) -> float:
        t = time.perf_counter()
        self.totals[name] += t - t0
        return t

    def reset(self) -> None:
        self.totals.clear()


class SparseLinear:
    """A pruned Linear through the kernels: ``y[N, T] = W x[K, T] + b`` (feature-major in and out)."""

    def __init__(self, q: np.ndarray, scales: np.ndarray, bias: np.ndarray | None, *, pattern: str,
                 mode: str, act: dict | None, timer: Timer, kernel_format: str = "blocks") -> None:
        if mode not in ("static", "dynamic", "fp32"):
            raise ValueError(f"mode={mode!r}: expected 'static', 'dynamic' or 'fp32'")
        if mode == "static" and act is None:
            raise ValueError("static activation quantization needs the artifact's input scale (a QAT export)")
        self.mode, self.timer = mode, timer
        self.out_features, self.in_features = q.shape
        if mode == "fp32":
            self._f32 = kernels.PackedLinearF32(q.astype(np.float32) * scales[:, None], bias)
        else:
            # "both" packs both formats, so that SparseModel can time them in the model and keep one
            if kernel_format not in ("both", *kernels.KERNEL_FORMATS):
                raise ValueError(f"kernel_format={kernel_format!r}: expected 'both' or one of {kernels.KERNEL_FORMATS}")
            formats = ["blocks"] if pattern == "block1x4" else \
                list(kernels.KERNEL_FORMATS) if kernel_format == "both" else [kernel_format]
            self._packs = {f: kernels.PackedLinearInt8(q, scales, bias, pattern=pattern, kernel_format=f)
                           for f in formats}
            self.use(formats[0])
        # Static mode: the QAT scale and zero point, rounded in the kernels as PyTorch's fake-quant does
        # (rint(x * float32(1 / scale)) + zp); dynamic mode passes none and the kernels use each call's range.
        self._qparams = ({"scale": float(np.float32(act["scale"])), "zero_point": int(act["zero_point"])}
                         if mode == "static" else {})

    @property
    def kernel_formats(self) -> list[str]:
        """The int8 kernel formats packed (two while the model times them, then one)."""
        return [] if self.mode == "fp32" else list(self._packs)

    def use(self, kernel_format: str) -> None:
        self._i8, self.kernel_format = self._packs[kernel_format], kernel_format

    def keep_only_current(self) -> None:
        if self.mode != "fp32":
            self._packs = {self.kernel_format: self._i8}

    def __call__(self, x: np.ndarray, out: np.ndarray, x_range: tuple[float, float] | None = None) -> np.ndarray:
        """`x_range`: x's exact (min, max) from the op that wrote it, so dynamic quantization skips its pass."""
        t0 = time.perf_counter()
        if self.mode == "fp32":
            self._f32(x, out=out)
        elif not self.timer.split_quantize:  # one native call: quantize (dynamic or QAT's), tile, multiply
            self._i8(x, out=out, x_range=x_range, **self._qparams)
        else:
            qa = kernels.quantize_activations(x, x_range=x_range, **self._qparams)
            t0 = self.timer.lap("quantize", t0)
            self._i8.matmul_quantized(qa, out=out)
        self.timer.lap("sparse_linear", t0)
        return out


class DenseLinear:
    """A Linear the export kept dense (task heads): fp32 NumPy matmul."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, timer: Timer) -> None:
        self.w = np.ascontiguousarray(weight, dtype=np.float32)
        self.b = None if bias is None else np.asarray(bias, np.float32).reshape(-1, 1)
        self.out_features, self.in_features = self.w.shape
        self.timer = timer

    def __call__(self, x: np.ndarray, out: np.ndarray, x_range: tuple[float, float] | None = None) -> np.ndarray:
        t0 = time.perf_counter()  # x_range: the quantized Linears' input range, nothing to do in fp32
        np.matmul(self.w, x, out=out)
        if self.b is not None:
            out += self.b
        self.timer.lap("dense_linear", t0)
        return out


class Splitter:
    """Runs NumPy work on `threads` threads (NumPy releases the GIL in ufunc loops and BLAS calls).

    The caller's thread takes the first part, so ``threads=1`` costs nothing. BLAS itself is kept
    single-threaded by the model: OpenBLAS's own threading on 128x64 matrices was measured 100x slower
    under load (its threads spin-wait), while splitting heads across our threads scales.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="pruneofa-rt") if threads > 1 else None

    def run(self, fn: Callable[[int, int], None], n: int) -> None:
        """Call ``fn(lo, hi)`` over a partition of ``range(n)`` into up to `threads` parts."""
        parts = min(self.threads, n)
        if parts <= 1 or self._pool is None:
            fn(0, n)
            return
        bounds = [n * i // parts for i in range(parts + 1)]
        futures = [self._pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, parts)]
        fn(bounds[0], bounds[1])
        for f in futures:
            f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
