"""The int8 attention (csrc/attention_i8_impl.h): both matmuls in int8, the softmax in fp32.

Against a NumPy model of the same quantization (Q, K, V symmetric per (sequence, head) over the kept
tokens, the softmax's weights to 8 bits), on every path that has it (vnni where the CPU has it, its
emulation on SIMDe everywhere, portable), at ragged shapes: head sizes off the 4-feature quads, sequence
lengths off the 4-key quads and the 16-query vectors, padded keys. The NumPy model rounds exp() in
float64 where the kernel uses its float32 polynomial, so a weight that lies on a rounding edge may land
one step (1/255) away: the test bounds that, and requires almost every element to agree to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest

from pruneofa.runtime import kernels, ops

INT8_ISAS = [isa for isa in kernels.available_isas() if ops.attention_int8_available(isa)]
SHAPES = [(768, 12, 1, 128), (384, 12, 2, 128), (64, 4, 2, 1), (48, 3, 3, 17), (30, 2, 2, 33), (10, 2, 1, 5),
          (12, 12, 2, 19)]  # (H, heads, batch, T); d = 64, 32, 16, 16, 15, 5, 1


def _q8(x: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, float]:
    m = np.float32(np.abs(x[:, keep]).max()) if keep.any() else np.float32(0)
    scale, inv = (m / np.float32(127), np.float32(127) / m) if m > 0 else (np.float32(1), np.float32(1))
    return np.clip(np.rint(x * inv), -127, 127).astype(np.int64), float(scale)


def int8_reference(qkv: np.ndarray, heads: int, batch: int, bias: np.ndarray | None) -> np.ndarray:
    """The kernel's arithmetic in NumPy: integer matmuls, float64 softmax, weights rounded to 8 bits."""
    h3, bt = qkv.shape
    h, t = h3 // 3, bt // batch
    d = h // heads
    out = np.empty((h, bt))
    for b in range(batch):
        cols = slice(b * t, (b + 1) * t)
        kb = np.zeros(t, np.float32) if bias is None else bias[cols]
        keep = kb > -1e29
        for hd in range(heads):
            rows = slice(hd * d, (hd + 1) * d)
            (qi, sq), (ki, sk), (vi, sv) = (_q8(x[rows, cols], keep) for x in (qkv[:h], qkv[h:2 * h], qkv[2 * h:]))
            s = (qi.T @ ki).astype(np.float64) * (np.float32(sq) * np.float32(sk)) + kb.astype(np.float64)
            p = np.rint(np.exp(s - s.max(1, keepdims=True)) * 255)
            out[rows, cols] = sv * (vi @ p.T) / p.sum(1)
    return out


