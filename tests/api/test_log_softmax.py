"""softjit.log_softmax and softjit.logsumexp against the float64 reference: every tail length,
special values, magnitudes up to FLT_MAX, axes (int, None, tuples), strided and in-place
buffers, out=, threads, argument errors, and hypothesis properties."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import softjit
from softjit.codegen import variants

from log_softmax_checks import check_log_softmax, check_logsumexp

HOST_ISAS = softjit.host_isas()
ISAS = ("avx2", "avx512f")
ALGORITHMS = ("two-pass", "three-pass")
FLT_MAX = float(np.finfo(np.float32).max)


def native(isa: str) -> None:
    if isa not in HOST_ISAS:
        pytest.skip(f"this host lacks {isa} (host runs {HOST_ISAS}); "
                    "tests/emulator/test_log_softmax_emulated.py covers it")


def longest_step(isa: str) -> int:
    """Elements in the largest unrolled step of any log_softmax kernel on isa."""
    lanes = 16 if isa == "avx512f" else 8
    return max(max(v.reduce_unroll, v.output_unroll) * lanes
               for v in variants.REGISTRY if v.op == "log_softmax" and v.isa == isa)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_tail_length(algorithm, isa):
    native(isa)
    rng = np.random.default_rng(11)
    for n in range(1, 2 * longest_step(isa) + 2):
        x = np.stack([rng.uniform(-1, 1, n), rng.uniform(-100, 100, n),
                      rng.standard_normal(n) * 1e4]).astype(np.float32)
        check_log_softmax(softjit.log_softmax(x, algorithm=algorithm, isa=isa), x)
        check_logsumexp(softjit.logsumexp(x, isa=isa), x)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_special_values(algorithm, isa):
    native(isa)
    inf, nan = np.inf, np.nan
    rows = [
        [1.0, nan, 2.0, 3.0], [1.0, inf, 2.0, 3.0], [nan, inf, 0.0, 0.0], [-inf] * 4,
        [1.0, -inf, 2.0, -inf], [-inf, -inf, 5.0, -inf], [FLT_MAX, 0.0, -1.0, FLT_MAX],
        [-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX], [-FLT_MAX, 0.0, 1.0, FLT_MAX],
        [2.0 ** 20, -(2.0 ** 20), 3e6, 0.0], [-3e6, -3e6 + 1, -3e6 - 1, -inf],
        [1e-45, -1e-45, 0.0, -0.0], [88.7, 88.7, -103.98, 0.0],
    ]
    x = np.array(rows, np.float32)
    y = softjit.log_softmax(x, algorithm=algorithm, isa=isa)
    check_log_softmax(y, x)
    assert np.isnan(y[:4]).all()
    assert y[4, 1] == -inf and y[4, 3] == -inf and abs(y[5, 2]) <= 2e-6
    c = softjit.logsumexp(x, isa=isa)
    check_logsumexp(c, x)
    assert np.isnan(c[0]) and c[1] == inf and np.isnan(c[2]) and c[3] == -inf


@pytest.mark.parametrize("isa", ISAS)
def test_long_rows_and_batches(isa):
    native(isa)
    rng = np.random.default_rng(12)
    for shape in [(1, 100_003), (37, 2049), (300, 5)]:
        x = (rng.standard_normal(shape) * 30).astype(np.float32)
        for algorithm in ALGORITHMS:
            check_log_softmax(softjit.log_softmax(x, algorithm=algorithm, isa=isa), x)
        check_logsumexp(softjit.logsumexp(x, isa=isa), x)


def test_axes_none_and_tuples():
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((3, 4, 5)) * 5).astype(np.float32)
    for axis in [0, 1, -1, None, (1, 2), (0, 1), (0, 2), (2, 0), (0, 1, 2)]:
        check_log_softmax(softjit.log_softmax(x, axis=axis), x, axis)
        for keepdims in (False, True):
            check_logsumexp(softjit.logsumexp(x, axis=axis, keepdims=keepdims), x, axis, keepdims)
    assert softjit.logsumexp(x, axis=None).shape == ()
    assert softjit.logsumexp(x, axis=(0, 2), keepdims=True).shape == (1, 4, 1)


def test_strided_in_place_and_out():
    rng = np.random.default_rng(14)
    base = (rng.standard_normal((8, 40)) * 10).astype(np.float32)
    for view in [base[::2], base[:, ::3], base[::-1, 1:], base.T, base[:, 5:30]]:
        want = view.copy()
        check_log_softmax(softjit.log_softmax(view), want)
        check_log_softmax(softjit.log_softmax(view, axis=0), want, 0)
        out = np.full((view.shape[1], view.shape[0]), 9.0, np.float32).T  # a strided out
        assert softjit.log_softmax(view, out=out) is out
        check_log_softmax(out, want)
        check_logsumexp(softjit.logsumexp(view), want)
    x = base.copy()
    expected = softjit.log_softmax(x)
    assert softjit.log_softmax(x, out=x) is x
    assert np.array_equal(x, expected)
    out = np.empty(8, np.float32)
    assert softjit.logsumexp(base, out=out) is out
    check_logsumexp(out, base)


def test_threads_give_identical_results():
    rng = np.random.default_rng(15)
    x = (rng.standard_normal((64, 3000)) * 20).astype(np.float32)
    x[5, 7] = np.nan
    x[9, :] = -np.inf
    for algorithm in ALGORITHMS:
        one = softjit.log_softmax(x, algorithm=algorithm)
        for threads in (2, 3, 7):
            assert np.array_equal(softjit.log_softmax(x, algorithm=algorithm, threads=threads),
                                  one, equal_nan=True)
    c = softjit.logsumexp(x)
    assert np.array_equal(softjit.logsumexp(x, threads=3), c, equal_nan=True)


def test_empty_arrays_and_lists():
    assert softjit.log_softmax(np.empty((0, 3), np.float32)).shape == (0, 3)
    assert softjit.logsumexp(np.empty((2, 0), np.float32)).tolist() == [-np.inf, -np.inf]
    assert softjit.logsumexp(np.empty((0, 3), np.float32)).shape == (0,)
    check_log_softmax(softjit.log_softmax(np.array([[1.0, 2.0]], np.float32)),
                      np.array([[1.0, 2.0]], np.float32))


def test_argument_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="float32"):
        softjit.log_softmax(x.astype(np.float64))
    with pytest.raises(TypeError, match="float32"):
        softjit.logsumexp(x.astype(np.float64))
    with pytest.raises(ValueError, match="out of range"):
        softjit.log_softmax(x, axis=2)
    with pytest.raises(ValueError, match="repeats"):
        softjit.logsumexp(x, axis=(1, -1))
    with pytest.raises(TypeError, match="axis"):
        softjit.log_softmax(x, axis=1.0)
    with pytest.raises(ValueError, match="unknown algorithm"):
        softjit.log_softmax(x, algorithm="three-pass-reload")
    with pytest.raises(ValueError, match="threads"):
        softjit.logsumexp(x, threads=0)
    with pytest.raises(ValueError, match="shape"):
        softjit.logsumexp(x, out=np.empty(3, np.float32))
    with pytest.raises(ValueError, match="0-d"):
        softjit.log_softmax(np.float32(1.0))


SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
float32s = st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True),
                     st.floats(-100.0, 100.0, width=32),
                     st.sampled_from([np.nan, np.inf, -np.inf, 0.0, FLT_MAX, -FLT_MAX,
                                      2.0 ** 20, -(2.0 ** 20), 3e6, -3e6, -103.98, 88.7]))


@SETTINGS
@given(x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=70),
                    elements=float32s),
       isa=st.sampled_from(HOST_ISAS), algorithm=st.sampled_from(("auto",) + ALGORITHMS),
       threads=st.sampled_from([1, 2, 3]), data=st.data())
def test_properties(x, isa, algorithm, threads, data):
    axis = data.draw(st.sampled_from([-1, 0, None] + ([(0, x.ndim - 1)] if x.ndim > 1 else [])))
    before = x.copy()
    y = softjit.log_softmax(x, axis=axis, algorithm=algorithm, isa=isa, threads=threads)
    assert np.array_equal(x, before, equal_nan=True)
    check_log_softmax(y, x, axis)
    check_logsumexp(softjit.logsumexp(x, axis=axis, isa=isa, threads=threads), x, axis)


def test_a_row_does_not_depend_on_its_batch():
    """Batches of up to 64 rows use each thread's scratch states, larger ones their own, and
    threads share the rows of a batch: the same row gives the same bits in every case."""
    rng = np.random.default_rng(16)
    x = (rng.standard_normal((100, 300)) * rng.uniform(0.1, 1e4, (100, 1))).astype(np.float32)
    x[3, 5] = 3e6  # a row the two-pass reduction hands to three passes
    for algorithm in ALGORITHMS:
        batch = softjit.log_softmax(x, algorithm=algorithm)
        assert np.array_equal(softjit.log_softmax(x, algorithm=algorithm, threads=3), batch)
        lse = softjit.logsumexp(x, dtype=np.float64)
        for r in range(0, 100, 7):
            assert np.array_equal(softjit.log_softmax(x[r], algorithm=algorithm), batch[r])
            assert np.array_equal(softjit.log_softmax(x[r:r + 70], algorithm=algorithm),
                                  batch[r:r + 70])
            assert np.array_equal(softjit.logsumexp(x[r:r + 2], dtype=np.float64), lse[r:r + 2])


def test_non_temporal_output_gives_the_same_bits():
    """A 16 MiB output of rows of 16 KiB or more is written with non-temporal stores (the
    two-pass module's _nt variant); each row alone is written with plain stores."""
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((1024, 4096)) * 20).astype(np.float32)
    x[7, 9] = np.nan
    y = softjit.log_softmax(x)
    for r in (0, 7, 500, 1023):
        assert np.array_equal(softjit.log_softmax(x[r]), y[r], equal_nan=True)
    check_log_softmax(y[::97], x[::97])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_many_terms_below_the_largest_ones_rounding(algorithm, isa):
    """One dominant entry and thousands of terms each below half an ulp of the running sum: the
    float32 lane sums would round them all away over a long block; the short blocks keep ln(sum)
    within the bound."""
    native(isa)
    rng = np.random.default_rng(17)
    for n in (5000, 70_000):
        x = np.full((2, n), -17.0, np.float32)
        x[0, 0] = 0.0
        x[1, rng.integers(0, n, 3)] = 3.0
        x[1] += rng.uniform(-0.5, 0.5, n).astype(np.float32)
        check_log_softmax(softjit.log_softmax(x, algorithm=algorithm, isa=isa), x)
        check_logsumexp(softjit.logsumexp(x, isa=isa), x)


