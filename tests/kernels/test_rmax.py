"""The rmax kernels: *max = the NaN-propagating maximum of x[0:n], -inf for n == 0.

Every registered rmax variant, natively on the host's ISAs and through the emulator otherwise,
at every length 0 .. 2*U+1 (U elements per unrolled step), so that each value passes through the
unrolled loop, the one-vector loop and the masked tail, and masked lanes must never count.
"""
from __future__ import annotations

import numpy as np
import pytest

import runners
from exp_reference import describe
from runners import aligned

RMAX = runners.variant_params("rmax")
NAN_PAYLOADS = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7FA5A5A5],
                        np.uint32).view(np.float32)


def expected_max(x: np.ndarray) -> np.float32:
    if x.size == 0:
        return np.float32(-np.inf)
    if np.isnan(x).any():
        return np.float32(np.nan)
    return x.max()


def check(variant, x: np.ndarray, what: str, n: int | None = None) -> None:
    n = x.size if n is None else n
    got = runners.rmax(variant, x, n)
    want = expected_max(x[:n])
    if np.isnan(want):
        assert np.isnan(got), f"{variant.name} {what} n={n}: got {describe(got)}, expected NaN"
    else:
        assert got == want and np.signbit(got) == np.signbit(want), (
            f"{variant.name} {what} n={n}: got {describe(got)}, expected {describe(want)}")


def top(variant) -> int:
    return 2 * runners.unroll_elements(variant) + 1


@pytest.mark.parametrize("variant", RMAX)
def test_every_length(variant):
    runners.require(variant)
    rng = np.random.default_rng(1)
    pool = rng.uniform(-1000, 1000, top(variant)).astype(np.float32)
    for n in range(top(variant) + 1):
        check(variant, pool, "uniform", n)
        check(variant, pool[:n].copy(), "uniform, exact-size array")


@pytest.mark.parametrize("variant", RMAX)
def test_every_length_all_negative(variant):
    """Masked tail lanes (zero-filled by VMASKMOVPS) must not count as 0 in a negative row."""
    runners.require(variant)
    rng = np.random.default_rng(2)
    pool = -rng.uniform(1, 1000, top(variant)).astype(np.float32)
    for n in range(top(variant) + 1):
        check(variant, pool[:n].copy(), "all negative")
        check(variant, np.full(n, np.float32(-3.5)), "constant -3.5")


@pytest.mark.parametrize("variant", RMAX)
def test_maximum_at_every_position(variant):
    runners.require(variant)
    n = top(variant)
    base = np.random.default_rng(3).uniform(-10, 10, n).astype(np.float32)
    for i in range(n):
        x = base.copy()
        x[i] = np.float32(100.0)
        assert runners.rmax(variant, x) == np.float32(100.0), f"{variant.name}: max at {i} of {n} missed"


def _nan_lengths(variant) -> list:
    lanes, u = variant.target.lanes, runners.unroll_elements(variant)
    return sorted({1, lanes - 1, lanes, lanes + 3, u - 1, u + lanes + 3, top(variant)})


@pytest.mark.parametrize("variant", RMAX)
def test_nan_at_every_position(variant):
    runners.require(variant)
    rng = np.random.default_rng(4)
    for n in _nan_lengths(variant):
        base = rng.uniform(-10, 10, n).astype(np.float32)
        for i in range(n):
            x = base.copy()
            x[i] = NAN_PAYLOADS[i % NAN_PAYLOADS.size]
            got = runners.rmax(variant, x)
            assert np.isnan(got), (
                f"{variant.name} n={n}: NaN {describe(x[i])} at index {i} lost, got {describe(got)}")


@pytest.mark.parametrize("variant", RMAX)
def test_nan_beats_infinities(variant):
    runners.require(variant)
    n = top(variant)
    for i in (0, n // 2, n - 1):
        for j in (0, n // 3, n - 1):
            for fill in (np.inf, -np.inf):
                x = np.full(n, np.float32(fill))
                x[j] = np.float32(np.inf)
                x[i] = np.float32(np.nan)
                got = runners.rmax(variant, x)
                assert np.isnan(got), f"{variant.name} NaN at {i}, +inf at {j}, rest {fill}: {got!r}"


@pytest.mark.parametrize("variant", RMAX)
def test_infinities(variant):
    runners.require(variant)
    for n in range(1, top(variant) + 1):
        check(variant, np.full(n, np.float32(-np.inf)), "all -inf")
        x = np.full(n, np.float32(-np.inf))
        x[n // 2] = np.float32(-1e30)
        check(variant, x, "-inf row with one finite value")
        x = np.random.default_rng(n).uniform(-5, 5, n).astype(np.float32)
        x[(7 * n) // 11] = np.float32(np.inf)
        check(variant, x, "one +inf")


@pytest.mark.parametrize("variant", RMAX)
def test_mixed_special_values(variant):
    runners.require(variant)
    rng = np.random.default_rng(5)
    specials = np.array([np.inf, -np.inf, 0.0, -0.0, 2.0 ** -149, -(2.0 ** -149),
                         np.finfo(np.float32).max, -np.finfo(np.float32).max,
                         np.finfo(np.float32).tiny, 1.0, -1.0], np.float32)
    for trial in range(60):
        n = int(rng.integers(1, top(variant) + 1))
        x = rng.choice(specials, n)
        if trial % 3 == 0:
            x[rng.integers(0, n)] = NAN_PAYLOADS[trial % NAN_PAYLOADS.size]
        if trial % 3 == 1:
            x = x[~np.isposinf(x)] if (~np.isposinf(x)).any() else x
        got = runners.rmax(variant, x)
        want = expected_max(x)
        ok = np.isnan(got) if np.isnan(want) else got == want
        assert ok, f"{variant.name} {x.tolist()}: got {describe(got)}, expected {describe(want)}"


@pytest.mark.parametrize("variant", RMAX)
def test_signed_zeros(variant):
    runners.require(variant)
    for n in range(1, top(variant) + 1, 3):
        x = np.full(n, np.float32(-0.0))
        got = runners.rmax(variant, x)
        assert got == 0 and np.signbit(got), f"{variant.name} n={n}: all -0.0 gave {describe(got)}"
        x[n // 2] = np.float32(0.0)
        assert runners.rmax(variant, x) == 0
        y = np.concatenate([np.full(n, np.float32(-7.0)), [np.float32(-0.0)]])
        assert runners.rmax(variant, y) == 0


@pytest.mark.parametrize("variant", RMAX)
def test_unaligned(variant):
    runners.require(variant)
    n = top(variant) + 2
    pool = np.random.default_rng(6).uniform(-50, 50, n).astype(np.float32)
    for offset in range(16):
        x = aligned(n, offset)
        x[...] = pool
        for m in (n, n - 1, n - variant.target.lanes - 3):
            check(variant, x, f"offset {offset} floats", m)


@pytest.mark.parametrize("n", [100_000 + 3, 1_000_000])
@pytest.mark.parametrize("variant", RMAX)
def test_large(variant, n):
    runners.require(variant)
    rng = np.random.default_rng(n)
    x = rng.uniform(-1e6, 1e6, n).astype(np.float32)
    check(variant, x, "large")
    x[n - 5] = np.float32(3e6)
    check(variant, x, "large, max near the end")
    x[n // 3] = np.float32(np.nan)
    check(variant, x, "large, NaN inside")
