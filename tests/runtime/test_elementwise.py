"""The extension's fused LayerNorm, softmax and GELU against the NumPy reference paths in runtime/ops.py,
on every ISA this CPU runs, at ragged shapes (not multiples of the 16-token tiles or 16 SIMD lanes)."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

from pruneofa.runtime import kernels, ops

ISAS = kernels.available_isas()


@pytest.fixture
def numpy_ops(monkeypatch):
    """``with numpy_ops():`` runs the NumPy reference path of `ops` inside the block."""

    @contextlib.contextmanager
    def reference():
        with monkeypatch.context() as patch:
            patch.setattr(ops, "_fused", None)
            yield

    return reference


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(768, 128), (384, 37), (5, 1), (33, 200), (1, 17)])
@pytest.mark.parametrize("threads", [1, 2])
def test_layer_norm_with_residual_matches_numpy(isa, shape, threads, numpy_ops):
    rng = np.random.default_rng(sum(shape))
    h, t = shape
    x = (rng.standard_normal(shape) * 4 + 3).astype(np.float32)
    res = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.random((h, 1), dtype=np.float32) + 0.5
    beta = rng.standard_normal((h, 1)).astype(np.float32)
    mean, var = np.empty(t, np.float32), np.empty(t, np.float32)
    before = kernels.get_num_threads()
    kernels.set_num_threads(threads)
    try:
        for residual in (res, None):
            got = x.copy()
            ops.layer_norm_(got, gamma, beta, 1e-5, mean, var, residual, force_isa=isa)
            want = x.copy()
            with numpy_ops():
                ops.layer_norm_(want, gamma, beta, 1e-5, mean, var, residual)
            # float64 ground truth: both paths are two-pass float32, within a few ulps of it
            x64 = x.astype(np.float64) + (0 if residual is None else residual)
            mu = x64.mean(0)
            ref = (x64 - mu) / np.sqrt(((x64 - mu) ** 2).mean(0) + 1e-5) * gamma + beta
            assert np.abs(got - ref).max() < 2e-5
            assert np.abs(got - want).max() < 2e-5
    finally:
        kernels.set_num_threads(before)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(12, 128, 128), (3, 5, 7), (2, 1, 1), (1, 4, 33), (2, 3, 384)])
def test_softmax_matches_numpy_and_masked_keys_get_exactly_zero(isa, shape, numpy_ops):
    rng = np.random.default_rng(shape[-1])
    s = (rng.standard_normal(shape) * 6).astype(np.float32)
    n = shape[-1]
    bias = np.zeros(n, np.float32)
    bias[(n + 1) // 2:] = -1e30  # padded keys, as the encoder's attention mask
    for b in (None, bias):
        got = s.copy()
        ops.softmax_(got, None, b, force_isa=isa)
        want = s.copy()
        with numpy_ops():
            ops.softmax_(want, np.empty((*shape[:-1], 1), np.float32), b)
        assert np.allclose(got, want, rtol=2e-6, atol=1e-9)
        assert np.allclose(got.sum(-1), 1.0, atol=2e-6)
        if b is not None:
            assert not got[..., (n + 1) // 2:].any()


@pytest.mark.parametrize("isa", ISAS)
def test_softmax_exp_is_accurate_over_its_range(isa):
    # Row [x, 0]: softmax gives e^x / (e^x + 1); covers exp's polynomial, its 2^n scaling and the
    # underflow edge, against float64.
    x = np.concatenate([np.linspace(-87, 0, 20001), [-87.29, -87.31, -100.0, -1e30]]).astype(np.float32)
    s = np.stack([x, np.zeros_like(x)], axis=1)
    ops.softmax_(s, None, force_isa=isa)
    e = np.exp(x.astype(np.float64))
    want = e / (e + 1)
    live = x > -87.3
    assert (np.abs(s[live, 0] - want[live]) / want[live]).max() < 1e-6
    assert not s[~live, 0].any()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("threads", [1, 2])
def test_gelu_every_isa_matches_exact_gelu(isa, threads):
    x = np.linspace(-9, 9, 200_003).astype(np.float32)  # long enough to split across threads, ragged
    g = x.copy()
    before = kernels.get_num_threads()
    kernels.set_num_threads(threads)
    try:
        ops.gelu_(g, force_isa=isa)
    finally:
        kernels.set_num_threads(before)
    idx = np.arange(0, x.size, 97)
    want = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x[idx].astype(np.float64)])
    assert (np.abs(g[idx] - want) / np.maximum(np.abs(x[idx]), 1)).max() < 3e-7


def test_in_place_ops_refuse_a_strided_view_instead_of_writing_to_a_copy():
    x = np.zeros((8, 8), np.float32)
    with pytest.raises(ValueError, match="contiguous"):
        ops.softmax_(x[:, ::2], None)
    with pytest.raises(ValueError, match="contiguous"):
        ops.gelu_(x[:, ::2])
