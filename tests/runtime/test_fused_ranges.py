"""LayerNorm and GELU hand their output's (min, max) to the next Linear (one pass fewer for its dynamic
quantization): the ranges are exact on every ISA, the quantized activations and the model's logits are
bit-identical to those of a Linear that finds the range itself, and a range nothing measured is never passed."""

from __future__ import annotations

import numpy as np
import pytest
from tests.runtime.test_families import _artifact, _batch

from pruneofa.runtime import kernels, ops
from pruneofa.runtime.model import SparseModel

ISAS = kernels.available_isas()


def _threads(n: int):
    before = kernels.get_num_threads()
    kernels.set_num_threads(n)
    return before


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", [(768, 384), (384, 37), (5, 1), (33, 70), (1, 17)])  # 70: past a 64-token block
@pytest.mark.parametrize("threads", [1, 2])
def test_layer_norm_returns_the_exact_range_of_its_output(isa, shape, threads):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    res = rng.standard_normal(shape).astype(np.float32)
    gamma = rng.random((shape[0], 1), dtype=np.float32) + 0.5
    beta = rng.standard_normal((shape[0], 1)).astype(np.float32)
    scratch = np.empty(shape[1], np.float32)
    before = _threads(threads)  # (768, 384) splits across two threads, the others stay on one
    try:
        for residual in (res, None):
            got = x.copy()
            lo, hi = ops.layer_norm_(got, gamma, beta, 1e-5, scratch, scratch.copy(), residual, force_isa=isa)
            assert (lo, hi) == (got.min(), got.max())
    finally:
        kernels.set_num_threads(before)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [200_003, 16, 15, 1])
@pytest.mark.parametrize("threads", [1, 2])
def test_gelu_returns_the_exact_range_of_its_output(isa, n, threads):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 4
    before = _threads(threads)
    try:
        lo, hi = ops.gelu_(x, force_isa=isa)
    finally:
        kernels.set_num_threads(before)
    assert (lo, hi) == (x.min(), x.max())


@pytest.mark.parametrize("isa", ISAS)
def test_a_passed_range_quantizes_exactly_as_the_measured_one(isa):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((96, 37)).astype(np.float32)
    x[:, 5] = 0.0
    for data in (x, np.abs(x), -np.abs(x), np.zeros_like(x)):  # both signs, one-sided, all zero (scale 1)
        want = kernels.quantize_activations(data, force_isa=isa)
        got = kernels.quantize_activations(data, force_isa=isa, x_range=(float(data.min()), float(data.max())))
        assert (got.scale, got.zero_point) == (want.scale, want.zero_point)
        assert np.array_equal(got.data, want.data)
    w = (rng.integers(-127, 128, (64, 96)) * (rng.random((64, 96)) < 0.1)).astype(np.int8)
    lin = kernels.PackedLinearInt8(w, rng.random(64, dtype=np.float32) / 50, pattern="unstructured", force_isa=isa)
    assert np.array_equal(lin(x, x_range=(float(x.min()), float(x.max()))), lin(x))


def test_a_range_with_inf_is_refused():
    x = np.zeros((8, 4), np.float32)
    with pytest.raises(ValueError, match="inf or nan"):
        kernels.quantize_activations(x, x_range=(0.0, float("inf")))


@pytest.mark.parametrize("family", ["roberta", "electra"])  # electra: the embedding projection writes h
@pytest.mark.parametrize("threads", [1, 2])
def test_passing_ranges_leaves_the_logits_bit_identical(tmp_path, family, threads):
    art = _artifact(tmp_path, family, "ForSequenceClassification")
    ids, mask = _batch(pad=0 if family == "electra" else 1)
    rt = SparseModel.load(art, activations="dynamic", threads=threads, kernel_format="blocks")
    assert rt.encoder.pass_ranges
    on = rt.run(ids, mask).logits.copy()
    rt.encoder.pass_ranges = False
    off = rt.run(ids, mask).logits
    assert np.array_equal(on, off)


def test_ranges_reach_three_of_the_four_linears_of_each_layer(tmp_path, monkeypatch):
    art = _artifact(tmp_path, "roberta", "ForSequenceClassification")
    ids, mask = _batch()
    rt = SparseModel.load(art, activations="dynamic", kernel_format="blocks")
    calls: list[bool] = []
    original = kernels.PackedLinearInt8.__call__

    def spy(self, x, **kw):
        calls.append(kw.get("x_range") is not None)
        if kw.get("x_range") is not None:  # what was passed is the input's exact range
            assert kw["x_range"] == (x.min(), x.max())
        return original(self, x, **kw)

    monkeypatch.setattr(kernels.PackedLinearInt8, "__call__", spy)
    rt.run(ids, mask)
    layers = len(rt.encoder.layers)
    assert len(calls) == 4 * layers
    # qkv (from the previous LayerNorm), ffn_in (LayerNorm), ffn_out (GELU); attn_out reads the attention's output
    assert sum(calls) == 3 * layers
    rt.encoder.pass_ranges = False
    calls.clear()
    rt.run(ids, mask)
    assert not any(calls)
