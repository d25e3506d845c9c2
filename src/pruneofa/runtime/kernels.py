"""Sparse int8 / fp32 CPU matmul kernels (compiled extension `_kernels`), NumPy in and out.

Imports nothing from torch or the training code, so an exported model runs without them.

Layout and quantization (the contract the whole-encoder runtime builds on):

* Activations are **feature-major** ``[K, T]`` float32 (K input features, T tokens) and outputs are
  feature-major ``[N, T]``. Keeping the runtime feature-major between layers is what makes the
  kernels fast (writing token-major ``[T, N]`` scatters and was up to 5x slower); ``layout="tk"``
  on a call transposes in NumPy for convenience only.
* Activations are quantized per tensor to uint8 with a zero point, as ONNX Runtime's
  DynamicQuantizeLinear does: ``rmin = min(0, x.min())``, ``rmax = max(0, x.max())``,
  ``scale = (rmax - rmin) / 255`` (float32), ``zp = rint(clip(-rmin / scale, 0, 255))``,
  ``q = clip(rint(x * (1 / scale)) + zp, 0, 255)`` with round-half-to-even (ORT divides by the
  scale instead of multiplying by its float32 reciprocal, so a rare element may differ by 1).
  An all-zero tensor gets ``scale = 1, zp = 0``.
* Weights are symmetric int8 ``[N, K]`` (dense with exact zeros, as exported) with one float scale
  per output row. ``vpdpbusd`` multiplies u8 x s8, so the kernel accumulates
  ``acc[n, t] = sum_k q[k, t] * w[n, k]`` exactly in int32 and the zero point is removed with the
  row sums: ``y = scale * wscale[n] * (acc - zp * sum_k w[n, k]) + bias[n]``.
* Int8 weights are packed in one of two kernel formats. "blocks": each row as its non-zero 1x4 blocks
  along K ("block1x4" has no padding; "unstructured" pays for the zeros inside its blocks: at 90% ~34%
  of blocks are non-zero, with ~1.2 weights each). "gathered" (unstructured only): each row's non-zeros
  grouped 4 at a time by k % 4, one vpdpbusd per group of 4 from 4 activation lines (~80% of the slots
  used at 90%). Which is faster depends on the layer's shape, the CPU and the thread count, so the runtime's
  ``SparseModel.load(kernel_format="auto")`` times both inside the model; the integers are the same either way.

ISA paths: "vnni" (AVX-512 VNNI ``vpdpbusd``; fp32 uses AVX-512F), "avx2" (AVX2 ``vpmaddwd`` on
even/odd bytes, exact; fp32 uses FMA), "portable" (plain C++, any CPU). ``force_isa=None`` picks
the best the CPU has. "vnni-emulated" is the "vnni" path's own code compiled on SIMDe's portable
intrinsics: slow, never picked automatically, there so that CPUs without AVX-512 test that code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pruneofa.runtime import _kernels as _k

Isa = Literal["vnni", "avx2", "portable", "vnni-emulated"]
_ISA_CODES = {None: 0, "auto": 0, "portable": 1, "avx2": 2, "vnni": 3, "vnni-emulated": 4}
_PATTERNS = ("block1x4", "unstructured")
KERNEL_FORMATS = ("blocks", "gathered")


def _isa_code(force_isa: str | None) -> int:
    if force_isa not in _ISA_CODES:
        raise ValueError(f"force_isa={force_isa!r}: expected one of 'vnni', 'avx2', 'portable', 'vnni-emulated' "
                         "or None (auto)")
    code = _ISA_CODES[force_isa]
    _k.isa_name(code)  # raises RuntimeError naming the missing CPU feature
    return code


def cpu_features() -> dict:
    """CPU features the dispatcher looks at, which SIMD paths were compiled, and the path auto picks."""
    feats = {f: _k.cpu_has(f) for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni")}
    feats["compiled_avx2"] = _k.compiled_avx2()
    feats["compiled_avx512"] = _k.compiled_avx512()
    feats["compiled_avx512_emulated"] = _k.compiled_avx512_emulated()
    feats["auto_isa"] = {"avx512_vnni": "vnni"}.get(_k.isa_name(0), _k.isa_name(0))
    return feats


def available_isas() -> list[str]:
    """The force_isa values this CPU and build can run (fastest first; "vnni-emulated" last, tests only)."""
    out = []
    for name in ("vnni", "avx2", "portable", "vnni-emulated"):
        try:
            _k.isa_name(_ISA_CODES[name])
        except RuntimeError:
            continue
        out.append(name)
    return out


def set_num_threads(n: int) -> None:
    """Threads used by every kernel call (a persistent pool; the calling thread is one of them)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1, got {n!r}")
    _k.set_num_threads(n)


