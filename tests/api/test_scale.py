"""scale= of softjit.softmax, log_softmax and logsumexp (a temperature: f(scale * x)).

The law: wherever the float32 products numpy.float32(scale) * x are finite, f(x, scale=s) has
the bits of f(numpy.float32(s) * x) (NaN rows NaN), for every algorithm, ISA, layout, thread
count and split long row. Rows where a product overflows (x finite, x * s beyond float32) are
computed in float64: within the README's accuracy of the float64 function of the exact
products. Bad scales raise a TypeError or ValueError naming the value.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import softjit
from softjit.runtime import rows as rows_module

from log_softmax_checks import check_log_softmax, check_logsumexp
from softmax_cases import ALGORITHMS, HOST_ISAS, ISAS, native
from softmax_checks import FLT_MAX, check_softmax, reference

LOG_ALGORITHMS = ("two-pass", "three-pass")
F32 = np.float32


def products(x, s) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return x * np.float32(s)


def same(a, b) -> bool:
    """Equal bits, every NaN matching a NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape or not (np.isnan(a) == np.isnan(b)).all():
        return False
    keep = ~np.isnan(a)
    return np.array_equal(a[keep].view(np.uint32), b[keep].view(np.uint32))


def assert_law(x, s, isa, axis=-1, threads=1) -> None:
    """softmax / log_softmax / logsumexp of x with scale s give the bits of the same call on the
    float32 products, for every algorithm."""
    p = products(x, s)
    for algorithm in ("auto",) + ALGORITHMS:
        got = softjit.softmax(x, axis, algorithm=algorithm, isa=isa, scale=s, threads=threads)
        want = softjit.softmax(p, axis, algorithm=algorithm, isa=isa)
        assert same(got, want), ("softmax", algorithm, isa, s, x, got, want)
    for algorithm in LOG_ALGORITHMS:
        got = softjit.log_softmax(x, axis, algorithm=algorithm, isa=isa, scale=s,
                                  threads=threads)
        want = softjit.log_softmax(p, axis, algorithm=algorithm, isa=isa)
        assert same(got, want), ("log_softmax", algorithm, isa, s, x, got, want)
    got = softjit.logsumexp(x, axis, isa=isa, scale=s, threads=threads)
    assert same(got, softjit.logsumexp(p, axis, isa=isa)), ("logsumexp", isa, s)


# ---------------------------------------------------------------------------- the law
SCALES = st.one_of(st.floats(-200.0, 200.0), st.sampled_from([0.0, -0.0, 1e-30, -3e-39, 1.0,
                                                              np.float32(0.1), 7]))


@st.composite
def arrays(draw):
    rows = draw(st.integers(1, 6))
    n = draw(st.integers(1, 70))
    x = draw(hnp.arrays(np.float32, (rows, n), elements=st.floats(-1e4, 1e4, width=32)))
    mask = draw(hnp.arrays(np.bool_, (rows, n)))
    if draw(st.booleans()):
        x = np.where(mask, F32(-np.inf), x)  # attention masks
    return x


@settings(max_examples=40, deadline=None)
@given(x=arrays(), s=SCALES, isa=st.sampled_from(HOST_ISAS))
def test_the_law_on_drawn_arrays_and_scales(x, s, isa):
    assert_law(x, s, isa)


@pytest.mark.parametrize("isa", ISAS)
def test_the_law_on_special_rows(isa):
    """-inf masks times a negative scale are +inf (the row is NaN, as softmax of +inf is),
    0 * inf is NaN, NaN rows stay NaN, +-FLT_MAX (scales up to 1), a single finite entry, huge
    and tiny scales."""
    native(isa)
    n = 37
    rng = np.random.default_rng(41)
    rows = [rng.standard_normal(n) * 10 for _ in range(3)]
    rows[1][[3, 20]] = -np.inf
    rows[2][5] = np.nan
    plus_inf = rng.standard_normal(n)
    plus_inf[9] = np.inf
    top = rng.standard_normal(n)
    top[[0, 1]] = FLT_MAX, -FLT_MAX
    only_minus_inf = np.full(n, -np.inf)
    one_finite = np.full(n, -np.inf)
    one_finite[17] = 2.5
    x = np.array(rows + [plus_inf, top, only_minus_inf, one_finite], np.float32)
    for s in (-2.0, -1.0, -1e-3, 0.0, -0.0, 0.5, 1e-38, 1e3):
        # (FLT_MAX times more than 1 overflows: test_overflowing_products_* take that row)
        assert_law(x if abs(s) <= 1 else np.delete(x, 4, axis=0), s, isa)
    assert_law(np.delete(x, 4, axis=0)[:, :1], -3.0, isa)  # rows of one element


