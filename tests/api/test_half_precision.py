"""softjit.softmax on float16 and bfloat16 arrays (ml_dtypes; the tests that need it skip,
saying so, without it): the kernels read and write the 16-bit elements directly, converting in
registers and computing in float32, so every result is exactly the float32 kernels' result on
the widened input rounded to nearest even (the law the tests check bit for bit), within the
README's float32 accuracy plus that rounding of a float64 softmax; every tail length, layouts,
threads, long rows and special values, on every ISA the host runs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import softjit
from softjit.runtime import bindings, cpu, memo
from softjit.runtime.dispatch import choose_algorithm
from softjit.runtime.elements import algorithm_for, element_of
from softjit.runtime.errors import SoftjitError

HOST_ISAS = softjit.host_isas()
HALVES = ("float16", "bfloat16")
TWO_PASS_X_LIMIT = 2.0 ** 20  # rows reaching past it are recomputed with three passes


from softmax_checks import half_dtype  # noqa: E402


def largest(dtype: np.dtype) -> float:
    if dtype == np.float16:
        return float(np.finfo(np.float16).max)
    import ml_dtypes

    return float(ml_dtypes.finfo(dtype).max)


def _nan_bits(bits: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where 16-bit patterns are NaN: exponent all ones, fraction not zero (read from the bits:
    numpy's float16 conversions are slow on large arrays)."""
    exponent = np.uint16(0x7C00 if dtype == np.float16 else 0x7F80)
    fraction = np.uint16(0x03FF if dtype == np.float16 else 0x007F)
    return ((bits & exponent) == exponent) & ((bits & fraction) != 0)


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """The same bits, except that any NaN matches any NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    bits_a = np.ascontiguousarray(a).view(np.uint16)
    bits_b = np.ascontiguousarray(b).view(np.uint16)
    nan_a, nan_b = _nan_bits(bits_a, a.dtype), _nan_bits(bits_b, b.dtype)
    return bool(np.array_equal(nan_a, nan_b) and np.array_equal(bits_a[~nan_a], bits_b[~nan_b]))


def law(x: np.ndarray, algorithm: str, isa: str, **kw) -> np.ndarray:
    """What softmax(x) must be: the float32 kernels' softmax of the widened x, rounded to x's
    dtype. Rows two-pass cannot represent are recomputed by three-pass-recompute, as the
    16-bit kernels do (the float32 ones use three-pass-reload there)."""
    wide = x.astype(np.float32)
    n = x.shape[-1]
    if algorithm == "auto":
        algorithm = algorithm_for(choose_algorithm(isa, n), element_of(x.dtype))
    y = softjit.softmax(wide, algorithm=algorithm, isa=isa, **kw)
    if algorithm == "two-pass" and wide.size:
        rows, y2 = wide.reshape(-1, n), y.reshape(-1, n)
        special = ~np.isfinite(rows).all(axis=1) | (np.abs(rows) >= TWO_PASS_X_LIMIT).any(axis=1)
        if special.any():
            y2[special] = softjit.softmax(rows[special], algorithm="three-pass-recompute",
                                          isa=isa)
    return y.astype(x.dtype)


def special_rows(rng, dtype, rows: int, n: int) -> np.ndarray:
    """Normal values, with -inf masks and the dtype's largest values in row 1, a NaN in row 2,
    a row of only -inf in row 3."""
    x = (rng.standard_normal((rows, n)) * 5).astype(np.float32).astype(dtype)
    if n:
        x[1, rng.integers(0, n, 3)] = -np.inf
        x[1, rng.integers(0, n)] = largest(dtype)
        x[1, rng.integers(0, n)] = -largest(dtype)
        x[2, rng.integers(0, n)] = np.nan
        x[3] = -np.inf
    return x


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ["auto", "two-pass", "three-pass-recompute"])
@pytest.mark.parametrize("half", HALVES)
def test_correctly_rounded_from_the_float32_result_at_every_tail(half, algorithm, isa):
    dtype = half_dtype(half)
    rng = np.random.default_rng(41)
    for n in list(range(0, 2 * 16 + 2)) + [100, 257, 1000, 4099]:
        x = special_rows(rng, dtype, 5, n)
        y = softjit.softmax(x, algorithm=algorithm, isa=isa)
        assert y.dtype == dtype and y.shape == x.shape
        assert same_values(y, law(x, algorithm, isa)), (n, y, law(x, algorithm, isa))
        if n:
            assert np.isnan(y[2].astype(np.float32)).all() and np.isnan(
                y[3].astype(np.float32)).all()
            assert (y[1].astype(np.float32)[np.isneginf(x[1].astype(np.float32))] == 0).all()


@pytest.mark.parametrize("half", HALVES)
def test_layouts_threads_and_out(half):
    dtype = half_dtype(half)
    rng = np.random.default_rng(42)
    x = (rng.standard_normal((6, 7, 130)) * 4).astype(np.float32).astype(dtype)
    for isa in HOST_ISAS:
        expected = law(x, "three-pass-recompute", isa)
        y = softjit.softmax(x, algorithm="three-pass-recompute", isa=isa, threads=2)
        assert same_values(y, expected)
        strided = x[:, ::2, ::-1]  # negative element strides: through a copy
        assert same_values(softjit.softmax(strided, algorithm="three-pass-recompute", isa=isa),
                           law(np.ascontiguousarray(strided), "three-pass-recompute", isa))
        assert same_values(softjit.softmax(x, axis=1, isa=isa),
                           np.moveaxis(law(np.ascontiguousarray(np.moveaxis(x, 1, -1)), "auto",
                                           isa), -1, 1))
        out = np.empty_like(x)
        assert softjit.softmax(x, isa=isa, out=out) is out
        assert same_values(out, law(x, "auto", isa))
        in_place = x.copy()
        assert softjit.softmax(in_place, isa=isa, out=in_place) is in_place
        assert same_values(in_place, law(x, "auto", isa))
        rows_view = x.reshape(-1, 130)[::3]  # rows a stride apart, unit element stride
        assert same_values(softjit.softmax(rows_view, isa=isa),
                           law(np.ascontiguousarray(rows_view), "auto", isa))
        assert same_values(softjit.softmax(x, axis=None, isa=isa),
                           law(x.reshape(1, -1), "auto", isa).reshape(x.shape))


@pytest.mark.parametrize("half", HALVES)
def test_long_rows_and_large_outputs_give_the_same_bits(half):
    """A row of 2^20 or more elements is reduced chunk by chunk (runtime/rows.py) for any
    threads; the float32 kernels cut it into the same chunks, so the law still holds. Outputs
    of 16 MiB or more (the batch of 4096 rows) take the non-temporal 16-bit kernels."""
    dtype = half_dtype(half)
    rng = np.random.default_rng(43)
    isa = HOST_ISAS[0]
    for shape in ((1, (1 << 20) + 37), (4096, 2049)):
        x = (rng.standard_normal(shape) * 3).astype(np.float32).astype(dtype)
        for algorithm in ("two-pass", "three-pass-recompute"):
            expected = law(x, algorithm, isa)
            for threads in (1, 2):
                y = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads)
                assert same_values(y, expected), (shape, algorithm, threads)


def _reference_tolerance(dtype, ref):
    """|y - ref| allowed: the README's float32 bound (1e-5 relative where the result is at least
    FLT_MIN) plus half a unit in the last place of the 16-bit result (2^-11 relative for
    float16, 2^-8 for bfloat16, each at least half the dtype's smallest subnormal)."""
    bits = 11 if dtype == np.float16 else 8
    smallest = 2.0 ** -24 if dtype == np.float16 else 2.0 ** -133
    return ref * (1e-5 + 2.0 ** -bits) + smallest / 2 + 2.0 ** -126


@pytest.mark.parametrize("half", HALVES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_within_float32_accuracy_plus_one_rounding_of_a_float64_softmax(half, data,
                                                                        softmax_reference):
    dtype = half_dtype(half)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=300))
    values = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(
        -60, 60, width=32, allow_nan=False, allow_infinity=False)))
    x = values.astype(dtype)
    algorithm = data.draw(st.sampled_from(["auto", "two-pass", "three-pass-recompute"]))
    isa = data.draw(st.sampled_from(HOST_ISAS))
    y = softjit.softmax(x, algorithm=algorithm, isa=isa).astype(np.float64)
    ref = softmax_reference(x.astype(np.float32))
    assert (np.abs(y - ref) <= _reference_tolerance(dtype, ref)).all()
    assert (y <= 1).all()


