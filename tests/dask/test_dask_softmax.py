"""softjit.dask.softmax on Dask's threaded scheduler: rows split across chunks along any axis,
special values across chunk boundaries, agreement with softjit's own chunked long rows."""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softmax_checks import FLT_MAX, FLT_MIN, check_softmax, log_uniform, reference

da = pytest.importorskip("dask.array", reason="softjit.dask needs dask[array]: "
                                              "pip install 'softjit[dask]'")
sd = pytest.importorskip("softjit.dask")

HOST_ISAS = softjit.host_isas()


def run(x: np.ndarray, chunks, axis=-1, **options) -> np.ndarray:
    y = sd.softmax(da.from_array(x, chunks=chunks), axis=axis, **options)
    assert y.chunks == da.from_array(x, chunks=chunks).chunks
    return y.compute(scheduler="threads")


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("shape, chunks, axis", [
    ((5, 1000), (2, 300), -1),
    ((5, 60), (2, 1), -1),             # one element per chunk
    ((7, 300, 4), (3, 50, 2), 1),      # a middle axis
    ((300, 6), (41, 6), 0),            # the first axis
    ((64,), (10,), 0),                 # one row, 1-D
    ((3, 5000), (3, (4000, 1, 999)), -1),  # uneven chunks
    ((4, 257), (1, 257), -1),          # rows whole in one chunk: softjit.softmax itself
])
def test_matches_reference(isa, shape, chunks, axis):
    rng = np.random.default_rng(hash((shape, axis)) % 2**32)
    x = (rng.standard_normal(shape) * 30).astype(np.float32)
    y = run(x, chunks, axis, isa=isa)
    check_softmax(y, x, axis)
    close = softjit.softmax(x, axis=axis, isa=isa)
    np.testing.assert_allclose(y, close, rtol=2e-5, atol=FLT_MIN)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_wide_magnitudes(isa):
    rng = np.random.default_rng(7)
    x = log_uniform(rng, (6, 3000))
    check_softmax(run(x, (2, 700), isa=isa), x)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_whole_rows_bitwise_equal_to_softjit(isa):
    x = np.random.default_rng(1).standard_normal((9, 513)).astype(np.float32)
    assert np.array_equal(run(x, (4, 513), isa=isa), softjit.softmax(x, isa=isa))


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("threads", [1, 2])
def test_split_row_agrees_with_softjit_chunked_row(isa, threads):
    """Chunks on the bounds softjit reduces a long row in (rows.chunk_bounds): the same pass
    kernels on the same pieces; softjit adds the chunk sums with math.fsum and rounds its
    two-pass scale up, the graph adds them in chunk order, so the two agree to an ulp or two
    (not bitwise)."""
    from softjit.runtime import rows

    n = rows.SPLIT_ROW_MIN
    x = (np.random.default_rng(threads).standard_normal((1, n)) * 5).astype(np.float32)
    chunks = (1, tuple(b - a for a, b in rows.chunk_bounds(n)))
    expected = softjit.softmax(x, algorithm="two-pass", isa=isa, threads=threads)
    np.testing.assert_allclose(run(x, chunks, isa=isa), expected, rtol=3e-7, atol=FLT_MIN)


@pytest.mark.parametrize("split_every", [2, 3, None])
def test_tree_reduction_depth(split_every):
    """Many chunks along the row: the partial sums meet over several levels of the tree."""
    x = (np.random.default_rng(3).standard_normal((3, 4000)) * 20).astype(np.float32)
    y = run(x, (2, 100), split_every=split_every)
    check_softmax(y, x)
    graph_keys = sd.softmax(da.from_array(x, chunks=(2, 100)), split_every=2).dask.keys()
    assert sum(1 for k in graph_keys if "partial" in str(k[0] if isinstance(k, tuple) else k)) > 0


def _rows_with_specials():
    """Rows of 40 in chunks of 10, each row a case that crosses a chunk boundary."""
    inf, nan = np.inf, np.nan
    rows = np.random.default_rng(11).standard_normal((14, 40)).astype(np.float32)
    rows[0, :] = -inf
    rows[0, 33] = 1.5                  # the only finite element, in the last chunk
    rows[1, 10:20] = -inf              # a whole chunk of -inf
    rows[2, 5] = nan                   # NaN in one chunk: the whole row NaN
    rows[3, 25] = inf                  # +inf in one chunk: NaN
    rows[4, :] = -inf                  # only -inf: NaN
    rows[5, 12] = FLT_MAX              # a magnitude past the two-pass clamp in one chunk
    rows[6, 0:10] = -FLT_MAX           # a chunk of huge negatives
    rows[7, 30:40] = 3e6               # a chunk past the clamp, others ordinary
    rows[8, :] = -5e6                  # every chunk past the clamp (below)
    rows[8, 17] = -5e6 + 3
    rows[9, 0:10] = -inf               # -inf chunk, and the maxima in other chunks huge
    rows[9, 10:] = 1e30
    rows[10, :10] = -1e7               # a marked chunk far below accepted ones
    rows[11, :] = -1.0e6               # inside the clamp, near its low end, with one chunk past it
    rows[11, 20:30] = -3e6
    rows[12, ::2] = -inf               # alternate -inf (attention mask)
    rows[13, :] = -inf                 # all -inf but one -FLT_MAX
    rows[13, 39] = -FLT_MAX
    return rows


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_special_values_across_chunks(isa):
    x = _rows_with_specials()
    with np.errstate(all="ignore"):
        y = run(x, (3, 10), isa=isa)
    check_softmax(y, x)
    assert np.isnan(y[[2, 3, 4]]).all() and not np.isnan(np.delete(y, [2, 3, 4], 0)).any()
    assert abs(y[0, 33] - 1.0) <= 1e-6 and not y[0, np.arange(40) != 33].any()
    with np.errstate(all="ignore"):
        single = softjit.softmax(x, isa=isa)
    np.testing.assert_allclose(y, single, rtol=2e-5, atol=FLT_MIN)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_special_values_along_first_axis(isa):
    x = np.ascontiguousarray(_rows_with_specials().T)
    with np.errstate(all="ignore"):
        check_softmax(run(x, (7, 5), axis=0, isa=isa), x, axis=0, ref=reference(x, 0))


