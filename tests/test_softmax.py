"""softjit.softmax against a float64 reference: every algorithm on every ISA this host runs, row
lengths around every loop boundary, layouts, special values, the two-pass fallback, threads,
argument errors, and accuracy at scale. The AVX-512 kernels also run through the emulator
(softjit.codegen.emulator) on hosts without AVX-512.

Tolerances (see softmax_checks): relative error <= 1e-5 where the reference is >= FLT_MIN,
absolute error <= FLT_MIN below it (the AVX2 kernels flush results below ~2^-126 to zero).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest

import softjit
from softjit.codegen import variants
from softjit.runtime import bindings

from softmax_checks import (DISTRIBUTIONS, FLT_MAX, MAX_ERRORS, check_softmax, needs_three_pass,
                            uniform, with_minus_inf)

ALGORITHMS = variants.ALGORITHMS  # the concrete ones
ALL_ALGORITHMS = ("auto",) + ALGORITHMS
ISAS = ("avx2", "avx512f")
HOST_ISAS = softjit.host_isas()


def native(isa: str) -> None:
    """Skip (visibly) a test of an ISA this host cannot run."""
    if isa not in HOST_ISAS:
        pytest.skip(f"this host lacks {isa} (host runs {HOST_ISAS}); the emulator tests cover it")


def unroll_elements(algorithm: str, isa: str) -> int:
    """The longest main-loop step (in elements) of any pass of the variant."""
    v = variants.REGISTRY.softmax(algorithm, isa)
    return max(v.reduce_unroll, v.output_unroll, v.rmax_unroll) * v.target.lanes


def concrete(algorithm: str, isa: str, n: int = 1000) -> str:
    """The algorithm softjit.softmax runs for rows of n elements."""
    from softjit.runtime.dispatch import choose_algorithm

    return algorithm if algorithm != "auto" else choose_algorithm(isa, n, 1)


def registers_nontemporal(algorithm: str, isa: str) -> bool:
    return any(v.op == "softmax" and v.algorithm == algorithm and v.isa == isa and v.nontemporal
               for v in variants.VARIANTS)


def skip_unregistered_nontemporal(algorithm: str, isa: str, nontemporal: bool) -> None:
    if nontemporal and not registers_nontemporal(algorithm, isa):
        pytest.skip(f"{algorithm} registers no non-temporal variant for {isa} (its last pass "
                    "re-reads y; the runtime uses the plain kernels)")


def row_lengths(algorithm: str, isa: str) -> range:
    return range(0, 2 * unroll_elements(concrete(algorithm, isa), isa) + 2)


def say(config, line: str) -> None:
    """Write a line to the terminal past pytest's output capture (for the measured errors)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        return
    if capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
    else:
        reporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def report_max_errors(request):
    """Print the largest relative error seen per algorithm x ISA at the end of the module."""
    yield
    if MAX_ERRORS:
        say(request.config, "")
        say(request.config, "softmax: largest relative error seen (reference >= FLT_MIN)")
        for label, error in sorted(MAX_ERRORS.items(), key=str):
            say(request.config, f"  {label}: {error:.3e}")


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by the test's parameters (stable across runs and hash seeds)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


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


