"""Property-based tests of softjit.softmax (hypothesis): arbitrary shapes (1-3 dimensions, sizes
0..~300), axes, strided and reversed views, out arrays, threads, and float32 values including
NaN, +-inf, +-FLT_MAX, zeros and subnormals, against the float64 reference (softmax_checks).

Examples are kept few enough that the file runs in well under a minute.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softjit

from softmax_checks import FLT_MAX, FLT_MIN, check_softmax, log_uniform, uniform

HOST_ISAS = softjit.host_isas()
ALGORITHMS = ("auto", "two-pass", "three-pass-reload", "three-pass-recompute")
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 1e-45,
            88.7, -87.3, -103.98, 2.0 ** 20, -(2.0 ** 20), 3e6, -3e6]

float32s = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.floats(-100.0, 100.0, width=32),
    st.sampled_from(SPECIALS),
)


def as_view(base: np.ndarray, steps: tuple, transpose: tuple | None) -> np.ndarray:
    view = base[tuple(slice(None, None, s) for s in steps)]
    return view.transpose(transpose) if transpose is not None else view


@st.composite
def layouts(draw, ndim):
    """Per-axis steps (1, 2, -1, -3) and an optional axis permutation."""
    steps = tuple(draw(st.sampled_from([1, 1, 2, -1, -3])) for _ in range(ndim))
    transpose = draw(st.none() | st.permutations(range(ndim)).map(tuple))
    return steps, transpose


@st.composite
def calls(draw):
    isa = draw(st.sampled_from(HOST_ISAS))
    algorithm = draw(st.sampled_from(ALGORITHMS))
    threads = draw(st.sampled_from([1, 1, 2, 3]))
    out_kind = draw(st.sampled_from(["none", "new", "in-place", "strided"]))
    return isa, algorithm, threads, out_kind


def run(x: np.ndarray, axis: int, isa, algorithm, threads, out_kind):
    """softjit.softmax with the drawn out argument; returns y (x untouched unless in place)."""
    if out_kind == "none":
        return softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa, threads=threads)
    if out_kind == "new":
        out = np.full(x.shape, 3.0, np.float32)
    elif out_kind == "strided":
        out = np.full(x.shape + (2,), 3.0, np.float32)[..., 0]
    else:
        out = x.copy()  # x itself is compared afterwards, so work on a copy in place
        got = softjit.softmax(out, axis=axis, algorithm=algorithm, isa=isa, threads=threads,
                              out=out)
        assert got is out
        return out
    got = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa, threads=threads, out=out)
    assert got is out
    return out


@SETTINGS
@given(data=st.data())
def test_elementwise_arrays_match_the_reference(data):
    """Small arrays whose every element hypothesis chooses (so failures shrink to a few floats)."""
    ndim = data.draw(st.integers(1, 3), label="ndim")
    shape = data.draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=12),
                      label="shape")
    x = data.draw(hnp.arrays(np.float32, shape, elements=float32s), label="x")
    axis = data.draw(st.integers(-ndim, ndim - 1), label="axis")
    isa, algorithm, threads, out_kind = data.draw(calls(), label="call")
    before = x.copy()
    y = run(x, axis, isa, algorithm, threads, out_kind)
    check_softmax(y, x, axis)
    assert np.array_equal(x, before, equal_nan=True), "x was modified"


@st.composite
def generated_arrays(draw):
    """Larger arrays made by numpy from drawn parameters: shape, value distribution, a fraction
    of -inf, a few specials at drawn places, then a drawn strided/transposed view."""
    ndim = draw(st.integers(1, 3))
    max_side = {1: 300, 2: 300, 3: 40}[ndim]
    shape = tuple(draw(st.integers(0, max_side)) for _ in range(ndim))
    steps, transpose = draw(layouts(ndim))
    base_shape = tuple(s * abs(step) for s, step in zip(shape, steps))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["u1", "u100", "u1e4", "u1e6", "u1e20", "u1e38", "loguniform",
                                 "normal", "constant"]))
    rng = np.random.default_rng(seed)
    if kind == "loguniform":
        base = log_uniform(rng, base_shape)
    elif kind == "normal":
        base = rng.standard_normal(base_shape).astype(np.float32)
    elif kind == "constant":
        base = np.full(base_shape, draw(float32s), np.float32)
    else:
        base = uniform(rng, base_shape, float(kind[1:]))
    minus_inf = draw(st.sampled_from([0.0, 0.0, 0.3, 0.9, 1.0]))
    if minus_inf:
        base[rng.random(base_shape) < minus_inf] = -np.inf
    for _ in range(draw(st.integers(0, 3))):
        if base.size:
            base.reshape(-1)[rng.integers(base.size)] = draw(st.sampled_from(SPECIALS))
    return as_view(base, steps, transpose)


@SETTINGS
@given(x=generated_arrays(), data=st.data())
def test_views_of_generated_arrays_match_the_reference(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    isa, algorithm, threads, out_kind = data.draw(calls(), label="call")
    before = x.copy()
    y = run(x, axis, isa, algorithm, threads, out_kind)
    check_softmax(y, x, axis)
    assert np.array_equal(x, before, equal_nan=True), "x was modified"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=generated_arrays(), data=st.data())
def test_results_do_not_depend_on_layout_or_threads(x, data):
    """API.md: results never depend on alignment, strides or (for batches of rows) the number of
    threads: a view gives the bits of its contiguous copy."""
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    isa = data.draw(st.sampled_from(HOST_ISAS), label="isa")
    algorithm = data.draw(st.sampled_from(ALGORITHMS), label="algorithm")
    expected = softjit.softmax(np.ascontiguousarray(x), axis=axis, algorithm=algorithm, isa=isa)
    got = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa)
    assert np.array_equal(got, expected, equal_nan=True)
    if x.size and x.size // max(x.shape[axis], 1) >= 2:  # several rows: no row is split
        threaded = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa, threads=2)
        assert np.array_equal(threaded, expected, equal_nan=True)


@pytest.mark.parametrize("isa", HOST_ISAS)
@settings(max_examples=80, deadline=None)
@given(row=hnp.arrays(np.float32, st.integers(1, 80), elements=float32s))
def test_algorithms_agree_on_which_rows_are_nan(isa, row):
    """Every algorithm gives NaN exactly for the rows the reference does (NaN, +inf, all -inf),
    and -inf entries give exactly 0 otherwise."""
    results = [softjit.softmax(row, algorithm=a, isa=isa) for a in ALGORITHMS[1:]]
    nan_row = bool(np.isnan(row).any() or (row == np.inf).any() or (row == -np.inf).all())
    for y in results:
        assert bool(np.isnan(y).all()) == nan_row and bool(np.isnan(y).any()) == nan_row
        if not nan_row:
            assert (y[row == -np.inf] == 0).all()
            assert abs(float(np.sum(y, dtype=np.float64)) - 1.0) <= 1e-5 * max(1, row.size) ** 0.5