@pytest.mark.parametrize("isa", ISAS)
def test_the_law_on_layouts(isa):
    """Unaligned, row-strided, element-strided, reversed, other axes, several axes, 3-D, empty."""
    native(isa)
    rng = np.random.default_rng(42)
    base = (rng.standard_normal((9, 131)) * 8).astype(np.float32)
    s = -0.625
    for x in (base[:, 1:], base[::2], base[::-1], base[:, ::3], base.T, base.reshape(3, 3, 131)):
        assert_law(x, s, isa)
    for axis in (0, None, (0, 1)):
        assert_law(base.reshape(3, 3, 131), s, isa, axis=axis)
    assert_law(base[:, :0], s, isa, axis=0)
    assert softjit.softmax(base[:0], scale=s, isa=isa).shape == (0, 131)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place_and_out(algorithm, isa):
    native(isa)
    rng = np.random.default_rng(43)
    x = (rng.standard_normal((5, 300)) * 8).astype(np.float32)
    x[2, 7] = -np.inf
    want = softjit.softmax(products(x, -1.5), algorithm=algorithm, isa=isa)
    out = np.full_like(x, 9.0)
    assert softjit.softmax(x, algorithm=algorithm, isa=isa, out=out, scale=-1.5) is out
    assert same(out, want)
    y = x.copy()
    assert softjit.softmax(y, algorithm=algorithm, isa=isa, out=y, scale=-1.5) is y
    assert same(y, want)
    for log_algorithm in LOG_ALGORITHMS:
        want = softjit.log_softmax(products(x, 0.75), algorithm=log_algorithm, isa=isa)
        y = x.copy()
        softjit.log_softmax(y, algorithm=log_algorithm, isa=isa, out=y, scale=0.75)
        assert same(y, want)


@pytest.mark.parametrize("isa", ISAS)
def test_threads_and_batches(isa):
    """Batches over threads: the same bits for any threads, and the law."""
    native(isa)
    rng = np.random.default_rng(44)
    x = (rng.standard_normal((257, 300)) * 8).astype(np.float32)
    x[3, :50] = -np.inf
    x[4, 7] = np.nan
    for threads in (2, 3):
        assert_law(x, -1.25, isa, threads=threads)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_split_long_rows(algorithm, isa):
    """Rows of SPLIT_ROW_MIN or more elements, reduced chunk by chunk: the law, for any
    threads."""
    native(isa)
    rng = np.random.default_rng(45)
    n = rows_module.SPLIT_ROW_MIN + 37
    x = (rng.standard_normal((2, n)) * 6).astype(np.float32)
    x[1, ::5] = -np.inf
    s = 1.75
    want = softjit.softmax(products(x, s), algorithm=algorithm, isa=isa)
    for threads in (1, 2):
        got = softjit.softmax(x, algorithm=algorithm, isa=isa, scale=s, threads=threads)
        assert same(got, want), threads
    # a negative scale turns row 1's masks into +inf: a NaN row, also when split
    got = softjit.softmax(x[1:], algorithm=algorithm, isa=isa, scale=-s, threads=2)
    assert np.isnan(got).all()


# ---------------------------------------------------------------------------- overflow
OVERFLOWING = np.array([[3e38, 1.0, -3e38, 0.0],      # +inf product among finite ones
                        [3e38, 3e38, 0.0, 1.0],      # two of them
                        [-3e38, -3e38, -3e38, -3e38],  # only -inf products
                        [-3e38, -2e38, 1e38, 1.0],   # both ways
                        [1.0, 2.0, 3.0, 4.0]], np.float32)  # an ordinary row beside them


def exact(x, s):
    return x.astype(np.float64) * float(np.float32(s))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s", [2.0, -2.0, 1e30])