def test_threads_inside_chunks():
    x = (np.random.default_rng(5).standard_normal((12, 900)) * 10).astype(np.float32)
    check_softmax(run(x, (6, 200), threads=2), x)
    check_softmax(run(x, (6, 900), threads=2), x)


def test_empty_axes():
    x = np.zeros((0, 30), np.float32)
    assert run(x, (1, 10)).shape == (0, 30)
    x = np.zeros((3, 0), np.float32)
    assert run(x, (1, 1)).shape == (3, 0)


def test_bad_input():
    x = da.zeros((4, 10), chunks=(2, 5), dtype=np.float32)
    with pytest.raises(TypeError, match="float32"):
        sd.softmax(x.astype(np.float64))
    with pytest.raises(TypeError, match="dask array"):
        sd.softmax(np.zeros((4, 10), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        sd.softmax(x, axis=2)
    with pytest.raises(TypeError, match="axis must be an integer"):
        sd.softmax(x, axis=1.0)
    with pytest.raises(ValueError, match="threads"):
        sd.softmax(x, threads=0)
    with pytest.raises(ValueError, match="isa"):
        sd.softmax(x, isa="sse2")
    with pytest.raises(ValueError, match="0-d"):
        sd.softmax(da.from_array(np.float32(1.0)))


# ---------------------------------------------------------------------------- log functions
def _log_reference(x: np.ndarray, axis: int = -1):
    """(logsumexp, log_softmax) in float64 on the float32 values, specials as softjit's."""
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        m = np.max(np.where(np.isnan(x64), -np.inf, x64), axis=axis, keepdims=True)
        safe = np.where(np.isfinite(m), m, 0.0)
        log_sum = np.log(np.sum(np.exp(x64 - safe), axis=axis, keepdims=True))
        c = log_sum + safe
        c = np.where(np.isposinf(x64).any(axis=axis, keepdims=True), np.inf, c)
        c = np.where(np.isnan(x64).any(axis=axis, keepdims=True), np.nan, c)
        # (x - max) - ln(sum): x - c would lose ln(sum) beside a maximum of 1e30
        y = np.where(np.isfinite(c), (x64 - safe) - log_sum, np.nan)
    return np.squeeze(c, axis), y


def run_log(x, chunks, axis=-1, **options):
    dx = da.from_array(x, chunks=chunks)
    c = sd.logsumexp(dx, axis=axis, **options).compute(scheduler="threads")
    y = sd.log_softmax(dx, axis=axis, **options).compute(scheduler="threads")
    return c, y


def _check_log(c, y, x, axis=-1):
    c_ref, y_ref = _log_reference(x, axis)
    assert c.dtype == y.dtype == np.float32 and c.shape == c_ref.shape and y.shape == x.shape
    np.testing.assert_array_equal(np.isnan(c), np.isnan(c_ref))
    finite = np.isfinite(c_ref)
    np.testing.assert_array_equal(c[~finite & ~np.isnan(c_ref)], c_ref[~finite & ~np.isnan(c_ref)])
    np.testing.assert_allclose(c[finite], c_ref[finite], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    live = ~np.isnan(y_ref)
    np.testing.assert_array_equal(y[live & (x == -np.inf)], -np.inf)
    fine = live & np.isfinite(y_ref)
    assert np.all(np.abs(y[fine] - y_ref[fine]) <= 2e-6 * np.maximum(1.0, np.abs(y_ref[fine])))


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("shape, chunks, axis", [
    ((5, 1000), (2, 300), -1),
    ((7, 300, 4), (3, 50, 2), 1),
    ((300, 6), (41, 6), 0),
    ((4, 257), (1, 257), -1),          # rows whole in one chunk: softjit's own functions
])
def test_log_functions_match_reference(isa, shape, chunks, axis):
    rng = np.random.default_rng(hash((shape, axis, 1)) % 2**32)
    x = (rng.standard_normal(shape) * 30).astype(np.float32)
    c, y = run_log(x, chunks, axis, isa=isa)
    _check_log(c, y, x, axis)
    np.testing.assert_allclose(c, softjit.logsumexp(x, axis=axis, isa=isa), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_log_functions_special_values_across_chunks(isa):
    x = _rows_with_specials()
    with np.errstate(all="ignore"):
        c, y = run_log(x, (3, 10), isa=isa)
    _check_log(c, y, x)
    assert np.isnan(c[2]) and c[3] == np.inf and c[4] == -np.inf
    assert abs(c[0] - 1.5) <= 1e-6 and abs(y[0, 33]) <= 1e-6


def test_log_functions_bad_input():
    x = da.zeros((4, 10), chunks=(2, 5), dtype=np.float32)
    with pytest.raises(TypeError, match="float32"):
        sd.logsumexp(x.astype(np.float64))
    with pytest.raises(ValueError, match="out of range"):
        sd.log_softmax(x, axis=-3)