# ------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place(algorithm, isa):
    native(isa)
    rng = rng_for("inplace", algorithm, isa)
    for shape in [(5, 77), (1, 1000), (3, 2, 65), (300,)]:
        x = with_minus_inf(rng, uniform(rng, shape, 40.0), 0.2)
        if shape[-1] > 3:
            x.reshape(-1, shape[-1])[0, :3] = [np.nan, 1, 2]  # a NaN row in place
        expected = softjit.softmax(x, algorithm=algorithm, isa=isa)
        buffer = x.copy()
        got = softjit.softmax(buffer, algorithm=algorithm, isa=isa, out=buffer)
        assert got is buffer
        assert np.array_equal(buffer, expected, equal_nan=True)
        check_softmax(buffer, x, label=(algorithm, isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place_along_other_axes_and_strided(algorithm, isa):
    """out is x, but x is not row-contiguous (the kernels cannot write it directly)."""
    native(isa)
    rng = rng_for("inplace2", algorithm, isa)
    x = uniform(rng, (6, 50, 4), 10.0)
    for axis in (0, 1, 2):
        buffer = x.copy()
        softjit.softmax(buffer, axis=axis, algorithm=algorithm, isa=isa, out=buffer)
        check_softmax(buffer, x, axis, label=(algorithm, isa))
    big = uniform(rng, (8, 100), 10.0)
    buffer = big.copy()
    view = buffer[:, ::2]
    softjit.softmax(view, algorithm=algorithm, isa=isa, out=view)
    check_softmax(view, big[:, ::2], label=(algorithm, isa))
    assert np.array_equal(buffer[:, 1::2], big[:, 1::2]), "elements outside the view changed"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_out_arrays(algorithm, isa):
    native(isa)
    rng = rng_for("out", algorithm, isa)
    x = uniform(rng, (9, 301), 25.0)
    x_before = x.copy()
    expected = softjit.softmax(x, algorithm=algorithm, isa=isa)
    check_softmax(expected, x, label=(algorithm, isa))
    out = np.full_like(x, 7.0)
    assert softjit.softmax(x, algorithm=algorithm, isa=isa, out=out) is out
    assert np.array_equal(out, expected)
    # a strided out (a view of a larger array) and a Fortran-ordered one
    big = np.full((9, 602), 7.0, np.float32)
    view = big[:, ::2]
    softjit.softmax(x, algorithm=algorithm, isa=isa, out=view)
    assert np.array_equal(view, expected)
    assert (big[:, 1::2] == 7.0).all(), "out wrote outside its view"
    fortran = np.asfortranarray(np.zeros_like(x))
    softjit.softmax(x, algorithm=algorithm, isa=isa, out=fortran)
    assert np.array_equal(fortran, expected)
    # out overlapping x with a shift: results must not read partly written rows
    base = np.zeros(9 * 301 + 1, np.float32)
    src = base[1:].reshape(9, 301)
    src[...] = x
    dst = base[:-1].reshape(9, 301)
    softjit.softmax(src, algorithm=algorithm, isa=isa, out=dst)
    assert np.array_equal(dst, expected)
    assert np.array_equal(x, x_before), "x was modified"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_out_with_padded_rows(algorithm, isa):
    """out rows a padded stride apart (the leading columns of a wider array)."""
    native(isa)
    rng = rng_for("out-padded", algorithm, isa)
    x = uniform(rng, (9, 301), 25.0)
    expected = softjit.softmax(x, algorithm=algorithm, isa=isa)
    padded = np.full((9, 320), 7.0, np.float32)
    assert softjit.softmax(x, algorithm=algorithm, isa=isa, out=padded[:, :301]).base is padded
    assert np.array_equal(padded[:, :301], expected)
    assert (padded[:, 301:] == 7.0).all(), "out wrote into the padding"


NONCONTIGUOUS = {
    "every_other_column": lambda a: a[:, ::2],
    "transpose": lambda a: a.T,
    "reversed_columns": lambda a: a[:, ::-1],
    "reversed_rows": lambda a: a[::-1],
    "reversed_both": lambda a: a[::-1, ::-1],
    "every_third_row": lambda a: a[::3],
    "leading_columns": lambda a: a[:, :-5],  # rows a padded stride apart
    "fortran": np.asfortranarray,
}


@pytest.mark.parametrize("layout", sorted(NONCONTIGUOUS))
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_noncontiguous_inputs(algorithm, isa, layout):
    """Results never depend on strides: equal, bit for bit, to the contiguous copy's."""
    native(isa)
    rng = rng_for("layout", algorithm, isa, layout)
    for shape in [(12, 70), (40, 33), (5, 1001)]:
        base = with_minus_inf(rng, uniform(rng, shape, 60.0), 0.1)
        x = NONCONTIGUOUS[layout](base)
        before = base.copy()
        for axis in (-1, 0):
            y = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa)
            check_softmax(y, x, axis, label=(algorithm, isa))
            same = softjit.softmax(np.ascontiguousarray(x), axis=axis, algorithm=algorithm, isa=isa)
            assert np.array_equal(y, same, equal_nan=True)  # all -inf rows are NaN
        assert np.array_equal(base, before), "input was modified"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_axes_of_3d_arrays(algorithm, isa):
    native(isa)
    rng = rng_for("axes", algorithm, isa)
    x = uniform(rng, (5, 37, 19), 40.0)
    for axis in (0, 1, 2, -1, -2, -3):
        y = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa)
        check_softmax(y, x, axis, label=(concrete(algorithm, isa), isa))
        moved = softjit.softmax(np.ascontiguousarray(np.moveaxis(x, axis, -1)),
                                algorithm=algorithm, isa=isa)
        assert np.array_equal(np.moveaxis(y, axis, -1), moved)
    # the default axis is the last
    assert np.array_equal(softjit.softmax(x, algorithm=algorithm, isa=isa),
                          softjit.softmax(x, axis=2, algorithm=algorithm, isa=isa))
    # numpy integer axes are accepted
    assert np.array_equal(softjit.softmax(x, axis=np.int64(1), algorithm=algorithm, isa=isa),
                          softjit.softmax(x, axis=1, algorithm=algorithm, isa=isa))


# ------------------------------------------------------------------------------ special values
def special_rows(rng, n: int) -> tuple[np.ndarray, list[str]]:
    """One row of each special kind, n >= 4."""
    rows, names = [], []

    def add(name, row):
        rows.append(np.asarray(row, np.float32))
        names.append(name)

    base = lambda: uniform(rng, n, 10.0)  # noqa: E731
    r = base(); r[rng.integers(n)] = np.nan; add("one NaN", r)
    r = base(); r[rng.integers(n)] = np.inf; add("one +inf", r)
    r = base(); r[0] = np.inf; r[-1] = -np.inf; add("+inf and -inf", r)
    add("all NaN", np.full(n, np.nan))
    add("all +inf", np.full(n, np.inf))
    add("all -inf", np.full(n, -np.inf))
    r = np.full(n, -np.inf); r[-1] = np.nan; add("-inf and a NaN", r)
    r = np.full(n, -np.inf); r[rng.integers(n)] = 5.0; add("one finite among -inf", r)
    r = np.full(n, -np.inf); r[0] = -FLT_MAX; add("-FLT_MAX among -inf", r)
    r = base(); r[0] = FLT_MAX; r[1] = -FLT_MAX; add("FLT_MAX and -FLT_MAX", r)
    r = base(); r[:] = FLT_MAX; add("all FLT_MAX", r)
    r = base(); r[:] = -FLT_MAX; add("all -FLT_MAX", r)
    r = np.full(n, -FLT_MAX); r[::2] = FLT_MAX; add("alternating +-FLT_MAX", r)
    r = uniform(rng, n, 1e38); r[1] = -np.inf; add("+-1e38 with -inf", r)
    add("zeros", np.zeros(n))
    r = np.zeros(n); r[::2] = -0.0; add("signed zeros", r)
    add("subnormals", rng.uniform(-1e-40, 1e-40, n))
    r = base(); r[2] = 88.0; r[3] = -88.0; add("around the exp range", r)
    add("steps of 87", -87.5 * np.arange(n) % 300)
    add("equal large", np.full(n, 3e5))
    return np.stack(rows), names


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