@pytest.mark.parametrize("half", HALVES)
def test_bad_arguments_say_what_is_wrong(half):
    dtype = half_dtype(half)
    x = np.zeros((2, 5), dtype)
    with pytest.raises(ValueError, match="three-pass-reload.*round"):
        softjit.softmax(x, algorithm="three-pass-reload")
    with pytest.raises(TypeError, match=f"must be {dtype}"):
        softjit.softmax(x, out=np.empty((2, 5), np.float32))
    with pytest.raises(TypeError, match="must be float32"):
        softjit.softmax(x.astype(np.float32), out=np.empty((2, 5), dtype))


def test_float16_without_f16c_is_refused(monkeypatch):
    """float16 on AVX2 uses F16C (an extension of the avx2 target): a host without it gets an
    error naming the feature, never SIGILL."""
    if "avx2" not in HOST_ISAS:
        pytest.skip(f"this host does not run avx2 (it runs {', '.join(HOST_ISAS)})")
    memo.forget_calls()
    monkeypatch.setattr(cpu, "host_features", lambda: frozenset({"avx", "avx2", "fma"}))
    try:
        with pytest.raises(SoftjitError, match="f16c"):
            softjit.softmax(np.zeros(5, np.float16), isa="avx2")
        softjit.softmax(np.zeros(5, np.float32), isa="avx2")  # float32 needs no F16C
    finally:
        monkeypatch.undo()
        memo.forget_calls()
    assert bindings.driver("two-pass", "avx2", False, "f16") is not None


