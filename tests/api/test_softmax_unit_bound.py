"""No softmax output exceeds 1.0, and a row whose only finite entry is x (every other entry -inf,
or a one-element row) gives exactly 1.0 there and +0.0 elsewhere: every algorithm, every ISA,
natively on the host's ISAs and through the emulator (softjit.codegen.emulate) on both.

Rows are random: values of any magnitude the two-pass kernels take (|x| < 2^20), with random -inf
masks, including masks that leave one entry, and one-element rows. The batch of rows goes through
the row driver in one call, as softjit.softmax sends it.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import softjit

from softmax_cases import emulated_softmax

ALGORITHMS = ("two-pass", "three-pass-reload", "three-pass-recompute")
EMULATED_ISAS = ("avx512f", "avx2")
HOST_ISAS = softjit.host_isas()

values = st.one_of(st.floats(-1e6, 1e6, width=32), st.floats(-100.0, 100.0, width=32),
                   st.sampled_from([0.0, 87.3, 88.7, -87.3, -103.98, 1e-30, 3e5]))


@st.composite
def masked_batches(draw, max_rows: int, max_n: int):
    """(rows, n) float32: random values, each row masked with -inf by its own random mask; some
    rows keep exactly one entry."""
    n = draw(st.integers(1, max_n))
    rows = draw(st.integers(1, max_rows))
    x = np.array(draw(st.lists(values, min_size=rows * n, max_size=rows * n)),
                 np.float32).reshape(rows, n)
    for r in range(rows):
        kind = draw(st.sampled_from(("none", "random", "one-left")))
        if kind == "random":
            mask = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
            if mask.all():
                mask[draw(st.integers(0, n - 1))] = False
            x[r, mask] = -np.inf
        elif kind == "one-left":
            keep = draw(st.integers(0, n - 1))
            x[r, np.arange(n) != keep] = -np.inf
    return x


def check_unit_bound(x: np.ndarray, y: np.ndarray, label: str) -> None:
    assert np.all(y <= 1.0), (
        f"{label}: output above 1: {y[y > 1.0][:4].tolist()} in rows "
        f"{np.flatnonzero((y > 1.0).any(axis=1))[:4].tolist()}")
    single = np.isfinite(x).sum(axis=1) == 1
    for r in np.flatnonzero(single):
        expected = np.where(np.isfinite(x[r]), np.float32(1.0), np.float32(0.0))
        assert np.array_equal(y[r], expected), (
            f"{label}: row {x[r].tolist()} with one finite entry gave {y[r].tolist()}")


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=masked_batches(max_rows=12, max_n=70))
def test_native_outputs_stay_at_most_one(algorithm, isa, x):
    y = softjit.softmax(x, algorithm=algorithm, isa=isa)
    check_unit_bound(x, y, f"{algorithm} {isa}")


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_native_one_finite_entry_rows_are_exactly_one(algorithm, isa):
    """Many single-entry rows at once (the issue's 20,000 one-element rows, and the same values
    inside a -inf mask)."""
    x = np.random.default_rng(20).uniform(-88.0, 88.0, 20_000).astype(np.float32)
    single = softjit.softmax(x.reshape(-1, 1), algorithm=algorithm, isa=isa)
    assert np.array_equal(single, np.ones_like(single)), \
        f"{np.count_nonzero(single != 1.0)} of 20000 one-element rows were not 1.0"
    masked = np.full((x.size, 5), -np.inf, np.float32)
    masked[np.arange(x.size), np.arange(x.size) % 5] = x
    y = softjit.softmax(masked, algorithm=algorithm, isa=isa)
    assert np.array_equal(y, np.isfinite(masked).astype(np.float32))
    for row in ([87.3], [2.0, -np.inf, -np.inf, -np.inf]):
        y = softjit.softmax(np.array(row, np.float32), algorithm=algorithm, isa=isa)
        assert np.array_equal(y, np.isfinite(row).astype(np.float32)), f"{row} gave {y}"


@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(x=masked_batches(max_rows=6, max_n=40))
def test_emulated_outputs_stay_at_most_one(emulator, algorithm, isa, x):
    _, _, y = emulated_softmax(emulator, algorithm, isa, x)
    check_unit_bound(x, y, f"{algorithm} {isa} (emulated)")