def _inputs(shape: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    h, heads, b, t = shape
    rng = np.random.default_rng(seed + h + t)
    qkv = rng.standard_normal((3 * h, b * t)).astype(np.float32)
    qkv[:h] *= 3.0 / np.sqrt(h // heads)  # peaked but finite softmaxes, as with trained weights
    lengths = rng.integers(1, t + 1, size=b)
    lengths[0] = t
    bias = np.concatenate([np.where(np.arange(t) < n, 0.0, -1e30) for n in lengths]).astype(np.float32)
    return qkv, bias


def _run(qkv: np.ndarray, heads: int, batch: int, bias: np.ndarray | None, isa: str | None,
         int8: bool = True) -> np.ndarray:
    ctx = np.full((qkv.shape[0] // 3, qkv.shape[1]), np.nan, np.float32)
    ops.attention_(qkv, ctx, heads, batch, bias, force_isa=isa, int8=int8)
    return ctx


def test_int8_runs_on_the_emulated_vnni_and_portable_paths():
    assert {"vnni-emulated", "portable"} <= set(INT8_ISAS)
    assert not ops.attention_int8_available("avx2")


@pytest.mark.parametrize("isa", INT8_ISAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_attention_matches_its_quantized_reference(isa, shape):
    _, heads, b, _ = shape
    qkv, bias = _inputs(shape)
    for bb in (bias, None):
        got = _run(qkv, heads, b, bb, isa)
        want = int8_reference(qkv, heads, b, bb)
        assert np.isfinite(got).all()  # every head and every column written
        vmax = np.abs(qkv[2 * qkv.shape[0] // 3:]).max()
        err = np.abs(got - want)
        assert err.max() <= 2 * vmax / 255 + 1e-5  # at most a weight or two one step off
        assert np.mean(err <= 1e-5 * vmax) >= 0.98


@pytest.mark.parametrize("isa", INT8_ISAS)
def test_int8_attention_is_close_to_fp32(isa):
    qkv, bias = _inputs((768, 12, 2, 128), seed=4)
    fp32 = _run(qkv, 12, 2, bias, isa, int8=False)
    err = np.abs(_run(qkv, 12, 2, bias, isa) - fp32)
    vmax = np.abs(qkv[1536:]).max()
    assert err.max() < 0.04 * vmax and err.mean() < 0.003 * vmax  # seen: 0.031 and 0.0023 (vnni)


@pytest.mark.parametrize("isa", INT8_ISAS)
def test_padded_tokens_change_nothing_at_the_kept_ones(isa):
    # Padded tokens' Q, K and V are huge: had they entered a scale, every kept value would quantize to
    # ~0. The kept queries' context must equal (bit for bit) that of the sequence cut to its kept tokens.
    h, heads, t, n = 48, 3, 21, 13
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((3 * h, t)).astype(np.float32)
    qkv[:, n:] = 1e6
    bias = np.where(np.arange(t) < n, 0.0, -1e30).astype(np.float32)
    got = _run(qkv, heads, 1, bias, isa)
    short = _run(np.ascontiguousarray(qkv[:, :n]), heads, 1, None, isa)
    assert np.array_equal(got[:, :n], short)
    assert np.abs(short).max() < 10


@pytest.mark.parametrize("isa", INT8_ISAS)
def test_each_head_reads_only_its_rows(isa):
    h, heads, b = 48, 4, 2
    qkv, bias = _inputs((h, heads, b, 17), seed=5)
    base = _run(qkv, heads, b, bias, isa)
    d = h // heads
    for hd in range(heads):
        moved = qkv.copy()
        moved[hd * d:(hd + 1) * d] *= 0.5  # this head's Q only
        got = _run(moved, heads, b, bias, isa)
        others = np.ones(h, bool)
        others[hd * d:(hd + 1) * d] = False
        assert np.array_equal(got[others], base[others])
        assert not np.array_equal(got[~others], base[~others])


@pytest.mark.parametrize("isa", INT8_ISAS)
def test_thread_count_does_not_change_results(isa):
    qkv, bias = _inputs((384, 12, 3, 45), seed=7)
    before = kernels.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            kernels.set_num_threads(threads)
            results.append(_run(qkv, 12, 3, bias, isa))
    finally:
        kernels.set_num_threads(before)
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], results[2])


@pytest.mark.parametrize("isa", INT8_ISAS)
def test_an_all_zero_head_gives_zeros(isa):
    qkv, _ = _inputs((48, 3, 1, 9), seed=2)
    qkv[0:16] = qkv[48:64] = qkv[96:112] = 0.0  # head 0: Q, K and V all zero
    got = _run(qkv, 3, 1, None, isa)
    assert np.array_equal(got[:16], np.zeros((16, 9), np.float32))
    assert np.abs(got[16:]).max() > 0


def test_paths_without_int8_attention_are_refused():
    qkv, _ = _inputs((48, 3, 1, 9))
    if "avx2" in kernels.available_isas():
        with pytest.raises(ValueError, match="int8 attention has no build for the avx2 path"):
            _run(qkv, 3, 1, None, "avx2")