# ---------------------------------------------------------------------------- log_softmax, logsumexp
def log_law(x: np.ndarray, algorithm: str, isa: str) -> np.ndarray:
    """log_softmax(x) must be the float32 kernels' log_softmax of the widened x, rounded (a
    result beyond the 16-bit range, such as -65504 - 65504 in float16, becomes -inf)."""
    y = softjit.log_softmax(x.astype(np.float32), algorithm=algorithm, isa=isa)
    with np.errstate(over="ignore"):
        return y.astype(x.dtype)


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ["auto", "two-pass", "three-pass"])
@pytest.mark.parametrize("half", HALVES)
def test_log_softmax_and_logsumexp_correctly_rounded_at_every_tail(half, algorithm, isa):
    dtype = half_dtype(half)
    rng = np.random.default_rng(45)
    for n in list(range(1, 2 * 16 + 2)) + [100, 257, 1000, 4099]:
        x = special_rows(rng, dtype, 5, n)
        y = softjit.log_softmax(x, algorithm=algorithm, isa=isa)
        assert y.dtype == dtype and same_values(y, log_law(x, algorithm, isa)), n
        c = softjit.logsumexp(x, isa=isa)
        expected = softjit.logsumexp(x.astype(np.float32), isa=isa).astype(dtype)
        assert c.dtype == dtype and same_values(c, expected), n
        assert np.isneginf(c[3].astype(np.float32)) and np.isnan(c[2].astype(np.float32))
        assert np.isneginf(y[1].astype(np.float32)[np.isneginf(x[1].astype(np.float32))]).all()


@pytest.mark.parametrize("half", HALVES)
def test_log_softmax_layouts_threads_and_out(half):
    dtype = half_dtype(half)
    rng = np.random.default_rng(46)
    x = (rng.standard_normal((6, 7, 130)) * 4).astype(np.float32).astype(dtype)
    for isa in HOST_ISAS:
        expected = log_law(x, "auto", isa)
        assert same_values(softjit.log_softmax(x, isa=isa, threads=2), expected)
        out = np.empty_like(x)
        assert softjit.log_softmax(x, isa=isa, out=out) is out and same_values(out, expected)
        in_place = x.copy()
        assert softjit.log_softmax(in_place, isa=isa, out=in_place) is in_place
        assert same_values(in_place, expected)
        strided = x[:, ::2, ::-1]
        assert same_values(softjit.log_softmax(strided, isa=isa),
                           log_law(np.ascontiguousarray(strided), "auto", isa))
        assert same_values(softjit.log_softmax(x, axis=(0, 2), isa=isa),
                           softjit.log_softmax(x.astype(np.float32), axis=(0, 2),
                                               isa=isa).astype(dtype))
        c = softjit.logsumexp(x, axis=(1, 2), keepdims=True, isa=isa, threads=2)
        assert c.shape == (6, 1, 1) and c.dtype == dtype
        assert same_values(c, softjit.logsumexp(x.astype(np.float32), axis=(1, 2),
                                                keepdims=True, isa=isa).astype(dtype))
        c_out = np.empty((6, 7), dtype)
        assert softjit.logsumexp(x, isa=isa, out=c_out) is c_out
        wide = softjit.logsumexp(x, isa=isa, dtype=np.float64)  # float64 results, not rounded
        assert wide.dtype == np.float64
        assert np.allclose(wide, softjit.logsumexp(x.astype(np.float32), isa=isa,
                                                   dtype=np.float64), rtol=0, atol=0)
    with pytest.raises(TypeError, match="input's dtype"):
        softjit.log_softmax(x, out=np.empty(x.shape, np.float32))
    with pytest.raises(TypeError, match="input's dtype"):
        softjit.logsumexp(x, out=np.empty((6, 7), np.float32))


