"""The extension's fused attention (csrc/attention_impl.h) against a float64 NumPy reference, on every ISA
this CPU runs (the emulated VNNI name runs the portable build of this kernel), at ragged shapes (sequence
lengths and head sizes off the 16-lane vectors and the 4-row register blocks)."""

from __future__ import annotations

import numpy as np
import pytest

from pruneofa.runtime import kernels, ops

ISAS = kernels.available_isas()
# (H, heads, batch, T): BERT-base and MiniLM heads, then ragged ones (d = 15, 5, 1; T = 1, 5, 17, 33)
SHAPES = [(768, 12, 1, 128), (384, 12, 2, 128), (64, 4, 2, 1), (48, 3, 3, 17), (30, 2, 2, 33), (10, 2, 1, 5),
          (12, 12, 2, 19)]


def reference(qkv: np.ndarray, heads: int, batch: int, bias: np.ndarray | None,
              pos: np.ndarray | None = None) -> np.ndarray:
    """float64 softmax(Q^T K + pos + bias) V^T per (sequence, head), one head at a time; pos is
    [heads, queries, keys] as PyTorch's MPNet adds it."""
    h3, bt = qkv.shape
    h, t = h3 // 3, bt // batch
    d = h // heads
    x = qkv.astype(np.float64)
    out = np.empty((h, bt))
    for b in range(batch):
        cols = slice(b * t, (b + 1) * t)
        for hd in range(heads):
            rows = slice(hd * d, (hd + 1) * d)
            q, k, v = x[rows, cols], x[h:][rows, cols], x[2 * h:][rows, cols]
            s = q.T @ k + (0.0 if pos is None else pos[hd]) + (0.0 if bias is None else bias[cols].astype(np.float64))
            p = np.exp(s - s.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            out[rows, cols] = v @ p.T
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
         pos: np.ndarray | None = None) -> np.ndarray:
    ctx = np.full((qkv.shape[0] // 3, qkv.shape[1]), np.nan, np.float32)
    keys_first = None if pos is None else np.ascontiguousarray(pos.transpose(0, 2, 1))
    ops.attention_(qkv, ctx, heads, batch, bias, keys_first, force_isa=isa)
    return ctx


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_attention_matches_reference(isa, shape):
    _, heads, b, _ = shape
    qkv, bias = _inputs(shape)
    for bb in (bias, None):
        got = _run(qkv, heads, b, bb, isa)
        want = reference(qkv, heads, b, bb)
        assert np.isfinite(got).all()  # every head and every column written
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(48, 3, 3, 17), (64, 2, 2, 40)])
def test_relative_position_bias(isa, shape):
    # an asymmetric [heads, queries, keys] bias (MPNet's relative position bias), with and without padding
    _, heads, b, t = shape
    qkv, bias = _inputs(shape, seed=11)
    pos = np.random.default_rng(1).standard_normal((heads, t, t)).astype(np.float32) * 2
    for bb in (bias, None):
        want = reference(qkv, heads, b, bb, pos)
        np.testing.assert_allclose(_run(qkv, heads, b, bb, isa, pos), want, atol=2e-5 * np.abs(want).max())
    assert not np.allclose(want, reference(qkv, heads, b, None))


@pytest.mark.parametrize("isa", ISAS)
def test_padded_keys_get_zero_weight(isa):
    # Padded keys' V columns are huge: any non-zero weight on them would show. The result must equal
    # attention over the valid keys alone (a shorter sequence), for the valid and the padded queries.
    h, heads, t, n = 48, 3, 21, 13
    rng = np.random.default_rng(3)
    qkv = rng.standard_normal((3 * h, t)).astype(np.float32)
    qkv[2 * h:, n:] = 1e6
    bias = np.where(np.arange(t) < n, 0.0, -1e30).astype(np.float32)
    got = _run(qkv, heads, 1, bias, isa)
    assert np.abs(got).max() < 10
    for hd in range(heads):  # all t queries against the n valid keys only
        d = slice(hd * h // heads, (hd + 1) * h // heads)
        q, k, v = qkv[:h][d].astype(np.float64), qkv[h:2 * h, :n][d], qkv[2 * h:, :n][d]
        s = q.T @ k
        p = np.exp(s - s.max(1, keepdims=True))
        np.testing.assert_allclose(got[d], v @ (p / p.sum(1, keepdims=True)).T, atol=2e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_each_head_reads_only_its_rows(isa):
    shape = (48, 4, 2, 17)
    h, heads, b, _ = shape
    qkv, bias = _inputs(shape, seed=5)
    base = _run(qkv, heads, b, bias, isa)
    d = h // heads
    for hd in range(heads):
        moved = qkv.copy()
        moved[2 * h + hd * d:2 * h + (hd + 1) * d] += 1.0  # this head's V only: its context shifts by 1
        got = _run(moved, heads, b, bias, isa)
        rows = slice(hd * d, (hd + 1) * d)
        np.testing.assert_allclose(got[rows], base[rows] + 1.0, atol=1e-5)
        others = np.ones(h, bool)
        others[rows] = False
        assert np.array_equal(got[others], base[others])


@pytest.mark.parametrize("isa", ISAS)
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


def test_bad_shapes_are_refused():
    qkv = np.zeros((3 * 48, 34), np.float32)
    ctx = np.zeros((48, 34), np.float32)
    with pytest.raises(ValueError, match="heads must divide"):
        ops.attention_(qkv, ctx, 5, 2)
    with pytest.raises(ValueError, match="qkv must have shape"):
        ops.attention_(qkv[:-1], ctx, 4, 2)
    with pytest.raises(ValueError, match="bias must have"):
        ops.attention_(qkv, ctx, 4, 2, np.zeros(33, np.float32))
    with pytest.raises(ValueError, match="pos must have"):
        ops.attention_(qkv, ctx, 4, 2, None, np.zeros((4, 17, 16), np.float32))