def get_num_threads() -> int:
    return _k.get_num_threads()


def set_call_threads(n: int) -> None:
    """Cap the kernel calls made from the calling thread at `n` threads (0: no cap, the pool's size).

    A thread capped at 1 runs its calls inline, without the pool's lock, so several Python threads can
    each run kernels on their own core side by side (the encoder does this with the chunks of a batch).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"set_call_threads: n must be an int >= 0, got {n!r}")
    _k.set_call_threads(n)


def call_threads() -> int:
    """Threads a kernel call from this thread may use (its cap, else the pool's size)."""
    return _k.call_threads()


@dataclass(frozen=True)
class QuantizedActivations:
    """uint8 activations in the kernels' tiled layout ``[ceil(T/16), ceil(K/4), 16, 4]`` (flat).

    Build with :func:`quantize_activations` (from float32) or :meth:`from_uint8` (already quantized).
    """

    data: np.ndarray
    K: int
    T: int
    scale: float
    zero_point: int

    @classmethod
    def from_uint8(cls, q: np.ndarray, scale: float, zero_point: int) -> QuantizedActivations:
        """Tile pre-quantized feature-major uint8 activations ``[K, T]``."""
        q = np.ascontiguousarray(q, dtype=np.uint8)
        if q.ndim != 2:
            raise ValueError(f"expected feature-major uint8 [K, T], got shape {q.shape}")
        if not 0 <= int(zero_point) <= 255:
            raise ValueError(f"zero_point must be in [0, 255], got {zero_point}")
        return cls(_k.tile_u8(q), q.shape[0], q.shape[1], float(scale), int(zero_point))


def _as_kt(x: np.ndarray, layout: str) -> np.ndarray:
    if layout not in ("kt", "tk"):
        raise ValueError(f"layout={layout!r}: expected 'kt' (feature-major [K, T]) or 'tk' (token-major [T, K])")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected 2-D activations, got shape {x.shape}")
    return np.ascontiguousarray(x.T if layout == "tk" else x)


def quantize_activations(x: np.ndarray, *, layout: str = "kt", force_isa: Isa | None = None,
                         scale: float | None = None, zero_point: int = 0,
                         x_range: tuple[float, float] | None = None) -> QuantizedActivations:
    """Quantize float32 activations per tensor to uint8 into the tiled layout.

    Without `scale`: the ORT dynamic scheme (this tensor's range). With `scale` and `zero_point`: those
    fixed parameters, rounded as PyTorch's fake-quant does (``rint(x * (1 / scale)) + zp``, clipped).
    `x_range`: x's exact ``(min, max)``, as the op that wrote x returned it (``ops.layer_norm_``,
    ``ops.gelu_``); the dynamic scheme then takes it instead of a pass over x. A range that is not x's
    exact one quantizes x wrongly, so pass only what the producing op returned.
    """
    x = _as_kt(x, layout)
    data, s, zp = _k.quantize(x, _isa_code(force_isa), _static_scale(scale), int(zero_point), x_range)
    return QuantizedActivations(data, x.shape[0], x.shape[1], s, zp)


def _static_scale(scale: float | None) -> float | None:
    return None if scale is None else float(scale)  # the extension checks it (> 0), for every caller


class PackedLinearInt8:
    """``y = x @ W.T + b`` with sparse int8 W, packed once.

    weight: int8 ``[N, K]``, dense with exact zeros; scales: float ``[N]`` (per output row);
    bias: float ``[N]`` or None; pattern: "block1x4" or "unstructured" (same kernel, see module doc).
    """

    def __init__(
        self,
        weight: np.ndarray,
        scales: np.ndarray,
        bias: np.ndarray | None = None,
        *,
        pattern: str = "block1x4",
        force_isa: Isa | None = None,
        kernel_format: str = "blocks",
    ) -> None:
        if pattern not in _PATTERNS:
            raise ValueError(f"pattern={pattern!r}: expected one of {_PATTERNS}")
        if kernel_format not in KERNEL_FORMATS:
            raise ValueError(f"kernel_format={kernel_format!r}: expected one of {KERNEL_FORMATS}")
        weight = np.asarray(weight)
        if weight.dtype != np.int8 or weight.ndim != 2:
            raise ValueError(f"weight must be int8 [N, K], got {weight.dtype} {weight.shape}")
        scales = np.ascontiguousarray(scales, dtype=np.float32).reshape(-1)
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
        self.pattern, self.kernel_format = pattern, kernel_format
        self.isa = _isa_code(force_isa)
        self._m = _k.Int8Matrix(np.ascontiguousarray(weight), scales, bias, gathered=kernel_format == "gathered")
        self.out_features, self.in_features = weight.shape

    @property
    def nnz(self) -> int:
        return self._m.nnz

    @property
    def nblocks(self) -> int:
        """Steps of 4 weights actually multiplied: non-zero 1x4 blocks, or gathered groups."""
        return self._m.nblocks

    def __call__(self, x: np.ndarray, *, layout: str = "kt", out: np.ndarray | None = None,
                 scale: float | None = None, zero_point: int = 0,
                 x_range: tuple[float, float] | None = None) -> np.ndarray:
        """float32 activations -> float32 outputs: quantize, tile and multiply in one native call.

        Activations are quantized with this call's range (dynamic), or with the fixed `scale` and
        `zero_point` of a QAT model when given (see :func:`quantize_activations`, also for `x_range`).
        """
        s = _static_scale(scale)
        if layout == "tk":
            return self._m.forward(_as_kt(x, layout), self.isa, None, s, int(zero_point), x_range).T
        return self._m.forward(_as_kt(x, layout), self.isa, out, s, int(zero_point), x_range)

    def matmul_quantized(self, qa: QuantizedActivations, *, out: np.ndarray | None = None) -> np.ndarray:
        """Pre-quantized activations -> dequantized float32 ``[N, T]``."""
        self._check(qa)
        return self._m.matmul(qa.data, qa.T, qa.scale, qa.zero_point, self.isa, out)

    def matmul_int32(self, qa: QuantizedActivations) -> np.ndarray:
        """Raw int32 accumulators ``sum_k q[k, t] * w[n, k]`` ``[N, T]`` (no zero point, scale or bias)."""
        self._check(qa)
        return self._m.matmul_int32(qa.data, qa.T, self.isa)

    def _check(self, qa: QuantizedActivations) -> None:
        if self.in_features != qa.K:
            raise ValueError(f"activations have K={qa.K}, weight expects K={self.in_features}")


class PackedLinearF32:
    """``y = x @ W.T + b`` with unstructured sparse fp32 W ``[N, K]`` (dense with zeros), packed once."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None, *, force_isa: Isa | None = None) -> None:
        weight = np.asarray(weight)
        if weight.dtype != np.float32 or weight.ndim != 2:
            raise ValueError(f"weight must be float32 [N, K], got {weight.dtype} {weight.shape}")
        if bias is not None:
            bias = np.ascontiguousarray(bias, dtype=np.float32).reshape(-1)
        self.isa = _isa_code(force_isa)
        self._m = _k.F32Matrix(np.ascontiguousarray(weight), bias)
        self.out_features, self.in_features = weight.shape

    @property
    def nnz(self) -> int:
        return self._m.nnz

    def __call__(self, x: np.ndarray, *, layout: str = "kt", out: np.ndarray | None = None) -> np.ndarray:
        if layout == "tk":
            return self._m.forward(_as_kt(x, layout), self.isa, None).T
        return self._m.forward(_as_kt(x, layout), self.isa, out)
