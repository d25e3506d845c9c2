"""The gathered int8 kernel format (unstructured rows grouped 4 at a time by k % 4) against an int64 NumPy
reference on every ISA path, and its hand-counted packing."""

from __future__ import annotations

import numpy as np
import pytest

kernels = pytest.importorskip("pruneofa.runtime.kernels", reason="compiled kernels not built")

from tests.runtime.test_kernels import ISAS, LONG_K_SHAPES, SHAPES, _need, _sparse_int8  # noqa: E402


def _check_exact(w, q, isa, zp=7, scale=0.02):
    n = w.shape[0]
    qa = kernels.QuantizedActivations.from_uint8(q, scale=scale, zero_point=zp)
    rng = np.random.default_rng(n)
    wscale = rng.uniform(0.001, 0.02, n).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    m = kernels.PackedLinearInt8(w, wscale, bias, pattern="unstructured", kernel_format="gathered", force_isa=isa)
    acc = w.astype(np.int64) @ q.astype(np.int64)
    np.testing.assert_array_equal(m.matmul_int32(qa), acc)
    yref = scale * wscale[:, None].astype(np.float64) * (acc - zp * w.astype(np.int64).sum(1, keepdims=True)) \
        + bias[:, None]
    np.testing.assert_allclose(m.matmul_quantized(qa), yref, rtol=1e-5, atol=1e-5 * (np.abs(yref).max() + 1))
    assert m.nnz == np.count_nonzero(w)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("shape", SHAPES + LONG_K_SHAPES)
def test_gathered_is_exact_on_ragged_shapes(isa, shape):
    _need(isa)
    n, k, t = shape
    rng = np.random.default_rng(hash(("gathered", shape)) % 2**32)
    q = rng.integers(0, 256, size=(k, t)).astype(np.uint8)
    for sparsity in (0.0, 0.5, 0.9, 0.99):
        _check_exact(_sparse_int8(rng, n, k, sparsity, "unstructured"), q, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_gathered_rows_with_one_class_empty_rows_and_a_zero_matrix(isa):
    """Rows whose non-zeros all share k % 4 (3 of each quad's 4 slots padded), all-zero rows, a zero matrix."""
    _need(isa)
    rng = np.random.default_rng(3)
    n, k, t = 40, 301, 37
    w = np.zeros((n, k), np.int8)
    for row in range(0, n, 3):
        cls = row % 4
        cols = rng.choice(np.arange(cls, k, 4), size=rng.integers(1, 20), replace=False)
        w[row, cols] = rng.integers(1, 128, cols.size) * rng.choice([-1, 1], cols.size)
    w[1, :] = rng.integers(-127, 128, k)  # a dense row
    q = rng.integers(0, 256, size=(k, t)).astype(np.uint8)
    _check_exact(w, q, isa)
    _check_exact(np.zeros((n, k), np.int8), q, isa)


def test_gathered_packing_counts_the_largest_class_of_each_row():
    # row 0: k = 0, 4, 8 (class 0) and 1 (class 1) -> 3 quads; row 1: one weight per class -> 1 quad;
    # row 2: empty -> 0 quads. As 1x4 blocks: row 0 touches K-quads 0, 1, 2 -> 3 blocks; row 1 K-quad 0 -> 1
    w = np.zeros((3, 12), np.int8)
    w[0, [0, 4, 8, 1]] = [1, 2, 3, 4]
    w[1, [0, 1, 2, 3]] = [5, -6, 7, -8]
    m = kernels.PackedLinearInt8(w, np.ones(3, np.float32), pattern="unstructured", kernel_format="gathered")
    blocks = kernels.PackedLinearInt8(w, np.ones(3, np.float32), pattern="unstructured")
    assert m.nblocks == 3 + 1 + 0 and blocks.nblocks == 3 + 1 + 0
    w[1, [5, 9]] = [1, 1]  # class 1 of row 1 now holds 3: 3 quads; blocks: quads 0, 1, 2
    m = kernels.PackedLinearInt8(w, np.ones(3, np.float32), pattern="unstructured", kernel_format="gathered")
    assert m.nblocks == 3 + 3


def test_gathered_90_percent_random_uses_far_fewer_steps_than_blocks():
    rng = np.random.default_rng(0)
    w = _sparse_int8(rng, 64, 768, 0.9, "unstructured")
    g = kernels.PackedLinearInt8(w, np.ones(64, np.float32), pattern="unstructured", kernel_format="gathered")
    b = kernels.PackedLinearInt8(w, np.ones(64, np.float32), pattern="unstructured")
    assert g.nnz / (4 * g.nblocks) > 0.7 and b.nnz / (4 * b.nblocks) < 0.35


@pytest.mark.parametrize("isa", ISAS)
def test_gathered_threads_give_identical_results(isa):
    _need(isa)
    rng = np.random.default_rng(5)
    w = _sparse_int8(rng, 200, 700, 0.9, "unstructured")
    qa = kernels.QuantizedActivations.from_uint8(rng.integers(0, 256, (700, 70)).astype(np.uint8), 0.1, 3)
    m = kernels.PackedLinearInt8(w, np.ones(200, np.float32), pattern="unstructured", kernel_format="gathered",
                                 force_isa=isa)
    before = kernels.get_num_threads()
    try:
        kernels.set_num_threads(1)
        one = m.matmul_int32(qa)
        kernels.set_num_threads(2)
        np.testing.assert_array_equal(m.matmul_int32(qa), one)
    finally:
        kernels.set_num_threads(before)


def test_a_bad_kernel_format_is_refused():
    with pytest.raises(ValueError, match="kernel_format='csr'"):
        kernels.PackedLinearInt8(np.zeros((4, 4), np.int8), np.ones(4, np.float32), kernel_format="csr")