@pytest.mark.parametrize("half", HALVES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_log_softmax_and_logsumexp_within_float32_accuracy_plus_one_rounding(half, data):
    """Against a float64 log_softmax and logsumexp of the same values: the README's bounds
    (2e-6 * max(1, |y|), 1e-6 * max(1, |c|)), plus half a unit in the last place of the 16-bit
    result."""
    dtype = half_dtype(half)
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=300))
    values = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(
        -60, 60, width=32, allow_nan=False, allow_infinity=False)))
    x = values.astype(dtype)
    algorithm = data.draw(st.sampled_from(["auto", "two-pass", "three-pass"]))
    isa = data.draw(st.sampled_from(HOST_ISAS))
    y = softjit.log_softmax(x, algorithm=algorithm, isa=isa).astype(np.float64)
    x64 = x.astype(np.float64)
    top = x64.max(axis=-1, keepdims=True)
    ref = x64 - (top + np.log(np.exp(x64 - top).sum(axis=-1, keepdims=True)))
    bits = 11 if dtype == np.float16 else 8
    assert (np.abs(y - ref) <= 2e-6 * np.maximum(1, np.abs(ref)) + np.abs(ref) * 2.0 ** -bits
            + 2.0 ** -25).all()
    # logsumexp: the README's 1e-6 * max(1, |c|), plus half a unit of the 16-bit result
    c = softjit.logsumexp(x, isa=isa).astype(np.float64)
    c_ref = (top + np.log(np.exp(x64 - top).sum(axis=-1, keepdims=True)))[..., 0]
    assert (np.abs(c - c_ref) <= 1e-6 * np.maximum(1, np.abs(c_ref))
            + np.abs(c_ref) * 2.0 ** -bits + 2.0 ** -25).all()


def test_assembly_of_the_16_bit_kernels():
    """softjit.assembly(..., dtype=...) shows the kernels a float16 / bfloat16 call runs (any
    ISA, on any host): widened as loaded, rounded as stored."""
    assert "vpmovzxwd" in softjit.assembly("two-pass", "avx2", dtype="bfloat16")
    assert "vpackusdw" in softjit.assembly("three-pass-recompute", "avx2", dtype="bfloat16")
    assert "vpmovdw" in softjit.assembly("two-pass", "avx512f", dtype="bfloat16")
    text = softjit.assembly("log_softmax", "avx512f", dtype=np.float16)
    assert "vcvtph2ps" in text and "vcvtps2ph" in text and "f16_" in text
    assert "vcvtph2ps" not in softjit.assembly("two-pass", "avx2")  # float32 by default
    with pytest.raises(ValueError, match="three-pass-reload.*round"):
        softjit.assembly("three-pass-reload", "avx2", dtype="float16")
    with pytest.raises(ValueError, match="float64.*valid: float32, float16, bfloat16"):
        softjit.assembly("two-pass", "avx2", dtype=np.float64)


@pytest.mark.parametrize("half", HALVES)
def test_user_kernels_read_and_write_16_bit_buffers(half):
    """for_each_vector(..., elements=) (docs/kernels.md): a softjit.jit kernel doubling a 16-bit
    buffer, natively and in the emulator, at lengths around the tails of both ISAs."""
    from softjit import In, Out, Size
    from softjit.codegen import for_each_vector
    from softjit.codegen.abi import BF16, F16

    dtype = half_dtype(half)
    element, declared = (F16, "float16") if half == "float16" else (BF16, "uint16")

    def twice(f):
        x, y, n = f.args

        def step(tile):
            vs = f.vecs("v", tile.count)
            for i, v in enumerate(vs):
                tile.load(v, x, i)
                f.vaddps(v, v, v)
                tile.store(y, i, v)
        for_each_vector(f, n, [x, y], 4, step, "twice", elements={x: element, y: element})
        f.ret()

    kernel = softjit.jit(twice, args=[In("x", declared, "n"), Out("y", declared, "n"),
                                      Size("n")])
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 33, 70):
        x = (np.arange(n, dtype=np.float32) - 20).astype(dtype)
        bits = x.view(np.uint16) if half == "bfloat16" else x
        for y in [kernel.emulate(bits, isa="avx512f")] + [
                kernel(bits, isa=isa) for isa in HOST_ISAS]:
            assert same_values(y.view(dtype), (2 * x.astype(np.float32)).astype(dtype)), n


