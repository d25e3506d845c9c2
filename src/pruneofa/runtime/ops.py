"""The encoder's non-Linear operations on feature-major ``[features, tokens]`` float32, in place.

Residual + LayerNorm, softmax (with the attention mask's bias) and exact GELU run as single fused,
vectorised loops in the compiled extension (csrc/elementwise_impl.h, one build per ISA), LayerNorm and
GELU split across the kernels' threads. At BERT-base, 2 threads, batch 1 they took 20.3 ms of a 50 ms
forward as NumPy chains and take 5.5 ms fused (`pruneofa bench` profiles, results/README.md).

The NumPy paths below compute the same functions and are the reference the fused loops are tested
against. They work on preallocated buffers (a temporary per NumPy call costs as much as the
arithmetic at these sizes) in column-contiguous chunks of ``_CHUNK`` floats, so intermediates stay in
L1/L2 instead of streaming a 1.5 MB array through memory ~20 times.

Exact GELU (``0.5 x (1 + erf(x / sqrt 2))``, what BERT's ``hidden_act="gelu"`` computes) needs erf,
which NumPy lacks; :func:`erf` is the float32 rational approximation used by Eigen and XLA
(``erf(u) = u P(u^2) / Q(u^2)`` on ``[-4, 4]``, clamped outside, where float32 erf is +-1), accurate to
~1e-7 absolute (tested against ``math.erf``).
"""

from __future__ import annotations

import math

import numpy as np

from pruneofa.runtime import kernels

# The compiled extension's fused loops. The NumPy paths below compute the same functions; they are the
# reference the fused loops are tested against (tests set ``_fused = None`` to run them).
_fused = kernels._k

_CHUNK = 1 << 16  # floats per chunk of an elementwise chain (256 KiB: the live chunks stay in L2)

# Eigen/XLA float32 erf: numerator (odd, in u^2 then times u) and denominator (in u^2), highest first.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)