def test_overflowing_products_give_the_float64_result(s, isa):
    """x finite and scale * x beyond float32: the result is that of the exact products (never
    NaN), for every algorithm, in batches large and small, and in place."""
    native(isa)
    for x in (OVERFLOWING, np.concatenate([OVERFLOWING] * 3), OVERFLOWING[2:3]):
        ref = reference(exact(x, s))
        for algorithm in ("auto",) + ALGORITHMS:
            y = softjit.softmax(x, algorithm=algorithm, isa=isa, scale=s)
            check_softmax(y, exact(x, s), ref=ref)
            z = x.copy()
            softjit.softmax(z, algorithm=algorithm, isa=isa, scale=s, out=z)
            assert same(z, y)
        for algorithm in LOG_ALGORITHMS:
            y = softjit.log_softmax(x, algorithm=algorithm, isa=isa, scale=s)
            check_log_softmax(y, exact(x, s))
            z = x.copy()
            softjit.log_softmax(z, algorithm=algorithm, isa=isa, scale=s, out=z)
            assert same(z, y)
        check_logsumexp(softjit.logsumexp(x, isa=isa, scale=s), exact(x, s))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_overflowing_products_in_a_split_row(algorithm):
    isa = HOST_ISAS[0]
    n = rows_module.SPLIT_ROW_MIN + 5
    x = np.zeros(n, np.float32)
    x[[10, n - 2]] = 3e38
    x[n // 2] = -3e38
    y = softjit.softmax(x, algorithm=algorithm, isa=isa, scale=2.0, threads=2)
    check_softmax(y, exact(x, 2.0), ref=reference(exact(x, 2.0)))
    assert y[10] == y[n - 2] == np.float32(0.5)


def test_genuine_infinities_follow_the_law_not_the_float64_path():
    """An infinity of x itself times the scale is an infinity (or NaN for 0 * inf), as IEEE
    says: -inf * -2 = +inf makes the row NaN; the float64 path never hides it."""
    x = np.array([[-np.inf, 3e38, 1.0], [np.inf, 1.0, 2.0], [np.inf, 3e38, -1.0],
                  [np.inf, 3e38, 3e38]], np.float32)
    for algorithm in ALGORITHMS:
        y = softjit.softmax(x, scale=-2.0, algorithm=algorithm)
        assert np.isnan(y[0]).all() and not np.isnan(y[1:]).any()
        assert y[1].tolist() == [0.0, pytest.approx(0.8807970779778823),
                                 pytest.approx(0.11920292)]
        assert y[2].tolist() == [0.0, 0.0, 1.0]
        assert y[3].tolist() == [0.0, 0.5, 0.5]  # -inf and two overflowed -6e38: float64
        assert np.isnan(softjit.softmax(x, scale=0.0, algorithm=algorithm)).all()  # 0 * inf
    c = softjit.logsumexp(x, scale=-2.0)
    assert c[0] == np.inf and c[2] == np.float32(2.0) and c[3] == -np.inf  # -6e38 + ln 2
    for algorithm in LOG_ALGORITHMS:
        y = softjit.log_softmax(x, scale=-2.0, algorithm=algorithm)
        assert np.isnan(y[0]).all() and not np.isnan(y[1:]).any()
        assert y[3].tolist() == [-np.inf, pytest.approx(-math.log(2)), pytest.approx(-math.log(2))]


def test_log_softmax_in_place_rows_whose_overflowed_products_change_y():
    """x = -3e38 and -1.7e38 with scale 2: the products -inf and -3.4e38 make c = -3.4e38, and
    the exact y of -3e38 is -2.6e38, not -inf. The kernels leave such a row before writing it
    (in place too: x is still there for the float64 redo); beside a c >= 1 the -inf is exact."""
    x = np.array([[-3e38, -1.7e38, -np.inf, -1.7e38], [-3e38, 5.0, -np.inf, 1.0]] * 3,
                 np.float32)
    want = exact(x, 2.0)
    for isa in HOST_ISAS:
        for algorithm in LOG_ALGORITHMS:
            for threads in (1, 2):
                y = softjit.log_softmax(x, algorithm=algorithm, isa=isa, scale=2.0,
                                        threads=threads)
                check_log_softmax(y, want)
                assert np.isfinite(y[0, 0]) and y[1, 0] == -np.inf
                z = x.copy()
                softjit.log_softmax(z, algorithm=algorithm, isa=isa, scale=2.0, out=z,
                                    threads=threads)
                assert same(z, y)
                t = np.asfortranarray(x)  # in place through a copy of the rows
                softjit.log_softmax(t, algorithm=algorithm, isa=isa, scale=2.0, out=t)
                assert same(t, y)


LARGE = st.sampled_from([3e38, -3e38, 1.7e38, -1.7e38, FLT_MAX, -FLT_MAX, np.inf, -np.inf,
                         np.nan, 0.0])


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=40),
                    elements=st.one_of(st.floats(width=32), st.floats(-50.0, 50.0, width=32),
                                       LARGE)),
       s=st.one_of(st.sampled_from([2.0, -2.0, 1.5, -0.5, 40.0, 1e30, -1e-30, 0.0]),
                   st.floats(-100.0, 100.0)),
       isa=st.sampled_from(HOST_ISAS), algorithm=st.sampled_from(("auto",) + LOG_ALGORITHMS),
       threads=st.sampled_from([1, 2]), transposed=st.booleans())
