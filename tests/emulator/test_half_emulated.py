"""The float16 and bfloat16 kernels (x and y converted in registers, computed in float32)
through softjit.codegen.emulator, on exactly-sized buffers whose rows lie a gap apart (any byte
touched outside them faults): every registered 16-bit softmax row driver and log_softmax
reduce / apply driver, at the tail lengths of both ISAs, unaligned, with special values. Each
gives exactly what its float32 counterpart (the same parameters on float32 elements) gives on
the widened input, rounded to nearest even; and where the host runs the ISA, the emulated bits
equal the CPU's."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import drivers
import softjit
from softjit.codegen import variants
from softjit.runtime import bindings, log_softmax as runtime

HOST_ISAS = softjit.host_isas()
HALF_SOFTMAX = [v for v in variants.VARIANTS if v.op == "softmax" and v.element != "f32"]
HALF_LOG_SOFTMAX = [v for v in variants.VARIANTS if v.op == "log_softmax" and v.element != "f32"
                    and not v.scaled]  # scaled: tests/kernels/test_scaled_log_softmax.py
# tails of both ISAs (8 and 16 lanes) around one and two vectors, and past an unrolled step
LENGTHS = (0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 257)


from softmax_checks import half_dtype  # noqa: E402


def largest(dtype: np.dtype):
    """The dtype's largest finite value (ml_dtypes' finfo knows bfloat16; numpy's does not)."""
    if dtype == np.float16:
        return np.finfo(np.float16).max
    import ml_dtypes

    return ml_dtypes.finfo(dtype).max


def float32_counterpart(variant):
    return dataclasses.replace(variant, element="f32")


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint8), b.view(np.uint8))


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    """The same bits, except that any NaN matches any NaN (the AVX2 bfloat16 rounding makes every
    NaN 0xFFFF: codegen/kernels/elements.py)."""
    nan_a, nan_b = np.isnan(a.astype(np.float32)), np.isnan(b.astype(np.float32))
    return (a.shape == b.shape and np.array_equal(nan_a, nan_b)
            and np.array_equal(a.view(np.uint16)[~nan_a], b.view(np.uint16)[~nan_b]))


def rows_with_gaps(rng, dtype, rows: int, n: int, gap: int, offset: int):
    """(x2d, y2d): rows of n elements `gap` elements apart, `offset` elements into exactly
    sized buffers; row 1 holds -inf entries and the dtype's largest values, row 2 a NaN."""
    size = offset + rows * (n + gap)
    x = np.empty(size, dtype)
    x[:] = (rng.standard_normal(size) * 6).astype(np.float32).astype(dtype)
    y = np.full(size, 7, dtype)
    x2d = drivers.rows_in(x, rows, n, n + gap, offset)
    y2d = drivers.rows_in(y, rows, n, n + gap, offset)
    if n:
        x2d[1, rng.integers(0, n, 2)] = -np.inf
        x2d[1, rng.integers(0, n)] = largest(dtype) if n > 3 else 0
        x2d[1, rng.integers(0, n)] = -largest(dtype) if n > 3 else 0
        if rows > 2:
            x2d[2, rng.integers(0, n)] = np.nan
    return x2d, y2d


def widened(x2d: np.ndarray):
    """x2d's values as float32 in the same layout (rows equally far apart)."""
    rows, n = x2d.shape
    gap = x2d.strides[0] // x2d.itemsize - n if rows > 1 else 0
    base = np.empty(rows * (n + gap), np.float32)
    w = drivers.rows_in(base, rows, n, n + gap)
    w[...] = x2d.astype(np.float32)
    return w, drivers.rows_in(np.full_like(base, 7), rows, n, n + gap)


def run_driver(variant, x2d, y2d, emulator, native: bool):
    return drivers.call(variant, x2d, y2d, emulator=None if native else emulator)


