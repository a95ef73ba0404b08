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
    c, y = run_log(x, (4, 513), isa=isa)
    assert np.array_equal(c, softjit.logsumexp(x, isa=isa))
    assert np.array_equal(y, softjit.log_softmax(x, isa=isa))


def _long_rows(rows: int, seed: int) -> np.ndarray:
    """Rows long enough for softjit.softmax to reduce them chunk by chunk (rows.chunk_bounds),
    with the special cases that cross its chunks: a chunk of only -inf, a row whose only finite
    element sits in one chunk, alternate -inf."""
    from softjit.runtime import rows as row_runtime

    n = row_runtime.SPLIT_ROW_MIN
    x = (np.random.default_rng(seed).standard_normal((rows, n)) * 5).astype(np.float32)
    first = row_runtime.chunk_bounds(n)[0]
    x[1, first[0]:first[1]] = -np.inf
    x[2, :] = -np.inf
    x[2, n - 3] = 7.25
    x[3, ::2] = -np.inf
    return x


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("threads", [1, 2])
def test_split_rows_bitwise_equal_to_softjit_threads(isa, threads):
    """Chunks whose bounds fall on those softjit reduces a long row in (rows.chunk_bounds):
    the same first-pass kernel on the same pieces, the same exact combination
    (rows.two_pass_totals) and the same output pass, so the same bits as softjit.softmax with
    any threads=, on softjit's chunks or on unions of them, along the last or the first axis."""
    from softjit.runtime import rows as row_runtime

    x = _long_rows(4, threads)
    n = x.shape[1]
    expected = softjit.softmax(x, algorithm="two-pass", isa=isa, threads=threads)
    grid = tuple(b - a for a, b in row_runtime.chunk_bounds(n))
    pairs = tuple(sum(grid[i:i + 2]) for i in range(0, len(grid), 2))
    for chunks in [(1, grid), (3, pairs), (4, (grid[0], n - grid[0]))]:
        y = run(x, chunks, isa=isa, threads=threads)
        assert np.array_equal(y, expected), chunks
    assert y[2, n - 3] == 1.0 and not y[2, :n - 3].any()
    xt = np.ascontiguousarray(x[:2].T)
    assert np.array_equal(run(xt, (pairs, 2), axis=0, isa=isa),
                          softjit.softmax(xt, axis=0, algorithm="two-pass", isa=isa, threads=2))


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_split_rows_off_softjits_bounds_agree_closely(isa):
    """Chunk bounds off softjit's own: the pieces differ, so the sums differ in rounding."""
    x = _long_rows(4, 9)
    expected = softjit.softmax(x, algorithm="two-pass", isa=isa, threads=2)
    with np.errstate(all="ignore"):
        y = run(x, (3, 300_001), isa=isa)
    np.testing.assert_allclose(y, expected, rtol=3e-7, atol=FLT_MIN)
    assert y[2, -3] == 1.0


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_single_finite_or_dominating_entry_gives_exactly_one(isa):
    """The scale 1/sum is rounded up (rows.scale_for), so the entry that is the whole sum, or
    all of it that float32 holds, comes out exactly 1 (min(p * r, 1)), never an ulp off it,
    wherever the entry sits among the chunks; no output exceeds 1."""
    rng = np.random.default_rng(4)
    rows, n = 300, 40
    where = rng.integers(0, n, rows)
    values = (rng.standard_normal(rows) * 30).astype(np.float32)
    alone = np.full((rows, n), -np.inf, np.float32)
    alone[np.arange(rows), where] = values
    dominated = (rng.standard_normal((rows, n)) - 120).astype(np.float32)
    dominated[np.arange(rows), where] = values + np.float32(40)
    for x in (alone, dominated):
        y = run(x, (64, 10), isa=isa)
        assert (y <= 1.0).all()
        assert (y[np.arange(rows), where] == 1.0).all()
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
        # rows of every kind in one chunk, over two threads: runs of two-pass rows in one
        # native call each, the others one by one; the same bits
        assert np.array_equal(run(x, (14, 10), isa=isa, threads=2), y, equal_nan=True)
    np.testing.assert_allclose(y, single, rtol=2e-5, atol=FLT_MIN)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_special_values_along_first_axis(isa):
    x = np.ascontiguousarray(_rows_with_specials().T)
    with np.errstate(all="ignore"):
        check_softmax(run(x, (7, 5), axis=0, isa=isa), x, axis=0, ref=reference(x, 0))


