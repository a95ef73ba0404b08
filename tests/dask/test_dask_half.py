"""softjit.dask on float16 and bfloat16 Dask arrays: 16-bit chunks go to softjit's 16-bit kernels
as they are, results keep x's dtype and agree with softjit's own 16-bit functions (bitwise where
the rows are whole in a chunk, or split on softjit's own chunk bounds)."""
from __future__ import annotations

import numpy as np
import pytest

import softjit

da = pytest.importorskip("dask.array", reason="softjit.dask needs dask[array]: "
                                              "pip install 'softjit[dask]'")
sd = pytest.importorskip("softjit.dask")

HOST_ISAS = softjit.host_isas()


@pytest.fixture(params=["float16", "bfloat16"])
def dtype(request):
    if request.param == "float16":
        return np.dtype(np.float16)
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes "
                                                        "(pip install 'softjit[bfloat16]')")
    return np.dtype(ml_dtypes.bfloat16)


def _epsilon(dtype: np.dtype) -> float:
    """The dtype's machine epsilon: results rounded to it are within half of it, relative."""
    return 2.0 ** -10 if dtype == np.float16 else 2.0 ** -7


def _reference(x: np.ndarray, axis=-1):
    """(softmax, logsumexp, log_softmax) in float64 of the 16-bit values (finite rows)."""
    x64 = x.astype(np.float64)
    m = x64.max(axis=axis, keepdims=True)
    s = np.exp(x64 - m).sum(axis=axis, keepdims=True)
    return np.exp(x64 - m) / s, np.squeeze(m + np.log(s), axis), (x64 - m) - np.log(s)


def _compute(y):
    return y.compute(scheduler="threads")


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_split_rows_match_reference_and_softjit(dtype, isa):
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((6, 3000)) * 4).astype(dtype)
    dx = da.from_array(x, chunks=(4, 700))
    y = _compute(sd.softmax(dx, isa=isa))
    c = _compute(sd.logsumexp(dx, isa=isa))
    ly = _compute(sd.log_softmax(dx, isa=isa))
    assert y.dtype == c.dtype == ly.dtype == dtype
    y_ref, c_ref, ly_ref = _reference(x)
    eps = _epsilon(dtype)
    np.testing.assert_allclose(y.astype(np.float64), y_ref, rtol=eps, atol=1e-7)
    np.testing.assert_allclose(c.astype(np.float64), c_ref, rtol=eps)
    np.testing.assert_allclose(ly.astype(np.float64), ly_ref, rtol=eps, atol=eps)
    np.testing.assert_allclose(y.astype(np.float64),
                               softjit.softmax(x, isa=isa).astype(np.float64), rtol=eps, atol=0)
    np.testing.assert_allclose(c.astype(np.float64),
                               softjit.logsumexp(x, isa=isa).astype(np.float64), rtol=eps)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_whole_rows_bitwise_equal_to_softjit(dtype, isa):
    x = (np.random.default_rng(2).standard_normal((9, 513, 2)) * 3).astype(dtype)
    dx = da.from_array(x, chunks=(4, 513, 1))
    assert np.array_equal(_compute(sd.softmax(dx, axis=1, isa=isa)),
                          softjit.softmax(x, axis=1, isa=isa))
    assert np.array_equal(_compute(sd.log_softmax(dx, axis=1, isa=isa)),
                          softjit.log_softmax(x, axis=1, isa=isa))
    assert np.array_equal(_compute(sd.logsumexp(dx, axis=1, isa=isa)),
                          softjit.logsumexp(x, axis=1, isa=isa))


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_split_rows_on_softjits_bounds_bitwise_equal(dtype, isa):
    """16-bit rows long enough for softjit to reduce chunk by chunk: the same 16-bit kernels on
    the same pieces and the same combination, so the same bits as softjit.softmax."""
    from softjit.runtime import rows as row_runtime

    n = row_runtime.SPLIT_ROW_MIN
    x = (np.random.default_rng(8).standard_normal((2, n)) * 4).astype(dtype)
    x[1, :] = -np.inf
    x[1, n - 5] = 2.0  # the only finite element, in the last chunk
    grid = tuple(b - a for a, b in row_runtime.chunk_bounds(n))
    pairs = tuple(sum(grid[i:i + 2]) for i in range(0, len(grid), 2))
    y = _compute(sd.softmax(da.from_array(x, chunks=(1, pairs)), isa=isa))
    assert np.array_equal(y, softjit.softmax(x, algorithm="two-pass", isa=isa, threads=2))
    assert y[1, n - 5] == 1 and not y[1, :n - 5].astype(np.float32).any()


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_special_values_across_chunks(dtype, isa):
    inf, nan = np.inf, np.nan
    x = np.random.default_rng(3).standard_normal((6, 40)).astype(np.float32)
    x[0, :] = -inf
    x[0, 33] = 1.5      # the only finite element, in the last chunk
    x[1, 10:20] = -inf  # a whole chunk of -inf
    x[2, 5] = nan       # NaN in one chunk: the row is NaN
    x[3, 25] = inf      # +inf: NaN (logsumexp +inf)
    x[4, :] = -inf      # only -inf: NaN (logsumexp -inf)
    x = x.astype(dtype)
    dx = da.from_array(x, chunks=(4, 10))
    with np.errstate(all="ignore"):
        y = _compute(sd.softmax(dx, isa=isa)).astype(np.float64)
        c = _compute(sd.logsumexp(dx, isa=isa)).astype(np.float64)
        ly = _compute(sd.log_softmax(dx, isa=isa)).astype(np.float64)
    assert np.isnan(y[2:5]).all() and not np.isnan(y[[0, 1, 5]]).any()
    assert y[0, 33] == 1.0 and not y[0, np.arange(40) != 33].any()
    assert (y[1, 10:20] == 0).all() and (y[[0, 1, 5]] <= 1).all()
    assert np.isnan(c[2]) and c[3] == inf and c[4] == -inf and c[0] == 1.5
    assert np.isnan(ly[2:5]).all() and abs(ly[0, 33]) <= 1e-6 and (ly[1, 10:20] == -inf).all()


def test_chunks_reach_the_kernels_as_they_are(dtype):
    """A 16-bit chunk of a wider array is handed to the kernels as a view of its own memory,
    in its own dtype: no float32 copy."""
    block = np.zeros((8, 300), dtype)[:, 100:200]
    rows = sd._rows(block, (1,))
    assert rows.dtype == dtype and np.shares_memory(rows, block)