def _bfloat16_reference(bits: np.ndarray) -> np.ndarray:
    """float32 bit patterns rounded to bfloat16 patterns, to nearest even (NaN: any NaN)."""
    import ml_dtypes

    with np.errstate(over="ignore", invalid="ignore"):  # NaN stays NaN, past the largest: inf
        return bits.view(np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def _float32_patterns(values: str, rng) -> np.ndarray:
    """float32 bit patterns a kernel storing `values` may hold: random ones, every rounding tie
    and its neighbours, subnormals, the range's ends and (where allowed) NaNs of every shape."""
    from softjit.codegen.kernels import elements

    top = {elements.UNIT_INTERVAL: 0x3F800000, elements.NONNEGATIVE_OR_NAN: 0x7F800000,
           elements.ANY: 0xFFFFFFFF}[values]
    tie_bases = rng.integers(0, top >> 16, 4000, dtype=np.uint64) << 16
    patterns = [rng.integers(0, top + 1, 20000, dtype=np.uint64), tie_bases + 0x8000,
                tie_bases + 0x7FFF, tie_bases + 0x8001, tie_bases + 0x18000,
                np.arange(0, 0x20000, 7, dtype=np.uint64), np.array([0, 1, top], np.uint64)]
    if values != elements.UNIT_INTERVAL:  # NaNs of both signs, payloads high and low
        nan_tails = np.array([1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x10000, 0x3FFFFF,
                              0x400000, 0x7F8000, 0x7FFFFF], np.uint64)
        patterns += [0x7F800000 + nan_tails, 0xFF800000 + nan_tails]
    if values == elements.ANY:
        patterns.append(np.array([0x80000000, 0xFF800000, 0xFF7FFFFF, 0x7F7FFFFF], np.uint64))
    return np.concatenate(patterns).astype(np.uint32)


def _rounding_kernel(values: str, paired: bool):
    """softjit.jit: y = x * factor stored as bfloat16 with stored_values=values, x float32
    (one-vector, unrolled and masked stores) or, paired, bfloat16 (elementwise=True: the pair
    loads and stores of codegen/kernels/elements.py in the unrolled loop)."""
    from softjit import In, Out, Size
    from softjit.codegen import for_each_vector
    from softjit.codegen.abi import BF16

    def store_rounded(f):
        x, y, n = f.args
        factor = f.constant_register("factor", _FACTORS[values] if paired else 1.0)

        def step(tile):
            vs = f.vecs("v", tile.count)
            for i, v in enumerate(vs):
                tile.load(v, x, i)
                f.vmulps(v, v, factor)
            for i, v in enumerate(vs):
                tile.store(y, i, v)
        elements = {x: BF16, y: BF16} if paired else {y: BF16}
        for_each_vector(f, n, [x, y], 4, step, "round", elements=elements, elementwise=True,
                        stored_values=values)
        f.ret()

    return softjit.jit(store_rounded, args=[In("x", "uint16" if paired else "uint32", "n"),
                                            Out("y", "uint16", "n"), Size("n")])


# the paired kernels' factor: it keeps the range and gives products of every rounding kind
_FACTORS = {"any": 1.2345678, "nonnegative or NaN": 1.2345678, "[0, 1]": 0.99123}


@pytest.mark.parametrize("paired", [False, True], ids=["float32 in", "bfloat16 pairs"])
@pytest.mark.parametrize("values", ["any", "nonnegative or NaN", "[0, 1]"])
def test_bfloat16_rounding_of_each_value_range(values, paired):
    """elements.round_to_bfloat16 for each range a kernel may declare (stored_values=), on the
    patterns of the range that decide a rounding, natively and emulated on both ISAs: to
    nearest even, NaN for NaN. Paired: bfloat16 x times a factor, through the pair loads and
    stores."""
    import ml_dtypes

    kernel = _rounding_kernel(values, paired)
    bits = _float32_patterns(values, np.random.default_rng(41))
    if paired:
        x = _bfloat16_reference(bits).view(ml_dtypes.bfloat16)
        if values == "[0, 1]":
            x = np.minimum(x.astype(np.float32), 1).astype(ml_dtypes.bfloat16)
        with np.errstate(over="ignore"):  # finite values past the range become inf, as in the kernel
            products = x.astype(np.float32) * np.float32(_FACTORS[values])
        bits, source = products.view(np.uint32), x.view(np.uint16)
    else:
        source = bits
    expected = _bfloat16_reference(bits)
    nan = np.isnan(bits.view(np.float32))
    runs = [kernel.emulate(source, isa=isa) for isa in ("avx512f", "avx2")]
    runs += [kernel(source, isa=isa) for isa in HOST_ISAS]
    for y in runs:
        got_nan = ((y & 0x7F80) == 0x7F80) & ((y & 0x7F) != 0)
        assert np.array_equal(got_nan, nan)
        assert np.array_equal(y[~nan], expected[~nan])
