"""The one dtype rule of softmax, log_softmax, logsumexp and exp (runtime/inputs.py): float32 as
it is; float64 (and other dtypes) refused with a TypeError naming dtype=numpy.float32, which
computes in float32 with a float32 result; lists and tuples become float32; bad dtype= values
refused. logsumexp also takes dtype=numpy.float64: float64 results of the float32 computation."""
from __future__ import annotations

import math

import numpy as np
import pytest

import softjit
from tests.log_softmax_checks import reference_logsumexp

FUNCTIONS = {
    "softmax": softjit.softmax,
    "log_softmax": softjit.log_softmax,
    "logsumexp": softjit.logsumexp,
    "exp": softjit.exp,
}
names = pytest.mark.parametrize("name", list(FUNCTIONS))


def _x64():
    return np.random.default_rng(5).standard_normal((3, 41))


@names
@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32])
def test_other_dtypes_name_dtype_float32(name, dtype):
    with pytest.raises(TypeError) as info:
        FUNCTIONS[name](_x64().astype(dtype))
    message = str(info.value)
    assert f"softjit.{name}" in message and np.dtype(dtype).name in message
    assert "dtype=numpy.float32" in message and "astype(numpy.float32)" in message, message


@names
def test_dtype_float32_computes_in_float32(name):
    x = _x64()
    got = FUNCTIONS[name](x, dtype=np.float32)
    want = FUNCTIONS[name](x.astype(np.float32))
    assert got.dtype == np.float32 and np.array_equal(got, want)
    ints = FUNCTIONS[name](np.arange(12).reshape(3, 4), dtype=np.float32)
    assert np.array_equal(ints, FUNCTIONS[name](np.arange(12, dtype=np.float32).reshape(3, 4)))
    # a float32 array with dtype=float32 is not copied first: out= and in place still work
    x32 = x.astype(np.float32)
    out = np.empty_like(x32) if name != "logsumexp" else np.empty(3, np.float32)
    assert FUNCTIONS[name](x32, out=out, dtype=np.float32) is out
    assert np.array_equal(out, want)


@names
def test_lists_and_tuples_become_float32(name):
    rows = [[0.5, -1.25, 3.0], [2, 1, 0]]
    want = FUNCTIONS[name](np.array(rows, np.float32))
    for value in (rows, tuple(tuple(r) for r in rows)):
        got = FUNCTIONS[name](value)
        assert got.dtype == np.float32 and np.array_equal(got, want)


@names
def test_bad_dtype_values_and_unconvertible_input(name):
    x = np.zeros((2, 3), np.float32)
    for bad in (np.float16, np.int32, "float64" if name != "logsumexp" else "int8"):
        with pytest.raises(TypeError, match=r"dtype=.*not supported.*numpy\.float32"):
            FUNCTIONS[name](x, dtype=bad)
    with pytest.raises(TypeError, match="not a dtype"):
        FUNCTIONS[name](x, dtype="not-a-dtype")
    with pytest.raises(TypeError, match="cannot be converted to float32"):
        FUNCTIONS[name](x.astype(np.complex64), dtype=np.float32)
    with pytest.raises(TypeError, match="cannot be converted to float32"):
        FUNCTIONS[name]([["a", "b"]])


def test_first_path_takes_no_dtype():
    """The generated entries compute float32 only: a dtype= call goes to the general path,
    which checks the dtype even where x is float32 already."""
    x = np.zeros((2, 8), np.float32)
    softjit.softmax(x), softjit.exp(x)  # the entries are registered now
    with pytest.raises(TypeError, match="not supported"):
        softjit.softmax(x, dtype=np.float16)
    with pytest.raises(TypeError, match="not supported"):
        softjit.exp(x, out=np.empty_like(x), dtype=np.float64)