@pytest.mark.parametrize("v", HALF_SOFTMAX, ids=lambda v: v.name)
def test_half_softmax_drivers_emulated(v, emulator):
    dtype = half_dtype(v.element)
    rng = np.random.default_rng(31)
    reference = float32_counterpart(v)
    native = v.isa in HOST_ISAS
    for n in LENGTHS:
        gap, offset = (n % 3) + 1, n % 5  # unaligned rows, a gap between them
        x2d, y2d = rows_with_gaps(rng, dtype, 3, n, gap, offset)
        marked, status = run_driver(v, x2d, y2d, emulator, native=False)
        if native:  # the emulator and the CPU agree bit for bit
            yn2d = drivers.rows_in(np.full(offset + 3 * (n + gap), 7, dtype), 3, n, n + gap,
                                   offset)
            marked_n, status_n = run_driver(v, x2d, yn2d, emulator, native=True)
            assert marked_n == marked and np.array_equal(status_n, status)
            assert same_bits(np.ascontiguousarray(yn2d), np.ascontiguousarray(y2d)), n
        w2d, z2d = widened(x2d)
        marked32, status32 = run_driver(reference, w2d, z2d, emulator, native=native)
        assert marked == marked32 and np.array_equal(status, status32)
        done = status == 0  # marked rows are left for the caller (y untouched)
        rounded = z2d.astype(dtype)
        assert same_values(np.ascontiguousarray(y2d[done]), np.ascontiguousarray(rounded[done])), n
        assert (y2d[~done].astype(np.float32) == 7).all()


@pytest.mark.parametrize("v", HALF_LOG_SOFTMAX, ids=lambda v: v.name)
def test_half_log_softmax_drivers_emulated(v, emulator):
    dtype = half_dtype(v.element)
    rng = np.random.default_rng(32)
    reference = float32_counterpart(v)
    for n in LENGTHS[1:]:
        x = (rng.standard_normal((3, n)) * 6).astype(np.float32).astype(dtype)
        x[1, rng.integers(0, n)] = -np.inf
        rows = x.shape[0]
        states = np.full((rows, 4), 7.0, np.float32)
        status = np.full(rows, -5, np.int32)
        marked = emulator.call(v, ("ro", x), n, rows, x.strides[0], states, status,
                               symbol=v.reduce_symbol)
        wide = x.astype(np.float32)
        states32 = np.full_like(states, 7.0)
        status32 = np.full_like(status, -5)
        marked32 = emulator.call(reference, ("ro", wide), n, rows, wide.strides[0], states32,
                                 status32, symbol=reference.reduce_symbol)
        assert marked == marked32 and np.array_equal(status, status32)
        assert np.array_equal(states, states32, equal_nan=True), n  # the same float32 sums
        apply_states = np.zeros_like(states)
        apply_states[:, 0] = states[:, 0]  # any finite pair (a, b): y = (x - a) - b
        apply_states[:, 1] = np.float32(0.375)
        y = np.full((rows, n), 7, dtype)
        strides = np.array([x.strides[0], y.strides[0]], np.int64)
        emulator.call(v, ("ro", x), y, n, rows, ("ro", strides), ("ro", apply_states),
                      symbol=v.apply_symbol)
        y32 = np.full((rows, n), 7, np.float32)
        strides32 = np.array([wide.strides[0], y32.strides[0]], np.int64)
        emulator.call(reference, ("ro", wide), y32, n, rows, ("ro", strides32),
                      ("ro", apply_states), symbol=reference.apply_symbol)
        assert same_values(y, y32.astype(dtype)), n
        # the log_softmax driver (reduction, the row's logarithm, output pass in one call):
        # the float32 module's bits on the widened rows, rounded once
        y_rows = np.full((rows, n), 7, dtype)
        emulator.call(v, ("ro", x), y_rows, n, rows, ("ro", strides),
                      np.zeros(rows, runtime.STATE_DTYPE).view(np.float32),
                      symbol=v.log_softmax_symbol)
        y_rows32 = np.full((rows, n), 7, np.float32)
        emulator.call(reference, ("ro", wide), y_rows32, n, rows, ("ro", strides32),
                      np.zeros(rows, runtime.STATE_DTYPE).view(np.float32),
                      symbol=reference.log_softmax_symbol)
        assert same_values(y_rows, y_rows32.astype(dtype)), n
        if v.isa in HOST_ISAS:  # the emulator and the CPU agree bit for bit
            p = bindings.pointer
            native_states = np.full_like(states, 7.0)
            bindings.function(v, v.reduce_symbol)(p(x), n, rows, x.strides[0], p(native_states),
                                                  p(np.empty(rows, np.int32)))
            assert np.array_equal(native_states, states, equal_nan=True)
            native_y = np.full_like(y, 7)
            bindings.function(v, v.apply_symbol)(p(x), p(native_y), n, rows, p(strides),
                                                 p(apply_states))
            assert same_bits(native_y, y)
            native_rows = np.full_like(y, 7)
            runtime._Module(v).log_softmax(x, native_rows, np.zeros(rows, runtime.STATE_DTYPE))
            assert same_bits(native_rows, y_rows)