# ------------------------------------------------------------------- the two-pass fallback rows
def mixed_fallback_batch(rng, n: int) -> tuple[np.ndarray, list[str]]:
    rows, names = [], []

    def add(name, row):
        rows.append(np.asarray(row, np.float32))
        names.append(name)

    add("normal", uniform(rng, n, 5.0))
    add("huge positive 1e7", 1e7 + uniform(rng, n, 100.0))
    add("normal 2", rng.standard_normal(n))
    add("huge 1e38 spread", uniform(rng, n, 1e38))
    add("all below -2^20", -3e6 - np.abs(uniform(rng, n, 1e6)))
    add("near the clamp inside", 1e6 + uniform(rng, n, 50.0))
    add("negative near the clamp inside", -1e6 + uniform(rng, n, 50.0))
    r = uniform(rng, n, 5.0); r[0] = 2.5e6; add("one element past the clamp", r)
    r = uniform(rng, n, 5.0); r[-1] = -1e9; add("one element far below", r)
    r = uniform(rng, n, 5.0); r[n // 2] = np.nan; add("NaN", r)
    r = uniform(rng, n, 5.0); r[n // 3] = np.inf; add("+inf", r)
    add("all -inf", np.full(n, -np.inf))
    r = np.full(n, -np.inf); r[n // 2] = -5e6; add("one finite -5e6 among -inf", r)
    r = uniform(rng, n, 5.0); r[0] = FLT_MAX; r[1] = -FLT_MAX; add("FLT_MAX", r)
    add("normal 3", uniform(rng, n, 80.0))
    return np.stack(rows), names


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


def call_native_driver(algorithm, isa, x2d, y2d=None, nontemporal=False):
    """Call a variant's row driver as softjit.runtime.rows does; (marked, status, y)."""
    v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
    fn = bindings.function(v, v.driver_symbol)
    buf = bindings.pointer
    if y2d is None:
        y2d = np.full(x2d.shape, 7.0, np.float32)
    strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
    status = np.full(x2d.shape[0], -5, np.int32)
    marked = fn(buf(x2d), buf(y2d), x2d.shape[1], x2d.shape[0], buf(strides), buf(status))
    return marked, status, y2d


@pytest.mark.parametrize("nontemporal", [False, True], ids=["", "nt"])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_driver_marks_exactly_the_rows_that_need_three_passes(algorithm, isa, nontemporal):
    native(isa)
    skip_unregistered_nontemporal(algorithm, isa, nontemporal)
    rng = rng_for("marks", algorithm, isa)
    for n in (2, 7, 16, 33, 100, 1000, 5003):
        x, names = mixed_fallback_batch(rng, n)
        marked, status, y = call_native_driver(algorithm, isa, x, nontemporal=nontemporal)
        expected = [needs_three_pass(r) if algorithm == "two-pass" else False for r in x]
        assert [bool(s) for s in status] == expected, (n, [nm for nm, s in zip(names, status) if s])
        assert set(status.tolist()) <= {0, 1}
        assert marked == sum(expected)
        for i, name in enumerate(names):
            if expected[i]:
                assert (y[i] == 7.0).all(), f"marked row '{name}' was written"
            else:
                try:
                    check_softmax(y[i], x[i], label=(algorithm, isa))
                except AssertionError as e:
                    raise AssertionError(f"{algorithm}/{isa} n={n} row '{name}': {e}") from None


SOFTMAX_VARIANTS = [v for v in variants.VARIANTS if v.op == "softmax"]


@pytest.mark.parametrize("variant", SOFTMAX_VARIANTS, ids=lambda v: v.name)
def test_native_driver_row_lengths_alignments_and_row_strides(variant):
    """Every registered driver (the non-temporal ones too, which softjit.softmax only picks for
    outputs >= 16 MB) on n = 0 .. 2*U+1 at every float offset mod 64 bytes, with rows a padded
    row stride apart: results right, the padding between rows untouched, x unchanged."""
    native(variant.isa)
    rng = rng_for("driver", variant.name)
    fn = bindings.function(variant, variant.driver_symbol)
    buf = bindings.pointer
    rows, pad = 3, 5
    for n in row_lengths(variant.algorithm, variant.isa):
        for offset in range(16):
            stride = n + pad
            x_base = np.full(rows * stride + 32, 3.0, np.float32)
            y_base = np.full(rows * stride + 32, -9.0, np.float32)
            xs = (-x_base.ctypes.data // 4) % 16 + offset
            ys = (-y_base.ctypes.data // 4) % 16 + (offset * 7) % 16
            x = x_base[xs:xs + rows * stride].reshape(rows, stride)[:, :n]
            y = y_base[ys:ys + rows * stride].reshape(rows, stride)[:, :n]
            x[...] = uniform(rng, (rows, n), 40.0)
            x_before = x_base.copy()
            y_before = y_base.copy()
            strides = np.array([4 * stride, 4 * stride], np.int64)
            status = np.full(rows, -5, np.int32)
            marked = fn(buf(x_base[xs:]), buf(y_base[ys:]), n, rows, buf(strides), buf(status))
            assert np.array_equal(x_base, x_before), "x was modified"
            outside = np.ones(y_base.shape, bool)
            outside[ys:ys + rows * stride] = False
            inside_pad = np.zeros((rows, stride), bool)
            inside_pad[:, n:] = True
            outside[ys:ys + rows * stride] = inside_pad.reshape(-1)
            assert np.array_equal(y_base[outside], y_before[outside]), (
                f"{variant.name} n={n} offset={offset}: wrote outside its rows")
            if n:
                assert marked == 0 and (status == 0).all(), (n, status)
                check_softmax(y, x, label=(variant.algorithm, variant.isa))


# ------------------------------------------------------------------------------------- threads
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_threads_match_one_thread_bit_for_bit(algorithm, isa):
    """Many rows split over threads: each row is computed exactly as with one thread."""
    native(isa)
    rng = rng_for("threads", algorithm, isa)
    many = uniform(rng, (1001, 300), 30.0)
    few_long = uniform(rng, (9, 20011), 30.0)
    mixed, _ = mixed_fallback_batch(rng, 500)
    mixed = np.concatenate([mixed] * 7)
    for x in (many, few_long, mixed, many[:, ::3], many.reshape(7, 143, 300)):
        one = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=1)
        for threads in (2, 3, 8):
            got = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads)
            assert np.array_equal(got, one, equal_nan=True), threads
        check_softmax(one, x, label=(concrete(algorithm, isa), isa))
    # one row, more threads than rows
    row = many[:1]
    assert np.array_equal(softjit.softmax(row, algorithm=algorithm, isa=isa, threads=4),
                          softjit.softmax(row, algorithm=algorithm, isa=isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_threads_on_row_strided_views(algorithm, isa):
    """Rows at a non-contiguous row stride (x[::-1], x[::2]) over threads, as with one thread."""
    native(isa)
    rng = rng_for("threads-strided", algorithm, isa)
    many = uniform(rng, (1001, 300), 30.0)
    for x in (many[::-1], many[::2]):
        one = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=1)
        check_softmax(one, x, label=(concrete(algorithm, isa), isa))
        assert np.array_equal(softjit.softmax(x, algorithm=algorithm, isa=isa, threads=2), one)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_one_long_row_over_threads(algorithm, isa):
    """A single long row is split over the threads (partial results combined in float64): not
    bit-identical to one thread, but within the same tolerance of the reference."""
    native(isa)
    rng = rng_for("split", algorithm, isa)
    n = 300_007
    cases = {
        "uniform": uniform(rng, n, 100.0),
        "normal": rng.standard_normal(n, np.float32),
        "max in the last piece": np.concatenate([uniform(rng, n - 10, 10.0),
                                                 np.float32([50.0] * 10)]),
        "first half -inf": np.concatenate([np.full(n // 2, -np.inf, np.float32),
                                           uniform(rng, n - n // 2, 10.0)]),
        "huge (two-pass fallback)": uniform(rng, n, 1e30),
        "one NaN late": np.where(np.arange(n) == n - 3, np.nan, uniform(rng, n, 10.0)),
        "all -inf": np.full(n, -np.inf, np.float32),
        "FLT_MAX in one piece": np.where(np.arange(n) == 7, FLT_MAX, uniform(rng, n, 10.0)),
    }
    for name, x in cases.items():
        x = x.astype(np.float32)
        two_rows = np.stack([x, x[::-1]])
        for threads in (2, 3, 5):
            for shape in ((n,), (1, n), (2, n)):
                source = two_rows if shape[0] == 2 else x.reshape(shape)
                y = softjit.softmax(source, algorithm=algorithm, isa=isa, threads=threads)
                try:
                    check_softmax(y, source, label=(concrete(algorithm, isa), isa))
                except AssertionError as e:
                    raise AssertionError(f"{algorithm}/{isa} threads={threads} '{name}': {e}") \
                        from None


@pytest.mark.parametrize("isa", ISAS)
def test_concurrent_callers(isa):
    """softjit.softmax called from several Python threads at once (its per-thread scratch
    buffers and shared pool) gives what sequential calls give."""
    native(isa)
    import concurrent.futures

    rng = rng_for("concurrent", isa)
    inputs = []
    for i in range(12):
        x, _ = mixed_fallback_batch(rng, 50 + 37 * i)
        inputs.append(x)
    expected = [softjit.softmax(x, isa=isa) for x in inputs]
    expected_threads = [softjit.softmax(x, isa=isa, algorithm="three-pass-reload") for x in inputs]

    def work(i):
        for _ in range(20):
            a = softjit.softmax(inputs[i], isa=isa)
            b = softjit.softmax(inputs[i], isa=isa, algorithm="three-pass-reload", threads=2)
            if not (np.array_equal(a, expected[i], equal_nan=True)
                    and np.array_equal(b, expected_threads[i], equal_nan=True)):
                return i
        return None

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        bad = [r for r in pool.map(work, range(len(inputs))) if r is not None]
    assert not bad, f"inputs {bad} gave different results under concurrent calls"


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


# ---------------------------------------------------------------------------- empty and errors
def test_empty_rows_and_empty_batches():
    for shape, axis in [((0,), -1), ((4, 0), -1), ((0, 5), -1), ((0, 5), 0), ((3, 0, 2), 1),
                        ((2, 3, 0), 0)]:
        x = np.zeros(shape, np.float32)
        for algorithm in ALL_ALGORITHMS:
            y = softjit.softmax(x, axis=axis, algorithm=algorithm)
            assert y.shape == shape and y.dtype == np.float32
            out = np.zeros(shape, np.float32)
            assert softjit.softmax(x, axis=axis, algorithm=algorithm, out=out) is out


def test_python_lists_of_float32_are_not_float64():
    # a list becomes float64 under numpy's rules: refused, not silently converted
    with pytest.raises(TypeError, match="astype"):
        softjit.softmax([1.0, 2.0])


def test_argument_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="0-d"):
        softjit.softmax(np.float32(1.0))
    with pytest.raises(ValueError):
        softjit.softmax(np.array(1.0, np.float32))
    for dtype in (np.float64, np.float16, np.int32, np.complex64):
        with pytest.raises(TypeError) as info:
            softjit.softmax(x.astype(dtype))
        message = str(info.value)
        assert str(np.dtype(dtype)) in message and "astype(numpy.float32)" in message, message
    with pytest.raises(ValueError) as info:
        softjit.softmax(x, algorithm="online")
    for name in ALL_ALGORITHMS:
        assert name in str(info.value)
    assert "online" in str(info.value)
    with pytest.raises(ValueError) as info:
        softjit.softmax(x, isa="sse2")
    for name in ("auto", "avx2", "avx512f"):
        assert name in str(info.value)
    for bad in (2, -3, 10):
        with pytest.raises(ValueError, match="axis"):
            softjit.softmax(x, axis=bad)
    with pytest.raises((ValueError, TypeError)):
        softjit.softmax(x, axis=1.0)
    with pytest.raises(ValueError, match="shape"):
        softjit.softmax(x, out=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        softjit.softmax(x, out=np.zeros((3, 4, 1), np.float32))
    with pytest.raises(TypeError, match="float32"):
        softjit.softmax(x, out=np.zeros((3, 4), np.float64))
    with pytest.raises(TypeError):
        softjit.softmax(x, out=[[0.0] * 4] * 3)
    read_only = np.zeros((3, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        softjit.softmax(x, out=read_only)
    for threads in (0, -1):
        with pytest.raises(ValueError, match="threads"):
            softjit.softmax(x, threads=threads)
    # errors are raised before anything is written
    out = np.full((3, 4), 5.0, np.float32)
    with pytest.raises(ValueError):
        softjit.softmax(x, axis=7, out=out)
    assert (out == 5.0).all()


def test_assembly_text():
    for algorithm in ALGORITHMS:
        for isa in ISAS:
            text = softjit.assembly(algorithm, isa=isa)
            v = variants.REGISTRY.softmax(algorithm, isa)
            assert v.driver_symbol in text
            for symbol in (p.symbol for p in v.passes):
                assert symbol in text
            assert ("zmm" in text) == (isa == "avx512f")
    with pytest.raises(ValueError) as info:
        softjit.assembly("auto")
    assert all(a in str(info.value) for a in ALGORITHMS)
    with pytest.raises(ValueError) as info:
        softjit.assembly("fast")
    assert all(a in str(info.value) for a in ALGORITHMS)
    with pytest.raises(ValueError) as info:
        softjit.assembly("two-pass", isa="neon")
    assert "avx2" in str(info.value) and "avx512f" in str(info.value)


_MISSING_ISA_CHILD = r"""
import sys, numpy as np, softjit
isa = sys.argv[1]
x = np.ones((2, 40), np.float32)
try:
    softjit.softmax(x, isa=isa)
except softjit.UnsupportedISAError as e:
    assert isinstance(e, softjit.SoftjitError)
    assert isa in str(e), str(e)
    for algorithm in ("auto", "two-pass", "three-pass-reload", "three-pass-recompute"):
        try:
            softjit.softmax(x, algorithm=algorithm, isa=isa, out=np.empty_like(x), threads=2)
        except softjit.UnsupportedISAError:
            pass
        else:
            raise SystemExit("no error for " + algorithm)
    # the text can still be generated for any target
    assert "zmm" in softjit.assembly("two-pass", isa="avx512f")
    y = softjit.softmax(x)  # auto still works
    assert np.allclose(y, 1 / 40)
    print("UNSUPPORTED-OK", softjit.host_isas())
else:
    print("RAN", softjit.host_isas())
"""


def _run_child(isa, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", _MISSING_ISA_CHILD, isa], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("isa", ISAS)
def test_isa_the_host_lacks_raises_never_sigill(isa):
    """Asking for an ISA the host lacks raises UnsupportedISAError; run in a child process, so
    an illegal instruction would show up as a signal exit instead of killing the test run."""
    if isa in HOST_ISAS:
        pytest.skip(f"this host runs {isa}; the SOFTJIT_ISA cap test covers the error path")
    result = _run_child(isa)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "UNSUPPORTED-OK" in result.stdout, result.stdout + result.stderr


def test_isa_above_the_softjit_isa_cap_raises():
    result = _run_child("avx512f", {"SOFTJIT_ISA": "avx2"})
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "UNSUPPORTED-OK" in result.stdout, result.stdout + result.stderr


# ----------------------------------------------------------------------------- accuracy at scale
def chunked_check(x: np.ndarray, y: np.ndarray, chunk: int = 10**7) -> tuple[float, float]:
    """Max relative error (reference >= FLT_MIN) and max absolute error elsewhere of a single long
    row, with the float64 reference built chunk by chunk (memory stays ~3 chunks of float64)."""
    from softmax_checks import FLT_MIN
    m = float(np.max(x))
    total = 0.0
    for i in range(0, x.size, chunk):
        total += float(np.sum(np.exp(x[i:i + chunk].astype(np.float64) - m)))
    worst_rel = worst_abs = 0.0
    for i in range(0, x.size, chunk):
        ref = np.exp(x[i:i + chunk].astype(np.float64) - m) / total
        got = y[i:i + chunk].astype(np.float64)
        assert np.isfinite(got).all()
        err = np.abs(got - ref)
        normal = ref >= FLT_MIN
        if normal.any():
            worst_rel = max(worst_rel, float(np.max(err[normal] / ref[normal])))
        if (~normal).any():
            worst_abs = max(worst_abs, float(np.max(err[~normal])))
    return worst_rel, worst_abs


def fill_uniform(rng, n, low, high):
    x = np.empty(n, np.float32)
    for i in range(0, n, 10**7):
        part = x[i:i + 10**7]
        rng.random(dtype=np.float32, out=part)
        part *= np.float32(high - low)
        part += np.float32(low)
    return x


def fill_normal(rng, n):
    x = np.empty(n, np.float32)
    for i in range(0, n, 10**7):
        rng.standard_normal(dtype=np.float32, out=x[i:i + 10**7])
    return x


# Measured at most 7.0e-7 (N(0, 1) at 4*10^6 and at 10^8, every algorithm and ISA): the float64
# block folds keep the error from growing with n (without them it reaches 3.9e-6 at 4*10^6).
# Asserted with a 1.4x margin, well inside the README's 1e-5 bound.
LONG_ROW_RTOL = 1e-6


def _accuracy_at(n, algorithm, isa, config=None):
    from softmax_checks import FLT_MIN
    rng = rng_for("scale", n, algorithm, isa)
    results = {}
    for name, make in (("uniform[-1000,1000]", lambda: fill_uniform(rng, n, -1000.0, 1000.0)),
                       ("N(0,1)", lambda: fill_normal(rng, n))):
        x = make()
        start = time.perf_counter()
        y = softjit.softmax(x, algorithm=algorithm, isa=isa)
        seconds = time.perf_counter() - start
        rel, absolute = chunked_check(x, y)
        results[name] = (rel, absolute, seconds)
        MAX_ERRORS[(algorithm, isa, f"n={n}")] = max(MAX_ERRORS.get((algorithm, isa, f"n={n}"), 0.0),
                                                     rel)
        if config is not None:
            say(config, f"  n={n} {algorithm}/{isa} {name}: max rel err {rel:.3e}, "
                                f"max abs err below FLT_MIN {absolute:.3e}, softmax {seconds:.3f} s")
        assert rel <= LONG_ROW_RTOL, (name, rel)
        assert absolute <= FLT_MIN, (name, absolute)
        del x, y
    return results


@pytest.mark.parametrize("n", [10**6, 4 * 10**6])
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_accuracy_of_long_rows(algorithm, isa, n, request):
    native(isa)
    _accuracy_at(n, algorithm, isa, request.config)


@pytest.mark.slow
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_accuracy_at_10_to_the_8(algorithm, isa, request):
    """n = 10^8 (400 MB in, 400 MB out, the reference in float64 chunks of 10^7)."""
    native(isa)
    _accuracy_at(10**8, algorithm, isa, request.config)


# ---------------------------------------------------------------- AVX-512 through the emulator
def emulated_driver(emulator, algorithm, isa, x2d, nontemporal=False):
    """Run a variant's row driver in the emulator on exactly-sized buffers (any access past them
    faults), called as the Python layer calls it natively: (marked, status, y); rows the driver
    left alone hold 7.0."""
    v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
    x2d = np.ascontiguousarray(x2d, np.float32)
    rows, n = x2d.shape
    x_before = x2d.copy()
    y2d = np.full((rows, n), 7.0, np.float32)
    strides = np.array([4 * n, 4 * n], np.int64)
    status = np.full(rows, -5, np.int32)
    marked = emulator.call(v, ("ro", x2d), y2d, n, rows, ("ro", strides), status,
                           symbol=v.driver_symbol)
    assert np.array_equal(x2d, x_before, equal_nan=True), "the driver wrote to x"
    return marked, status, y2d


def emulated_softmax(emulator, algorithm, isa, x2d, nontemporal=False):
    """What softjit.softmax does with the emulated drivers: marked rows redone by
    three-pass-reload."""
    marked, status, y = emulated_driver(emulator, algorithm, isa, x2d, nontemporal)
    if marked:
        rows = np.flatnonzero(status)
        _, status2, y2 = emulated_driver(emulator, "three-pass-reload", isa, x2d[rows])
        assert not status2.any()
        y[rows] = y2
    return marked, status, y


EMULATED_ISAS = ("avx512f", "avx2")


@pytest.mark.parametrize("nontemporal", [False, True], ids=["", "nt"])
@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_emulated_every_row_length(algorithm, isa, nontemporal, emulator):
    """n = 0 .. 2*U+1 through the emulator (any out-of-bounds access raises there).

    For n == 0 the two-pass driver marks every row (the empty sum has no exponent); harmless,
    softjit.softmax never calls a kernel on empty rows, so marks are only checked for n > 0."""
    skip_unregistered_nontemporal(algorithm, isa, nontemporal)
    rng = rng_for("emulated", algorithm, isa, nontemporal)
    for n in row_lengths(algorithm, isa):
        x = np.stack([uniform(rng, n, 1.0), uniform(rng, n, 100.0),
                      DISTRIBUTIONS["loguniform_small"](rng, n)]).reshape(3, n)
        marked, status, y = emulated_softmax(emulator, algorithm, isa, x, nontemporal)
        if n:
            assert marked == 0 and not status.any(), (n, status)
        check_softmax(y, x, label=(algorithm, isa, "emulated"))
        if isa in HOST_ISAS:  # the emulator and the CPU agree bit for bit
            _, _, y_native = call_native_driver(algorithm, isa, x, nontemporal=nontemporal)
            assert np.array_equal(y, y_native)


@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_emulated_values_and_marks(algorithm, isa, emulator):
    """Special values, -inf masks, wide ranges and fallback rows in ~1000-element and short rows:
    marked rows are exactly those needing three passes; every row right after the fallback."""
    rng = rng_for("emulated-values", algorithm, isa)
    for n in (1000, 1003, 5, 37):
        batches = [mixed_fallback_batch(rng, n)] if n >= 2 else []
        if n >= 4:
            batches.append(special_rows(rng, n))
        wide = np.stack([DISTRIBUTIONS[d](rng, n) for d in
                         ("u1e-3", "u1e4", "u1e20", "u1e38", "loguniform", "neg_inf_mask",
                          "neg_inf_mask_wide", "normal")])
        wide[5:7, 0] = 1.0  # one finite survivor in the masked rows
        batches.append((wide, ["wide"] * len(wide)))
        for x, names in batches:
            marked, status, y = emulated_softmax(emulator, algorithm, isa, x)
            expected = [needs_three_pass(r) if algorithm == "two-pass" else False for r in x]
            assert [bool(s) for s in status] == expected, (
                n, [nm for nm, s in zip(names, status) if s])
            assert marked == sum(expected)
            for row_x, row_y, name in zip(x, y, names):
                try:
                    check_softmax(row_y, row_x, label=(algorithm, isa, "emulated"))
                except AssertionError as e:
                    raise AssertionError(f"emulated {algorithm}/{isa} n={n} row '{name}': {e}") \
                        from None
            if isa in HOST_ISAS:  # the emulator and the CPU agree bit for bit
                assert np.array_equal(y, softjit.softmax(x, algorithm=algorithm, isa=isa),
                                      equal_nan=True)


@pytest.mark.parametrize("nontemporal", [False, True], ids=["", "nt"])
@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_emulated_alignments_and_row_strides(algorithm, isa, nontemporal, emulator):
    """x and y at every float offset mod 64 bytes, rows a padded stride apart, the mapped regions
    ending exactly at the last row's end (the emulator keeps addresses mod 64 and faults on any
    byte outside a region): results right, padding untouched."""
    skip_unregistered_nontemporal(algorithm, isa, nontemporal)
    v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
    rng = rng_for("emulated-align", algorithm, isa, nontemporal)
    lanes = v.target.lanes
    rows, pad = 2, 3
    for n in (1, lanes - 1, lanes, lanes + 1, 4 * lanes + 3, 2 * unroll_elements(algorithm, isa) + 1):
        stride = n + pad
        for offset in range(16):
            size = (rows - 1) * stride + n
            x_base = np.empty(size + 32, np.float32)
            y_base = np.full(size + 32, 7.0, np.float32)
            xs = (-x_base.ctypes.data // 4) % 16 + offset
            ys = (-y_base.ctypes.data // 4) % 16 + (offset * 5 + 3) % 16
            x_region, y_region = x_base[xs:xs + size], y_base[ys:ys + size]
            x_region[...] = uniform(rng, size, 50.0)
            y_before = y_region.copy()
            strides = np.array([4 * stride, 4 * stride], np.int64)
            status = np.full(rows, -5, np.int32)
            marked = emulator.call(v, ("ro", x_region), y_region, n, rows, ("ro", strides),
                                   status, symbol=v.driver_symbol)
            assert marked == 0 and (status == 0).all()
            index = np.arange(size)
            in_rows = (index % stride) < n
            assert np.array_equal(y_region[~in_rows], y_before[~in_rows]), (n, offset)
            x2 = np.stack([x_region[r * stride:r * stride + n] for r in range(rows)])
            y2 = np.stack([y_region[r * stride:r * stride + n] for r in range(rows)])
            check_softmax(y2, x2, label=(algorithm, isa, "emulated"))


class _EmulatedDriver:
    """Stands in for runtime.bindings.RowDriver: same call, emulated kernels
    (one call at a time: the threads share the variant's Machine)."""

    lock = threading.Lock()

    def __init__(self, emulator, algorithm, isa, nontemporal=False):
        self.emulator = emulator
        self.variant = variants.REGISTRY.softmax(algorithm, isa, nontemporal)

    def __call__(self, x2d, y2d, status, strides):
        rows, n = x2d.shape
        assert x2d.flags.c_contiguous and y2d.flags.c_contiguous  # as the emulator maps them
        with _EmulatedDriver.lock:
            return self.emulator.call(self.variant, ("ro", x2d), y2d, n, rows, ("ro", strides),
                                      status, symbol=self.variant.driver_symbol)

    def single_row(self, n):
        return lambda x, y: self.contiguous(x, y, 1, n)[0]

    def contiguous(self, x, y, rows, n):
        status = np.empty(rows, np.int32)
        strides = np.array([4 * n, 4 * n], np.int64)
        return self(x.reshape(rows, n), y.reshape(rows, n), status, strides), status


class _EmulatedPasses(_EmulatedDriver):
    """Stands in for the pass kernels a long row split over threads runs piece by piece."""

    def run(self, index, x, y, state):
        with _EmulatedDriver.lock:
            return self.emulator.call(self.variant, ("ro", x), y, x.shape[0], state,
                                      symbol=self.variant.passes[index][0])


@pytest.fixture
def emulated_runtime(monkeypatch, emulator):
    """softjit.softmax with every kernel call going to the emulator (any ISA allowed), and rows
    of >= 1000 elements split over threads. The runtime finds its native functions through
    bindings.driver and bindings.passes: those are replaced; the memoised calls are forgotten
    before and after."""
    from softjit.runtime import api, bindings, memo, rows

    memo.forget_calls()
    monkeypatch.setattr(api, "resolve_isa", lambda isa: isa)
    monkeypatch.setattr(bindings, "driver",
                        lambda algorithm, isa, nontemporal=False:
                        _EmulatedDriver(emulator, algorithm, isa,
                                        nontemporal and registers_nontemporal(algorithm, isa)))
    monkeypatch.setattr(bindings, "passes",
                        lambda algorithm, isa, nontemporal=False: _EmulatedPasses(
                            emulator, algorithm, isa,
                            nontemporal and registers_nontemporal(algorithm, isa)))
    # the generated entries call native kernels: keep every call on the (patched) general path
    monkeypatch.setattr(api.entry_tables, "softmax_entry", lambda algorithm, isa: None)
    monkeypatch.setattr(rows, "SPLIT_ROW_MIN", 1000)
    monkeypatch.rows = rows
    monkeypatch.forget_calls = memo.forget_calls
    yield monkeypatch
    memo.forget_calls()


@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_emulated_through_the_python_layer(algorithm, isa, emulated_runtime):
    """softjit.softmax itself (fallback of marked rows, threads over rows, one row split over
    threads with its partial sums combined) on emulated kernels; on a host that runs the ISA,
    the same bits as the native run."""
    rng = rng_for("emulated-runtime", algorithm, isa)
    batch, names = mixed_fallback_batch(rng, 100)
    split_rows = {
        "uniform": uniform(rng, 3001, 100.0),
        "huge (two-pass fallback)": uniform(rng, 3001, 1e30),
        "first half -inf": np.concatenate([np.full(1500, -np.inf, np.float32),
                                           uniform(rng, 1501, 10.0)]),
        "one NaN": np.where(np.arange(3001) == 2999, np.nan, uniform(rng, 3001, 10.0)),
        "max in the last piece": np.concatenate([uniform(rng, 2990, 10.0),
                                                 np.float32([40.0] * 11)]),
    }
    results = []
    for threads in (1, 2):
        y = softjit.softmax(batch, algorithm=algorithm, isa=isa, threads=threads,
                            out=np.empty_like(batch))
        for row_x, row_y, name in zip(batch, y, names):
            try:
                check_softmax(row_y, row_x, label=(concrete(algorithm, isa), isa, "emulated"))
            except AssertionError as e:
                raise AssertionError(f"emulated {algorithm}/{isa} threads={threads} row "
                                     f"'{name}': {e}") from None
        results.append(("batch", threads, batch, y))
    for name, x in split_rows.items():
        x = x.astype(np.float32)
        y = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=3)
        try:
            check_softmax(y, x, label=(concrete(algorithm, isa), isa, "emulated"))
        except AssertionError as e:
            raise AssertionError(f"emulated {algorithm}/{isa} split row '{name}': {e}") from None
        results.append((name, 3, x, y))
    if isa in HOST_ISAS:  # the same calls on the CPU give the same bits
        rows = emulated_runtime.rows
        emulated_runtime.undo()
        emulated_runtime.forget_calls()
        emulated_runtime.setattr(rows, "SPLIT_ROW_MIN", 1000)
        for name, threads, x, y in results:
            native_y = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads,
                                       out=np.empty_like(x))
            assert np.array_equal(native_y, y, equal_nan=True), name


def test_masked_arrays_are_refused_not_silently_unmasked():
    x = np.ma.masked_array(np.float32([1.0, 2.0, 3.0]), mask=[False, True, False])
    for function in (softjit.softmax, softjit.exp):
        with pytest.raises(TypeError, match=r"masked arrays.*filled\(-numpy.inf\)"):
            function(x)
    filled = softjit.softmax(x.filled(-np.inf))
    assert filled[1] == 0.0 and abs(filled.sum() - 1.0) < 1e-6