def test_log_softmax_and_logsumexp_properties_with_overflowing_products(x, s, isa, algorithm,
                                                                         threads, transposed):
    """Any float32 values (huge ones whose products overflow among them), any scale, strided,
    in place: rows whose products of finite x stay finite have the bits of the call on the
    float32 products; other rows those bits or (computed in float64 by the host) the accuracy
    of the exact products; in place gives the bits of out of place; logsumexp likewise."""
    if transposed:
        x = x.T  # (strided rows for a 2-D x)
    p = products(x, s)
    with np.errstate(invalid="ignore"):
        overflowed = (np.isinf(p) & np.isfinite(x)).reshape(-1, x.shape[-1]).any(axis=-1)
    y = softjit.log_softmax(x, algorithm=algorithm, isa=isa, scale=s, threads=threads)
    law = softjit.log_softmax(p, algorithm=algorithm, isa=isa)
    rows_y, rows_law = y.reshape(-1, x.shape[-1]), law.reshape(-1, x.shape[-1])
    rows_x = x.reshape(-1, x.shape[-1])
    for r in range(rows_y.shape[0]):
        if not same(rows_y[r], rows_law[r]):
            assert overflowed[r], (r, rows_x[r], s, rows_y[r], rows_law[r])
            check_log_softmax(rows_y[r], exact(rows_x[r], s))
    z = x.copy()
    softjit.log_softmax(z, algorithm=algorithm, isa=isa, scale=s, threads=threads, out=z)
    assert same(z, y)
    c = softjit.logsumexp(x, isa=isa, scale=s, threads=threads)
    c_law = softjit.logsumexp(p, isa=isa)
    differ = ~((c == c_law) | (np.isnan(c) & np.isnan(c_law)))
    assert not (differ & ~overflowed.reshape(c.shape)).any(), (x, s, c, c_law)
    if differ.any():
        check_logsumexp(c[differ], exact(x, s)[differ])


# ---------------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("isa", ISAS)
def test_accuracy_against_float64(isa):
    """The README's accuracy, measured on the float32 products (what the kernels compute on)."""
    native(isa)
    rng = np.random.default_rng(46)
    x = (rng.standard_normal((64, 1000)) * 4).astype(np.float32)
    for s in (-3.5, 0.25, 40.0):
        p = products(x, s)
        check_softmax(softjit.softmax(x, isa=isa, scale=s), p)
        check_log_softmax(softjit.log_softmax(x, isa=isa, scale=s), p)
        check_logsumexp(softjit.logsumexp(x, isa=isa, scale=s), p)


# ---------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("s", [2, np.float32(2), np.float64(2), np.float16(2), np.int64(2), 2.0])
def test_scale_types(s):
    x = np.linspace(-1, 1, 11, dtype=np.float32)
    want = softjit.softmax(x * F32(2))
    assert same(softjit.softmax(x, scale=s), want)
    assert same(softjit.log_softmax(x, scale=s), softjit.log_softmax(x * F32(2)))
    assert same(softjit.logsumexp(x, scale=s), softjit.logsumexp(x * F32(2)))


def test_scale_one_and_none_are_the_unscaled_call():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    for s in (None, 1, 1.0, np.float64(1 + 2 ** -30)):  # (the last rounds to float32 1)
        assert same(softjit.softmax(x, scale=s), softjit.softmax(x))
        assert same(softjit.log_softmax(x, scale=s), softjit.log_softmax(x))
        assert same(softjit.logsumexp(x, scale=s), softjit.logsumexp(x))