# bfloat16 pairs (codegen/kernels/elements.py): the elementwise output passes read and write two
# vectors of words at a time, after a head that aligns y to a register's width for
# non-temporal stores (up to 31 elements on AVX-512: one unmasked and one masked step).
HALF_PAIRED = [v for v in HALF_SOFTMAX if v.element == "bf16"]
PAIR_OFFSETS = (0, 1, 7, 15, 16, 17, 30, 31)  # elements past a 64-byte boundary


def aligned_words(size: int, offset: int, dtype) -> np.ndarray:
    """size elements of dtype starting offset elements past a 64-byte boundary."""
    base = np.empty(size + 64, dtype)
    start = (-base.ctypes.data % 64) // 2 + offset
    return base[start:start + size]


@pytest.mark.parametrize("v", HALF_PAIRED, ids=lambda v: v.name)
def test_bfloat16_pairs_at_every_alignment(v, emulator):
    """Rows whose y starts at each offset that decides the head's steps, long enough for the
    unrolled loop's pairs, the one-vector loop and a tail; values spanning subnormal outputs
    (x - max down to -110), ties, a NaN row (three passes) and -inf masks: the law holds
    emulated and natively, and the emulated bits equal the CPU's."""
    dtype = half_dtype(v.element)
    rng = np.random.default_rng(33)
    reference = float32_counterpart(v)
    n = 2 * 256 + 16 * 3 + 5
    for offset in PAIR_OFFSETS:
        x = aligned_words(3 * n, offset, dtype).reshape(3, n)
        x[0] = rng.uniform(-110, 0, n).astype(np.float32).astype(dtype)
        x[1] = (rng.standard_normal(n) * 6).astype(np.float32).astype(dtype)
        x[1, rng.integers(0, n, 5)] = -np.inf
        x[2] = rng.uniform(-3, 3, n).astype(np.float32).astype(dtype)
        x[2, rng.integers(0, n)] = np.nan
        results = []
        for native in (False, True)[:1 + (v.isa in HOST_ISAS)]:
            y = aligned_words(3 * n, offset, dtype).reshape(3, n)
            y[...] = 7
            marked, status = run_driver(v, x, y, emulator, native=native)
            results.append((marked, status, y.view(np.uint16).copy()))
        if len(results) == 2:
            assert results[0][0] == results[1][0] and np.array_equal(results[0][1], results[1][1])
            assert np.array_equal(results[0][2], results[1][2]), offset
        w2d, z2d = widened(x)
        marked32, status32 = run_driver(reference, w2d, z2d, emulator, native=v.isa in HOST_ISAS)
        marked, status, bits = results[0]
        assert marked == marked32 and np.array_equal(status, status32)
        done = status == 0
        assert same_values(bits.view(dtype)[done], z2d.astype(dtype)[done]), offset
        assert (bits.view(dtype)[~done].astype(np.float32) == 7).all()