def _bfloat16():
    try:
        import ml_dtypes as md
    except ImportError:
        return None
    return np.dtype(md.bfloat16)


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_in_and_out(half):
    dtype = np.dtype(np.float16) if half == "float16" else _bfloat16()
    if dtype is None:
        pytest.skip("bfloat16 needs ml_dtypes (pip install ml_dtypes)")
    rng = np.random.default_rng(18)
    x = (rng.standard_normal((5, 333)) * 4).astype(dtype)
    x[1, 3] = -np.inf
    wide = x.astype(np.float32)
    y = softjit.log_softmax(x)
    assert y.dtype == dtype
    # correctly rounded from the float32 result
    assert np.array_equal(y, softjit.log_softmax(wide).astype(dtype))
    c = softjit.logsumexp(x, axis=None)
    assert c.dtype == dtype and c == softjit.logsumexp(wide, axis=None).astype(dtype)
    out = np.empty_like(x)
    assert softjit.log_softmax(x, out=out) is out and np.array_equal(out, y)
    assert softjit.log_softmax(x, out=x) is x and np.array_equal(x, y)  # in place
    with pytest.raises(TypeError, match="input's dtype"):
        softjit.log_softmax(wide.astype(dtype), out=np.empty((5, 333), np.float32))


def test_float64_needs_dtype_float32():
    x = np.linspace(-3, 3, 50)
    with pytest.raises(TypeError, match=r"dtype=numpy.float32"):
        softjit.log_softmax(x)
    with pytest.raises(TypeError, match=r"dtype=numpy.float32"):
        softjit.logsumexp(x)
    y = softjit.log_softmax(x, dtype=np.float32)
    assert y.dtype == np.float32
    check_log_softmax(y, x.astype(np.float32))
    check_logsumexp(softjit.logsumexp([1.0, 2.0], dtype=np.float32),
                    np.array([1.0, 2.0], np.float32))
    with pytest.raises(TypeError, match="computes in float32"):
        softjit.logsumexp(x, dtype=np.float64)