def aligned_empty(shape: tuple[int, ...], dtype: type = np.float32, align: int = 64) -> np.ndarray:
    """`np.empty` whose data starts on a cache line. NumPy aligns to 16 bytes; the kernels write 64-byte rows of
    16 floats into the encoder's workspaces, and at a 16-byte start every such store spans two lines."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes].view(dt).reshape(shape)


def _horner(z: np.ndarray, coefs: tuple[float, ...], out: np.ndarray) -> np.ndarray:
    np.multiply(z, np.float32(coefs[0]), out=out)
    out += np.float32(coefs[1])
    for c in coefs[2:]:
        out *= z
        out += np.float32(c)
    return out


def _erf_into(u: np.ndarray, out: np.ndarray, z: np.ndarray, q: np.ndarray) -> None:
    """out = erf(u) for already-clamped u in [-4, 4]; z, q are scratch of the same shape."""
    np.multiply(u, u, out=z)
    _horner(z, _ERF_P, out)
    out *= u
    _horner(z, _ERF_Q, q)
    out /= q


def erf(x: np.ndarray) -> np.ndarray:
    """float32 erf of an array (new array); ~1e-7 absolute error."""
    u = np.clip(np.asarray(x, dtype=np.float32), -4.0, 4.0)
    out, z, q = np.empty_like(u), np.empty_like(u), np.empty_like(u)
    _erf_into(u, out, z, q)
    return out


class Scratch:
    """Per-thread chunk-sized scratch vectors for the elementwise chains."""

    def __init__(self, n: int = _CHUNK) -> None:
        self.a, self.b, self.c, self.d = (np.empty(n, np.float32) for _ in range(4))


# GELU(x) = x (1/2 + erf(x / sqrt 2) / 2) = x (1/2 + x P'(x^2) / Q'(x^2)), with the 1/sqrt 2 and the 1/2
# folded into the coefficients (P'_k = P_k 2^-k / (2 sqrt 2) for the k-th power of x^2, Q'_k = Q_k 2^-k):
# 25 NumPy passes instead of 29. The clamp at |u| = 4 becomes |x| = 4 sqrt 2.
_GELU_P = tuple(c * 0.5 ** (len(_ERF_P) - 1 - k) / (2 * math.sqrt(2.0)) for k, c in enumerate(_ERF_P))
_GELU_Q = tuple(c * 0.5 ** (len(_ERF_Q) - 1 - k) for k, c in enumerate(_ERF_Q))
_GELU_CLAMP = 4.0 * math.sqrt(2.0)


_GELU_P32 = np.asarray(_GELU_P, dtype=np.float32)
_GELU_Q32 = np.asarray(_GELU_Q, dtype=np.float32)


def _isa(force_isa: str | None) -> int:
    # auto (None) needs no check; a forced name is validated once here, with the list of valid names
    return 0 if force_isa is None else kernels._isa_code(force_isa)


def _need_contiguous(x: np.ndarray) -> None:
    # reshape(-1) of a non-contiguous array is a copy: the in-place result would silently be lost
    if not x.flags.c_contiguous:
        raise ValueError("in-place ops need a C-contiguous float32 array")


def gelu_(x: np.ndarray, scratch: Scratch | None = None, start: int = 0, stop: int | None = None,
          force_isa: str | None = None) -> tuple[float, float] | None:
    """Exact (erf) GELU in place on the flat range [start, stop) of a C-contiguous array.

    One fused pass in the compiled extension when it is there (vectorised for the CPU's ISA and split
    across the kernels' threads); the NumPy chain below computes the same rational function otherwise.
    The extension returns the ``(min, max)`` of what it wrote (the next Linear's quantization range);
    the NumPy path returns None.
    """
    _need_contiguous(x)
    flat = x.reshape(-1)
    stop = flat.size if stop is None else stop
    if _fused is not None:
        return _fused.gelu_rational_(flat[start:stop], _GELU_P32, _GELU_Q32, _GELU_CLAMP, _isa(force_isa))
    scratch = scratch or Scratch()
    for lo in range(start, stop, _CHUNK):
        v = flat[lo:min(lo + _CHUNK, stop)]
        n = v.size
        u, e, z, q = scratch.a[:n], scratch.b[:n], scratch.c[:n], scratch.d[:n]
        np.clip(v, -_GELU_CLAMP, _GELU_CLAMP, out=u)
        np.multiply(u, u, out=z)
        _horner(z, _GELU_P, e)
        e *= u
        _horner(z, _GELU_Q, q)
        e /= q
        e += np.float32(0.5)
        v *= e
    return None


def gelu_tanh_(x: np.ndarray, scratch: Scratch, start: int = 0, stop: int | None = None) -> None:
    """The tanh approximation of GELU (``gelu_new``, ``gelu_pytorch_tanh``) in place."""
    flat = x.reshape(-1)
    stop = flat.size if stop is None else stop
    c = np.float32(math.sqrt(2.0 / math.pi))
    for lo in range(start, stop, _CHUNK):
        v = flat[lo:min(lo + _CHUNK, stop)]
        t = scratch.a[:v.size]
        np.multiply(v, v, out=t)
        t *= np.float32(0.044715)
        t += np.float32(1.0)
        t *= v
        t *= c
        np.tanh(t, out=t)
        t += np.float32(1.0)
        t *= np.float32(0.5)
        v *= t


def relu_(x: np.ndarray, scratch: Scratch, start: int = 0, stop: int | None = None) -> None:
    flat = x.reshape(-1)
    np.maximum(flat[start:stop], 0.0, out=flat[start:stop])


ACTIVATIONS = {"gelu": gelu_, "gelu_new": gelu_tanh_, "gelu_pytorch_tanh": gelu_tanh_, "relu": relu_}


def layer_norm_(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, mean: np.ndarray,
                var: np.ndarray, residual: np.ndarray | None = None,
                force_isa: str | None = None) -> tuple[float, float] | None:
    """``x = LayerNorm(x + residual)`` over features (axis 0) of feature-major ``x [H, T]``, in place.

    ``gamma``/``beta`` are ``[H, 1]`` float32; ``mean``/``var`` are ``[T]`` scratch (NumPy path only).
    Two passes (mean, then centred variance) as PyTorch does, so no cancellation on large activations.
    The extension returns the ``(min, max)`` of the result, as :func:`gelu_` does; NumPy returns None.
    """
    if _fused is not None:
        return _fused.add_layer_norm_(x, residual, gamma.reshape(-1), beta.reshape(-1), float(eps),
                                      _isa(force_isa))
    if residual is not None:
        x += residual
    inv_h = np.float32(1.0 / x.shape[0])
    np.sum(x, axis=0, out=mean)
    mean *= inv_h
    x -= mean
    np.einsum("ht,ht->t", x, x, out=var)
    var *= inv_h
    var += np.float32(eps)
    np.sqrt(var, out=var)
    np.reciprocal(var, out=var)
    x *= var
    x *= gamma
    x += beta
    return None


def softmax_(s: np.ndarray, rowmax: np.ndarray, bias: np.ndarray | None = None,
             force_isa: str | None = None) -> None:
    """Softmax over the last axis of a C-contiguous ``s``, in place, after adding ``bias`` (broadcast over
    rows: the attention mask's -1e30 on padded keys). ``rowmax`` is scratch of shape
    ``s.shape[:-1] + (1,)`` (NumPy path only). The fused path runs on the calling thread."""
    if _fused is not None:
        _need_contiguous(s)
        _fused.softmax_rows_(s.reshape(-1, s.shape[-1]), None if bias is None else bias.reshape(-1), _isa(force_isa))
        return
    if bias is not None:
        s += bias.reshape(-1)
    np.max(s, axis=-1, keepdims=True, out=rowmax)
    s -= rowmax
    np.exp(s, out=s)
    np.sum(s, axis=-1, keepdims=True, out=rowmax)
    np.reciprocal(rowmax, out=rowmax)
    s *= rowmax


def attention_(qkv: np.ndarray, ctx: np.ndarray, heads: int, batch: int, bias: np.ndarray | None = None,
               pos: np.ndarray | None = None, force_isa: str | None = None, int8: bool = False) -> None:
    """``ctx [H, B*T] = softmax(Q^T K + bias) V^T`` per (sequence, head), fused in the extension.

    ``qkv`` is the fused QKV Linear's feature-major output ``[3H, B*T]`` (Q rows, K rows, V rows; the
    1/sqrt(d) already in Q's weights); ``bias`` is ``[B*T]`` additive per key (the padding mask's -1e30)
    or None; ``pos`` is a C-contiguous ``[heads, T, T]`` bias indexed (head, key, query), shared by the
    batch (MPNet's relative position bias, transposed), or None. QK^T, the biases, the softmax and PV
    run per (sequence, head) with the scores in cache, split
    across the kernels' threads (csrc/attention_impl.h). Needs the compiled extension; without it the
    encoder runs its NumPy path.

    ``int8``: both matmuls in int8 (csrc/attention_i8_impl.h: Q, K, V quantized per (sequence, head),
    the softmax's weights to 8 bits), on the paths where `attention_int8_available`; else ValueError.
    """
    if _fused is None:
        raise RuntimeError("fused attention needs the compiled extension (pruneofa.runtime._kernels)")
    _need_contiguous(ctx)
    if pos is not None:
        _need_contiguous(pos)
    _fused.attention_(qkv, ctx, int(heads), int(batch), None if bias is None else bias.reshape(-1),
                      None if pos is None else pos.reshape(-1), _isa(force_isa), bool(int8))


def attention_int8_available(force_isa: str | None = None) -> bool:
    """Whether the kernels' path (`force_isa`, or this CPU's best) has the int8 attention: vnni (and its
    emulation) and portable do; avx2 does not."""
    return _fused is not None and bool(_fused.attention_int8_available(_isa(force_isa)))