# ---------------------------------------------------------------------------- several axes
def _merged(a: np.ndarray, axes) -> np.ndarray:
    """a with `axes` (a tuple, or None: all) moved last and merged: (rows, row length)."""
    axes = tuple(range(a.ndim)) if axes is None else tuple(sorted(ax % a.ndim for ax in axes))
    moved = np.moveaxis(a, axes, tuple(range(a.ndim - len(axes), a.ndim)))
    return moved.reshape(-1, int(np.prod([a.shape[ax] for ax in axes])))


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("shape, chunks, axes", [
    ((4, 30, 20), (3, 7, 6), (1, 2)),
    ((4, 30, 20), (3, 7, 6), (0, -1)),
    ((4, 30, 20), (3, 7, 6), None),
    ((6, 50), (4, 9), None),
    ((5, 8, 9, 3), (2, 3, 9, 2), (1, 3)),   # one reduced axis whole, the other split
    ((4, 30, 20), (2, 30, 20), (1, 2)),     # rows whole in one chunk: softjit's own functions
])
def test_several_axes(isa, shape, chunks, axes):
    rng = np.random.default_rng(abs(hash((shape, axes))) % 2**32)
    x = (rng.standard_normal(shape) * 20).astype(np.float32)
    y = run(x, chunks, axes, isa=isa)
    check_softmax(_merged(y, axes), _merged(x, axes))
    single = softjit.softmax(x, axis=axes, isa=isa)
    if all(len(c) == 1 for i, c in enumerate(da.from_array(x, chunks=chunks).chunks)
           if axes is None or i in {a % x.ndim for a in axes}):
        assert np.array_equal(y, single)
    np.testing.assert_allclose(y, single, rtol=2e-5, atol=FLT_MIN)
    c, ly = run_log(x, chunks, axes, isa=isa)
    c_ref, y_ref = _log_reference(_merged(x, axes))
    np.testing.assert_allclose(c.reshape(-1), c_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c, softjit.logsumexp(x, axis=axes, isa=isa), rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(_merged(ly, axes) - y_ref) <= 2e-6 * np.maximum(1.0, np.abs(y_ref)))
    kept = sd.logsumexp(da.from_array(x, chunks=chunks), axis=axes, keepdims=True, isa=isa)
    kept = kept.compute(scheduler="threads")
    assert kept.shape == softjit.logsumexp(x, axis=axes, keepdims=True).shape
    np.testing.assert_array_equal(kept.reshape(c.shape), c)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_special_values_across_chunks_of_several_axes(isa):
    """Each row of _rows_with_specials as a 4 x 10 block of a 3-D array, reduced over its two
    axes and split 2 x 5: the specials cross chunk boundaries along both."""
    flat = _rows_with_specials()
    x = flat.reshape(14, 4, 10)
    with np.errstate(all="ignore"):
        y = run(x, (5, 2, 5), (1, 2), isa=isa)
        c, ly = run_log(x, (5, 2, 5), (1, 2), isa=isa)
    y2 = y.reshape(14, 40)
    check_softmax(y2, flat)
    assert np.isnan(y2[[2, 3, 4]]).all() and not np.isnan(np.delete(y2, [2, 3, 4], 0)).any()
    assert y2[0, 33] == 1.0 and not y2[0, np.arange(40) != 33].any()
    _check_log(c, ly.reshape(14, 40), flat)
    assert np.isnan(c[2]) and c[3] == np.inf and c[4] == -np.inf


def test_several_axes_empty_and_bad():
    x = np.zeros((3, 0, 4), np.float32)
    assert run(x, (2, 1, 3), (1, 2)).shape == (3, 0, 4)
    c = sd.logsumexp(da.from_array(x, chunks=(2, 1, 3)), axis=(1, 2)).compute()
    np.testing.assert_array_equal(c, np.full(3, -np.inf, np.float32))
    dx = da.zeros((4, 10), chunks=(2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="repeats"):
        sd.softmax(dx, axis=(1, -1))
    with pytest.raises(ValueError, match="out of range"):
        sd.log_softmax(dx, axis=(0, 2))
    with pytest.raises(TypeError, match="axis must be an integer"):
        sd.logsumexp(dx, axis=(0, 1.0))


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