# ---------------------------------------------------------------------------- logsumexp float64
def test_logsumexp_float64_results():
    x = np.random.default_rng(1).standard_normal((5, 300)).astype(np.float32)
    c32 = softjit.logsumexp(x)
    c64 = softjit.logsumexp(x, dtype=np.float64)
    assert c32.dtype == np.float32 and c64.dtype == np.float64
    assert np.array_equal(c64.astype(np.float32), c32)  # c32 is c64 rounded once
    out = np.empty(5, np.float64)
    assert softjit.logsumexp(x, out=out, dtype=np.float64) is out and np.array_equal(out, c64)
    with pytest.raises(TypeError, match="float64"):
        softjit.logsumexp(x, out=np.empty(5, np.float32), dtype=np.float64)
    assert softjit.logsumexp(x, axis=None, dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="x.astype"):  # float64 input is not read as float64
        softjit.logsumexp(x.astype(np.float64), dtype=np.float64)


@pytest.mark.parametrize("isa", softjit.host_isas())
def test_logsumexp_float64_is_exact_where_the_sum_is(isa):
    """Rows whose sum of exp is exact in float32 (entries 0 and -inf: exp(0) = 1 exactly, so the
    sum is a count k) give ln(k) to float64 accuracy; rows shifted past the two-pass range
    (|x| > 2^20, the three-pass reduction: c = max + ln(sum)) give max + ln(k), which a float32
    result could not hold (its spacing there is 0.125). Asserted: within 4 float64 ULPs of the
    float64 reference, i.e. relative error below 1e-15: the kernel's logarithm is within 2
    float64 ULPs (codegen/kernels/log_softmax.py) and one addition rounds."""
    rows = []
    for k in (1, 2, 3, 7, 1000):
        row = np.full(1024, -np.inf, np.float32)
        row[:k] = 0.0
        rows.append(row)
    zeros = np.stack(rows)
    for shift in (0.0, 3_000_000.0, -3_000_000.0):
        x = zeros + np.float32(shift)
        got = softjit.logsumexp(x, dtype=np.float64, isa=isa)
        want = np.array([shift + math.log(k) for k in (1, 2, 3, 7, 1000)])
        ulp = np.spacing(np.abs(want))
        assert np.all(np.abs(got - want) <= 4 * ulp), (shift, got - want)


@pytest.mark.parametrize("isa", softjit.host_isas())
def test_logsumexp_float64_absolute_error(isa):
    """General rows: the float32 row sums carry about 1e-7 relative error, which ln turns into
    an absolute error; the float64 result adds no rounding of its own, so it is within 2e-6 of
    the float64 reference in absolute terms at any |c| (relative 1e-12 once |c| >= 2e6), where
    the float32 result's own rounding reaches 0.125 at |c| = 2e6."""
    rng = np.random.default_rng(2)
    for offset in (0.0, 100.0, 5e5, -2e6, 2e7):
        x = (rng.standard_normal((8, 999)) * 4 + offset).astype(np.float32)
        got = softjit.logsumexp(x, dtype=np.float64, isa=isa)
        want = reference_logsumexp(x)
        assert np.max(np.abs(got - want)) <= 2e-6, (offset, np.max(np.abs(got - want)))


@pytest.mark.parametrize("isa", softjit.host_isas())
def test_the_kernels_logarithm_of_every_count(isa):
    """Row k holds k zeros and -inf elsewhere, so its sum is exactly k (exp(0) = 1 exactly)
    and logsumexp(dtype=float64) is the kernel's own logarithm of k: within 2 float64 ULPs of
    ln k for every k up to 2048 (every exponent and 2048 mantissas of the reduction)."""
    counts = np.arange(1, 2049)
    x = np.where(np.arange(2048)[None, :] < counts[:, None], 0.0, -np.inf).astype(np.float32)
    got = softjit.logsumexp(x, dtype=np.float64, isa=isa)
    want = np.log(counts.astype(np.float64))
    assert got[0] == 0.0
    ulps = np.abs(got - want)[1:] / np.spacing(want[1:])
    assert ulps.max() <= 2, (ulps.max(), counts[1:][ulps.argmax()])