@pytest.mark.parametrize("function", [softjit.softmax, softjit.log_softmax, softjit.logsumexp])
@pytest.mark.parametrize("bad, error, words", [
    ("2", TypeError, "'2'"), (True, TypeError, "True"), (np.array([2.0]), TypeError, "array"),
    (np.array(2.0), TypeError, "array"), (None or [2.0], TypeError, "[2.0]"),
    (math.inf, ValueError, "inf"), (-math.inf, ValueError, "-inf"), (math.nan, ValueError, "nan"),
    (np.float64(1e39), ValueError, "1e+39"), (complex(1, 0), TypeError, "(1+0j)"),
])
def test_bad_scales_are_refused_with_the_value(function, bad, error, words):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(error, match="scale") as info:
        function(x, scale=bad)
    assert words in str(info.value)


def test_half_inputs_and_tensors_pass_the_scale_on():
    """float16 inputs (computed in float32) and torch tensors take scale= like float32 arrays."""
    x = np.linspace(-4, 4, 64, dtype=np.float32).reshape(2, 32)
    half = x.astype(np.float16)
    wide = half.astype(np.float32)
    got = softjit.log_softmax(half, scale=-1.5)
    assert got.dtype == np.float16
    assert same(got.astype(np.float32),
                softjit.log_softmax(products(wide, -1.5)).astype(np.float16).astype(np.float32))
    assert same(softjit.logsumexp(half, scale=-1.5).astype(np.float32),
                softjit.logsumexp(products(wide, -1.5)).astype(np.float16).astype(np.float32))
    torch = pytest.importorskip("torch", reason="torch is optional (its CPU build: README)")
    t = torch.from_numpy(x.copy())
    assert same(softjit.log_softmax(t, scale=0.5).numpy(), softjit.log_softmax(x, scale=0.5))
    assert same(softjit.logsumexp(t, scale=0.5).numpy(), softjit.logsumexp(x, scale=0.5))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_softmax_of_16_bit_inputs_with_a_scale(dtype):
    """float16 / bfloat16 x with scale=: computed in float32 (widened on the host) and rounded
    to nearest even back to x's dtype, as the 16-bit kernels round their results."""
    if dtype == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 arrays need ml_dtypes")
        dtype = ml_dtypes.bfloat16
    x = np.linspace(-6, 6, 2 * 77, dtype=np.float32).reshape(2, 77).astype(dtype)
    wide = x.astype(np.float32)
    for algorithm in ("auto", "two-pass", "three-pass-recompute"):
        got = softjit.softmax(x, algorithm=algorithm, scale=-1.25)
        assert got.dtype == x.dtype
        want = softjit.softmax(products(wide, -1.25), algorithm=algorithm).astype(x.dtype)
        assert same(got.astype(np.float32), want.astype(np.float32))
        out = np.empty_like(x)
        assert softjit.softmax(x, algorithm=algorithm, scale=-1.25, out=out, axis=0) is out
        want = softjit.softmax(products(wide, -1.25), axis=0, algorithm=algorithm)
        assert same(out.astype(np.float32), want.astype(x.dtype).astype(np.float32))


@pytest.mark.parametrize("function", ["log_softmax", "logsumexp", "log_softmax-three-pass"])
def test_assembly_of_the_scaled_log_softmax_kernels(function):
    """softjit.assembly(..., scaled=True) names the scaled module (any ISA, any host, 16-bit
    too; softmax has no 16-bit scaled kernels)."""
    for isa in ISAS:
        text = softjit.assembly(function, isa=isa, scaled=True)
        # (the float32 three-pass row stores s * x - m in its sum pass, then subtracts in place)
        output = "_raddexpstoreminusmax_scaled__" if "three" in function else "_vsubsub_scaled__"
        assert output in text and "_roverflow_scaled__" in text
        assert "_scaled__" not in softjit.assembly(function, isa=isa)
    assert "f16_roverflow_scaled__" in softjit.assembly(function, dtype="float16", scaled=True)
    with pytest.raises(ValueError, match="float32"):
        softjit.assembly("two-pass", dtype="float16", scaled=True)  # (softmax's: widened)
