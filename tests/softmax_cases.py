"""Inputs and parameters the softmax tests share: the ISAs and algorithms, which ones this host
runs, row lengths around the loop steps, seeded generators, rows of special values, batches
mixing normal rows with rows the two-pass kernels must hand back, and the row-driver calls
(natively, and in the emulator with the runtime's recomputation of marked rows).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import softjit
from softjit.codegen import variants

import drivers
from softmax_checks import FLT_MAX, uniform


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


def rng_for(*key) -> np.random.Generator:
    """A generator seeded by the test's parameters (stable across runs and hash seeds)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


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


def call_native_driver(algorithm, isa, x2d, y2d=None, nontemporal=False):
    """Call a variant's row driver as the runtime does (drivers.call): (marked, status, y); y
    holds 7.0 wherever the driver did not write."""
    v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
    if y2d is None:
        y2d = np.full(x2d.shape, 7.0, np.float32)
    marked, status = drivers.call(v, x2d, y2d)
    return marked, status, y2d


# ---------------------------------------------------------------- AVX-512 through the emulator
def emulated_driver(emulator, algorithm, isa, x2d, nontemporal=False):
    """Run a variant's row driver in the emulator on exactly-sized buffers (any access past them
    faults), called as the Python layer calls it natively: (marked, status, y); rows the driver
    left alone hold 7.0."""
    v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
    x2d = np.array(x2d, np.float32, order="C")  # a buffer of its own, exactly sized
    x_before = x2d.copy()
    y2d = np.full(x2d.shape, 7.0, np.float32)
    marked, status = drivers.call(v, x2d, y2d, emulator=emulator)
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
