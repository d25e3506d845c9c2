"""Every kernel path (ISA x pattern) against a NumPy reference.

Integer results are compared exactly with an int64 reference; dequantized float outputs within
rtol 1e-5 plus 1e-5 of the output's largest magnitude (float32 rounding of scale * (acc - corr)).
Paths the CPU lacks (e.g. "vnni" without AVX-512 VNNI) are skipped, and say so; "vnni-emulated" runs the
"vnni" path's own kernel code on SIMDe's portable intrinsics, so its loops, edges and stores are tested
on every CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

kernels = pytest.importorskip("pruneofa.runtime.kernels", reason="compiled kernels not built")

ISAS = ["vnni", "vnni-emulated", "avx2", "portable"]
# (N, K, T): ragged N and K (not multiples of 4/16/64), T not a multiple of the 16-token tile, T=1,
# and enough rows (N >= 32) that two threads split the work.
SHAPES = [(1, 1, 1), (5, 3, 1), (37, 53, 21), (64, 64, 16), (17, 130, 129), (70, 257, 48), (96, 200, 300)]
SPARSITIES = [0.0, 0.5, 0.9, 0.99]


def _need(isa: str) -> None:
    if isa not in kernels.available_isas():
        pytest.skip(f"isa {isa!r} not supported by this CPU/build: {kernels.cpu_features()}")


def _sparse_int8(rng, n, k, sparsity, pattern):
    w = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    if pattern == "block1x4":
        keep = rng.random((n, (k + 3) // 4)) >= sparsity
        w[~np.repeat(keep, 4, axis=1)[:, :k]] = 0
    else:
        w[rng.random((n, k)) < sparsity] = 0
    if n > 2:
        w[n // 2] = 0  # an all-zero row
    return w


def _ref_quantize(x):
    """ONNX Runtime DynamicQuantizeLinear, float32 arithmetic as documented in kernels.py."""
    rmin, rmax = min(np.float32(0), x.min()), max(np.float32(0), x.max())
    scale = np.float32((rmax - rmin) / np.float32(255))
    if scale == 0:
        return np.zeros(x.shape, np.uint8), np.float32(1), 0
    zp = int(np.rint(np.clip(-rmin / scale, 0, 255)))
    q = np.clip(np.rint(x * (np.float32(1) / scale)) + zp, 0, 255).astype(np.uint8)
    return q, scale, zp


def _untile(qa):
    k4, tiles = (qa.K + 3) // 4, (qa.T + 15) // 16
    full = qa.data.reshape(tiles, k4, 16, 4).transpose(1, 3, 0, 2).reshape(k4 * 4, tiles * 16)
    return full[: qa.K, : qa.T], full


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pattern", ["block1x4", "unstructured"])
@pytest.mark.parametrize("shape", SHAPES)
def test_int8_exact(isa, pattern, shape):
    _need(isa)
    n, k, t = shape
    rng = np.random.default_rng(hash((pattern, shape)) % 2**32)
    x = (rng.standard_normal((k, t)) * 3 + 0.5).astype(np.float32)
    qa = kernels.quantize_activations(x, force_isa=isa)
    q, scale, zp = _ref_quantize(x)
    got, full = _untile(qa)
    np.testing.assert_array_equal(got, q)
    assert (qa.scale, qa.zero_point) == (pytest.approx(float(scale), rel=0, abs=0), zp)
    assert not full[k:].any() and not full[:, t:].any(), "padding must be zero"
    for sparsity in SPARSITIES:
        w = _sparse_int8(rng, n, k, sparsity, pattern)
        wscale = rng.uniform(0.001, 0.02, n).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        m = kernels.PackedLinearInt8(w, wscale, bias, pattern=pattern, force_isa=isa)
        acc = w.astype(np.int64) @ q.astype(np.int64)
        np.testing.assert_array_equal(m.matmul_int32(qa), acc)
        assert m.nnz == np.count_nonzero(w)
        yref = (
            np.float64(qa.scale) * wscale[:, None] * (acc - zp * w.astype(np.int64).sum(1, keepdims=True))
            + bias[:, None]
        )
        tol = dict(rtol=1e-5, atol=1e-5 * (np.abs(yref).max() + 1))
        np.testing.assert_allclose(m.matmul_quantized(qa), yref, **tol)
        np.testing.assert_allclose(m(x), yref, **tol)
        np.testing.assert_allclose(m(np.ascontiguousarray(x.T), layout="tk"), yref.T, **tol)


# Long K, ragged in every dimension (a last quad shorter than 4, N and T off the tiles), with an
# all-zero stretch of K inside a row and a row whose first half is empty.
LONG_K_SHAPES = [(37, 1031, 150), (130, 800, 17), (3, 3072, 129)]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pattern", ["block1x4", "unstructured"])
@pytest.mark.parametrize("shape", LONG_K_SHAPES)
def test_int8_long_k_exact(isa, pattern, shape):
    _need(isa)
    n, k, t = shape
    rng = np.random.default_rng(hash(("long", pattern, shape)) % 2**32)
    q = rng.integers(0, 256, size=(k, t)).astype(np.uint8)
    qa = kernels.QuantizedActivations.from_uint8(q, scale=0.02, zero_point=7)
    w = _sparse_int8(rng, n, k, 0.9, pattern)
    w[0, 256:512] = 0
    w[-1, : k // 2] = 0
    wscale = rng.uniform(0.001, 0.02, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    m = kernels.PackedLinearInt8(w, wscale, bias, pattern=pattern, force_isa=isa)
    acc = w.astype(np.int64) @ q.astype(np.int64)
    np.testing.assert_array_equal(m.matmul_int32(qa), acc)
    corr = 7 * w.astype(np.int64).sum(1, keepdims=True)
    yref = 0.02 * wscale[:, None].astype(np.float64) * (acc - corr) + bias[:, None]
    np.testing.assert_allclose(m.matmul_quantized(qa), yref, rtol=1e-5, atol=1e-5 * (np.abs(yref).max() + 1))
    zero = kernels.PackedLinearInt8(np.zeros((n, k), np.int8), wscale, bias, force_isa=isa)
    np.testing.assert_array_equal(zero.matmul_int32(qa), 0)
    np.testing.assert_array_equal(zero.matmul_quantized(qa), np.repeat(bias[:, None], t, 1))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("pattern", ["block1x4", "unstructured"])
def test_int8_k_blocked_chunk_edges(isa, pattern):
    """Long K runs the K-blocked loop (vnni: chunks of 128 quads over K > 1024; portable: 64 over K > 512):
    a row empty over exactly one chunk, a row with blocks only in the last (short) chunk, one with a single
    block, panels of 16 rows with a ragged last panel, ragged T, and 1 and 2 threads alike."""
    _need(isa)
    rng = np.random.default_rng(hash(("chunks", pattern)) % 2**32)
    n, k, t = 45, 2600, 33
    w = _sparse_int8(rng, n, k, 0.9, pattern)
    w[1, 512:1024] = 0  # exactly chunk 1 of the vnni loop, chunks 2-3 of the portable one
    w[2, :2560] = 0  # only the last chunk
    w[3] = 0
    w[3, 1700] = -128
    q = rng.integers(0, 256, size=(k, t)).astype(np.uint8)
    qa = kernels.QuantizedActivations.from_uint8(q, scale=0.5, zero_point=200)
    m = kernels.PackedLinearInt8(w, np.ones(n, np.float32), pattern=pattern, force_isa=isa)
    acc = w.astype(np.int64) @ q.astype(np.int64)
    before = kernels.get_num_threads()
    try:
        for threads in (1, 2):
            kernels.set_num_threads(threads)
            np.testing.assert_array_equal(m.matmul_int32(qa), acc)
    finally:
        kernels.set_num_threads(before)
    yref = 0.5 * (acc - 200 * w.astype(np.int64).sum(1, keepdims=True))
    np.testing.assert_allclose(m.matmul_quantized(qa), yref, rtol=1e-5, atol=1e-5 * np.abs(yref).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nblocks", [1, 2, 3, 5])
def test_int8_rows_of_few_blocks(isa, nblocks):
    """Rows of 1, 2, 3, 5 blocks: the VNNI loop takes blocks in pairs over two accumulator sets, so odd
    counts leave one block for its remainder; each row's blocks mix full and half (even/odd) quads."""
    _need(isa)
    rng = np.random.default_rng(nblocks)
    n, k, t = 40, 64, 67
    w = np.zeros((n, k), np.int8)
    for row in range(n):
        for quad in rng.choice(k // 4, size=nblocks, replace=False):
            w[row, 4 * quad : 4 * quad + 4] = rng.integers(-128, 128, 4) * (rng.random(4) < 0.6)
    q = rng.integers(0, 256, size=(k, t)).astype(np.uint8)
    qa = kernels.QuantizedActivations.from_uint8(q, scale=1.0, zero_point=0)
    m = kernels.PackedLinearInt8(w, np.ones(n, np.float32), force_isa=isa)
    np.testing.assert_array_equal(m.matmul_int32(qa), w.astype(np.int64) @ q.astype(np.int64))


@pytest.mark.parametrize("isa", ISAS)
def test_int8_all_zero_matrix_and_input(isa):
    _need(isa)
    rng = np.random.default_rng(1)
    w = np.zeros((19, 33), np.int8)
    m = kernels.PackedLinearInt8(w, np.ones(19, np.float32), np.arange(19, dtype=np.float32), force_isa=isa)
    assert m.nblocks == 0
    x = rng.standard_normal((33, 7)).astype(np.float32)
    np.testing.assert_array_equal(m(x), np.repeat(np.arange(19, dtype=np.float32)[:, None], 7, 1))
    qa = kernels.quantize_activations(np.zeros((33, 7), np.float32), force_isa=isa)
    assert (qa.scale, qa.zero_point) == (1.0, 0) and not qa.data.any()
    w2 = _sparse_int8(rng, 19, 33, 0.5, "unstructured")
    m2 = kernels.PackedLinearInt8(w2, np.ones(19, np.float32), force_isa=isa)
    np.testing.assert_array_equal(m2.matmul_int32(qa), 0)


@pytest.mark.parametrize("isa", ISAS)
def test_int8_prequantized_uint8(isa):
    _need(isa)
    rng = np.random.default_rng(2)
    n, k, t = 45, 99, 37
    q = rng.integers(0, 256, size=(k, t)).astype(np.uint8)
    w = _sparse_int8(rng, n, k, 0.9, "block1x4")
    w[0, :4] = [-128, -128, -128, -128]  # extreme products: exact, no saturation
    q[:4] = 255
    qa = kernels.QuantizedActivations.from_uint8(q, scale=0.5, zero_point=3)
    m = kernels.PackedLinearInt8(w, np.full(n, 2.0, np.float32), force_isa=isa)
    acc = w.astype(np.int64) @ q.astype(np.int64)
    np.testing.assert_array_equal(m.matmul_int32(qa), acc)
    np.testing.assert_allclose(m.matmul_quantized(qa), acc - 3 * w.astype(np.int64).sum(1, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("isa", ISAS)
def test_int8_static_activation_scale_rounds_like_pytorch_fake_quant(isa):
    """A QAT model's fixed (scale, zero point): q = clip(rint(x * float32(1 / scale)) + zp, 0, 255), the
    formula of PyTorch's fake-quant, bit for bit, including values beyond the range (clipped) and ties."""
    _need(isa)
    rng = np.random.default_rng(4)
    k, t, scale, zp = 70, 45, np.float32(0.037), 119
    x = (rng.standard_normal((k, t)) * 3).astype(np.float32)
    x[0, :8] = np.float32(scale) * (np.arange(8, dtype=np.float32) - 3.5)  # exact .5 ties before the zp
    x[1, :2] = [-100.0, 100.0]  # clipped to 0 and 255
    want = np.clip(np.rint(x * (np.float32(1) / scale)) + zp, 0, 255).astype(np.uint8)
    qa = kernels.quantize_activations(x, scale=float(scale), zero_point=zp, force_isa=isa)
    assert (qa.scale, qa.zero_point) == (float(scale), zp)
    np.testing.assert_array_equal(_untile(qa)[0], want)
    w = _sparse_int8(rng, 33, k, 0.9, "block1x4")
    m = kernels.PackedLinearInt8(w, np.full(33, 0.01, np.float32), np.ones(33, np.float32), force_isa=isa)
    ref = m.matmul_quantized(kernels.QuantizedActivations.from_uint8(want, float(scale), zp))
    np.testing.assert_array_equal(m(x, scale=float(scale), zero_point=zp), ref)  # the fused call, same numbers
    with pytest.raises(ValueError, match="scale"):
        m(x, scale=0.0)
    with pytest.raises(ValueError, match="zp"):
        m(x, scale=1.0, zero_point=300)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES)
def test_f32_unstructured(isa, shape):
    _need(isa)
    n, k, t = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal((k, t)).astype(np.float32)
    for sparsity in SPARSITIES:
        w = rng.standard_normal((n, k)).astype(np.float32)
        w[rng.random((n, k)) < sparsity] = 0
        if n > 2:
            w[1] = 0
        bias = rng.standard_normal(n).astype(np.float32)
        m = kernels.PackedLinearF32(w, bias, force_isa=isa)
        yref = w.astype(np.float64) @ x.astype(np.float64) + bias[:, None]
        bound = np.abs(w).astype(np.float64) @ np.abs(x).astype(np.float64) + np.abs(bias)[:, None]
        got = m(x)
        assert np.all(np.abs(got - yref) <= 1e-5 * bound + 1e-6)
        np.testing.assert_allclose(m(np.ascontiguousarray(x.T), layout="tk"), got.T, rtol=0, atol=0)


@pytest.mark.parametrize("isa", ISAS)
def test_threads_give_identical_results(isa):
    _need(isa)
    rng = np.random.default_rng(4)
    w = _sparse_int8(rng, 300, 256, 0.9, "unstructured")
    x = rng.standard_normal((256, 100)).astype(np.float32)
    m = kernels.PackedLinearInt8(w, np.ones(300, np.float32), force_isa=isa)
    f = kernels.PackedLinearF32(w.astype(np.float32), force_isa=isa)
    w_long = _sparse_int8(rng, 200, 1001, 0.9, "block1x4")
    x_long = rng.standard_normal((1001, 70)).astype(np.float32)
    m_long = kernels.PackedLinearInt8(w_long, np.ones(200, np.float32), force_isa=isa)
    before = kernels.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            kernels.set_num_threads(n)
            assert kernels.get_num_threads() == n
            results.append((m(x), f(x), m_long(x_long)))
    finally:
        kernels.set_num_threads(before)
    for got in results[1:]:
        for y, y1 in zip(got, results[0], strict=True):
            np.testing.assert_array_equal(y, y1)


def test_out_buffer_and_errors():
    rng = np.random.default_rng(5)
    w = _sparse_int8(rng, 8, 12, 0.5, "block1x4")
    m = kernels.PackedLinearInt8(w, np.ones(8, np.float32))
    x = rng.standard_normal((12, 5)).astype(np.float32)
    out = np.empty((8, 5), np.float32)
    assert m(x, out=out) is not None
    np.testing.assert_array_equal(out, m(x))
    with pytest.raises(ValueError, match="K=12"):
        m(rng.standard_normal((11, 5)).astype(np.float32))
    with pytest.raises(ValueError, match="expected"):
        m(x, out=np.empty((8, 4), np.float32))
    with pytest.raises(ValueError, match="force_isa"):
        kernels.PackedLinearInt8(w, np.ones(8, np.float32), force_isa="sse")
    with pytest.raises(ValueError, match="pattern"):
        kernels.PackedLinearInt8(w, np.ones(8, np.float32), pattern="2:4")
    with pytest.raises(ValueError, match="int8"):
        kernels.PackedLinearInt8(w.astype(np.int16), np.ones(8, np.float32))
    with pytest.raises(ValueError):
        kernels.set_num_threads(0)
    if "vnni" not in kernels.available_isas():
        with pytest.raises(RuntimeError, match="VNNI"):
            kernels.PackedLinearInt8(w, np.ones(8, np.float32), force_isa="vnni")


def test_cpu_features_reports_dispatch():
    feats = kernels.cpu_features()
    assert feats["auto_isa"] in ("vnni", "avx2", "portable")
    assert "portable" in kernels.available_isas()
    # simde-py is a build requirement, so the VNNI path's code is always built and tested, emulated
    assert feats["compiled_avx512_emulated"] and "vnni-emulated" in kernels.available_isas()


@pytest.mark.parametrize("tokens", [1, 5, 17, 128])
def test_tiled_activations_start_on_a_cache_line(tokens):
    # A 64-byte vpdpbusd operand spans two cache lines unless the tiled buffer is 64-byte aligned
    # (measured 1.5x slower on Zen 5), so the extension allocates its arrays aligned.
    rng = np.random.default_rng(tokens)
    q = rng.integers(0, 256, size=(768, tokens)).astype(np.uint8)
    x = rng.standard_normal((768, tokens)).astype(np.float32)
    assert kernels.QuantizedActivations.from_uint8(q, 0.1, 3).data.ctypes.data % 64 == 0
    assert kernels.quantize_activations(x).data.ctypes.data % 64 == 0
