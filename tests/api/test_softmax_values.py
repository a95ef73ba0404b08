"""softjit.softmax against the float64 reference: every algorithm on every ISA this host runs,
row lengths around every loop boundary, alignments, large rows and batches, special values,
-inf masks, rows the two-pass kernels hand to three-pass-reload, and outputs large enough for
the non-temporal kernels.

Tolerances (see softmax_checks): relative error <= 1e-5 where the reference is >= FLT_MIN,
absolute error <= FLT_MIN below it (the AVX2 kernels flush results below ~2^-126 to zero).
"""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softjit.codegen import variants

from softmax_checks import DISTRIBUTIONS, check_softmax, uniform, with_minus_inf
from softmax_cases import (ALGORITHMS, ALL_ALGORITHMS, ISAS, native, concrete, row_lengths,
                           rng_for, special_rows, mixed_fallback_batch, call_native_driver)


# ------------------------------------------------------------------------- row lengths / values
@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_every_row_length_around_the_unroll(algorithm, isa, distribution):
    """n = 0 .. 2*U+1 (U the largest main-loop step of any pass), three rows per call."""
    native(isa)
    rng = rng_for(algorithm, isa, distribution)
    make = DISTRIBUTIONS[distribution]
    for n in row_lengths(algorithm, isa):
        x = make(rng, (3, n))
        if n and distribution.startswith("neg_inf"):
            x[2, :] = -np.inf
            x[2, rng.integers(n)] = rng.uniform(-50, 50)  # one finite survivor
        y = softjit.softmax(x, algorithm=algorithm, isa=isa)
        check_softmax(y, x, label=(concrete(algorithm, isa), isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_unaligned_input_and_output(algorithm, isa):
    """x and y starting 1..15 floats past an aligned address (independently)."""
    native(isa)
    rng = rng_for("unaligned", algorithm, isa)
    for offset in range(1, 16):
        for n in row_lengths(algorithm, isa):
            rows = 2
            base = np.empty(rows * n + 64, np.float32)
            start = (-base.ctypes.data // 4) % 16 + offset  # 64-byte aligned + offset floats
            x = base[start:start + rows * n].reshape(rows, n)
            x[...] = uniform(rng, (rows, n), 20.0)
            out_base = np.empty(rows * n + 64, np.float32)
            out_start = (-out_base.ctypes.data // 4) % 16 + (16 - offset)
            out = out_base[out_start:out_start + rows * n].reshape(rows, n)
            got = softjit.softmax(x, algorithm=algorithm, isa=isa, out=out)
            assert got is out
            check_softmax(out, x, label=(algorithm, isa))
            assert np.array_equal(out, softjit.softmax(x.copy(), algorithm=algorithm, isa=isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_large_rows(algorithm, isa):
    native(isa)
    v = variants.REGISTRY.softmax(algorithm, isa)
    rng = rng_for("large", algorithm, isa)
    for n in (2 * v.block + 5, 10**5 + 7, 10**6 + 3):
        for make in (lambda s: uniform(rng, s, 1000.0), lambda s: rng.standard_normal(s, np.float32),
                     lambda s: with_minus_inf(rng, uniform(rng, s, 50.0), 0.7)):
            x = make((n,))
            check_softmax(softjit.softmax(x, algorithm=algorithm, isa=isa), x, label=(algorithm, isa))


@pytest.mark.parametrize("shape", [(7, 1000), (1000, 7), (1, 1), (257, 3), (3, 4097), (64, 129)])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_batches(algorithm, isa, shape):
    native(isa)
    rng = rng_for("batch", algorithm, isa, shape)
    x = uniform(rng, shape, 30.0)
    y = softjit.softmax(x, algorithm=algorithm, isa=isa)
    check_softmax(y, x, label=(concrete(algorithm, isa), isa))
    # one call over the batch equals row-by-row calls, bit for bit
    rows = np.stack([softjit.softmax(r, algorithm=algorithm, isa=isa) for r in x])
    assert np.array_equal(y, rows)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_special_values(algorithm, isa):
    native(isa)
    rng = rng_for("special", algorithm, isa)
    v_alg = concrete(algorithm, isa)
    for n in (4, 5, 8, 17, 33, 64, 100, 129, 1000, 5000):
        x, names = special_rows(rng, n)
        y = softjit.softmax(x, algorithm=algorithm, isa=isa)
        for row_x, row_y, name in zip(x, y, names):
            try:
                check_softmax(row_y, row_x, label=(v_alg, isa))
            except AssertionError as e:
                raise AssertionError(f"{algorithm}/{isa} n={n} row '{name}': {e}") from None
        # exact facts beyond the tolerance
        one = names.index("one finite among -inf")
        assert np.array_equal(y[one], np.where(x[one] == -np.inf, 0.0, 1.0).astype(np.float32))
        for name in ("one NaN", "one +inf", "all -inf", "all NaN", "all +inf", "-inf and a NaN"):
            assert np.isnan(y[names.index(name)]).all(), name
        assert np.allclose(y[names.index("all FLT_MAX")], 1.0 / n, rtol=1e-6)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_minus_inf_masks(algorithm, isa):
    """Attention masks: a random 0-90% of entries -inf (every row keeps one finite entry)."""
    native(isa)
    rng = rng_for("mask", algorithm, isa)
    for n in (1, 3, 9, 31, 64, 200, 777, 4099):
        for fraction in (0.0, 0.1, 0.5, 0.9, 0.99):
            x = with_minus_inf(rng, uniform(rng, (6, n), 100.0), fraction)
            x[np.arange(6), rng.integers(n, size=6)] = rng.uniform(-100, 100, 6)
            y = softjit.softmax(x, algorithm=algorithm, isa=isa)
            check_softmax(y, x, label=(algorithm, isa))
            assert (y[x == -np.inf] == 0).all()


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_fallback_rows_mixed_with_normal_rows(algorithm, isa):
    """Rows the two-pass kernels mark are recomputed with three passes; every row comes out
    right, whatever its neighbours are."""
    native(isa)
    rng = rng_for("fallback", algorithm, isa)
    for n in (2, 7, 16, 33, 100, 1000, 5003):
        x, names = mixed_fallback_batch(rng, n)
        y = softjit.softmax(x, algorithm=algorithm, isa=isa)
        for row_x, row_y, name in zip(x, y, names):
            try:
                check_softmax(row_y, row_x, label=(concrete(algorithm, isa), isa))
            except AssertionError as e:
                raise AssertionError(f"{algorithm}/{isa} n={n} row '{name}': {e}") from None
        # and the same with the rows in another order, and along axis 0
        order = rng.permutation(len(x))
        yr = softjit.softmax(x[order], algorithm=algorithm, isa=isa)
        assert np.array_equal(yr, y[order], equal_nan=True)
        yt = softjit.softmax(np.ascontiguousarray(x.T), axis=0, algorithm=algorithm, isa=isa)
        assert np.array_equal(yt.T, y, equal_nan=True)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_large_outputs_take_the_nontemporal_kernels(algorithm, isa):
    """Outputs >= 16 MB run the non-temporal-store variants: same values, bit for bit, as the
    ordinary kernels (called directly here), and right against the reference."""
    native(isa)
    from softjit.runtime import dispatch

    rng = rng_for("nontemporal", algorithm, isa)
    rows, n = 3, 1_500_007
    assert rows * n * 4 >= dispatch.NONTEMPORAL_MIN_BYTES
    x = uniform(rng, (rows, n), 30.0)
    x[1, 5] = 3e7  # a fallback row for two-pass
    y = softjit.softmax(x, algorithm=algorithm, isa=isa)
    check_softmax(y, x, label=(concrete(algorithm, isa, n), isa))
    marked, status, direct = call_native_driver(concrete(algorithm, isa, n), isa, x)
    for r in range(rows):
        if not status[r]:
            assert np.array_equal(y[r], direct[r]), r
