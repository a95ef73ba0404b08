"""The float32 three-pass log_softmax's sum of exp(x - m) (codegen/kernels/sumexp.py): its
constants, each term against exp in float64 over the whole range the pass takes, and rows whose
sums the cheaper exp could get wrong (many terms far below the max, terms near the clamp)."""
from __future__ import annotations

import struct

import numpy as np
import pytest

import softjit
from softjit.codegen import variants
from softjit.codegen.kernels import sumexp
from softjit.runtime import bindings

from log_softmax_checks import check_log_softmax, check_logsumexp

HOST_ISAS = softjit.host_isas()
# every term's relative error (module docstring of sumexp: 2.41e-7 reduction, 6e-8 table,
# 2.8e-8 polynomial, three float32 roundings of f, s * f and t)
TERM_ERROR = 5e-7
LANES = {"avx512f": 16, "avx2": 8}


def _f32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def test_polynomial_meets_its_stated_error_on_the_reduced_range():
    t = np.linspace(-sumexp.T_MAX, sumexp.T_MAX, 200_001)
    p = 1 + t * (sumexp.C1 + t * (sumexp.C2 + sumexp.C3 * t))
    assert np.max(np.abs(p / np.exp(t) - 1)) <= sumexp.P3_ERROR


@pytest.mark.parametrize("lanes", sorted(LANES.values()))
def test_the_reduced_argument_stays_in_range_and_the_scales_normal(lanes):
    values = sumexp.constant_values(lanes)
    assert values["log2e_xl"] == _f32(lanes * np.log2(np.e))
    # the largest |N| the clamp lets through, and |t| there: half a step of L log2e' past the
    # rounding, plus the one-constant reduction's error
    n_max = -round(sumexp.D_MIN * values["log2e_xl"]) + 1
    ln2_step = np.log(2) / lanes
    assert (0.5 + n_max * 2.0 ** -24) * ln2_step + n_max * abs(
        -values["minus_ln2_xl"] - ln2_step) < sumexp.T_MAX
    assert n_max <= 126 * lanes  # the exponent field of every 2^(N/L) stays >= 1


@pytest.mark.parametrize("lanes", sorted(LANES.values()))
def test_table_words_are_two_to_the_j_over_l_less_the_index_bits(lanes):
    for j, word in enumerate(sumexp.table(lanes)):
        value = struct.unpack("<f", struct.pack("<I", word + (j << sumexp.shift(lanes))))[0]
        assert value == _f32(2.0 ** (j / lanes)), j


def _sum_pass(isa: str, store: bool):
    variant = variants.REGISTRY.log_softmax("three-pass", isa)
    passes = variant._sum_passes()
    return variant, bindings.function(variant, passes[1 if store else 0].symbol)


def _native(isa: str) -> None:
    if isa not in HOST_ISAS:
        pytest.skip(f"this host does not run {isa} (the emulator tests cover it)")


@pytest.mark.parametrize("isa", ["avx512f", "avx2"])
def test_every_term_is_within_its_bound_of_exp(isa):
    """A vector of copies of one d = x - m: the sum is L times one term exactly (one term per
    lane, float64 lane sums), so each term is read back and compared with exp(d)."""
    _native(isa)
    _, run = _sum_pass(isa, store=False)
    state = np.zeros(1, bindings.PASS_STATE_DTYPE)
    rng = np.random.default_rng(5)
    ds = np.concatenate([np.linspace(-60.0, 0.0, 6001), rng.uniform(-60.0, 0.0, 4000),
                         -np.ldexp(1.0, -np.arange(1, 40)), [0.0, -1e-30, -0.3465736, -0.0108]])
    ds = ds.astype(np.float32)
    lanes = LANES[isa]
    x = np.empty(lanes, np.float32)
    terms = np.empty(len(ds))
    for i, d in enumerate(ds):
        x[:] = d
        state["max_or_exponent"] = 0.0
        run(bindings.pointer(x), bindings.pointer(x), lanes, bindings.pointer(state))
        terms[i] = float(state["sum"][0]) / lanes
    error = np.abs(terms / np.exp(ds.astype(np.float64)) - 1)
    worst = int(np.argmax(error))
    assert error[worst] <= TERM_ERROR, (float(ds[worst]), float(error[worst]))


@pytest.mark.parametrize("isa", ["avx512f", "avx2"])
def test_the_stored_pass_sums_what_the_plain_one_sums_and_stores_x_minus_m(isa):
    _native(isa)
    _, plain = _sum_pass(isa, store=False)
    _, stored = _sum_pass(isa, store=True)
    rng = np.random.default_rng(9)
    for n in (1, 15, 17, 130, 1000, 5003):
        x = (rng.standard_normal(n) * 20).astype(np.float32)
        x[::7] = -np.inf
        m = np.float32(x.max())
        states = np.zeros(2, bindings.PASS_STATE_DTYPE)
        states["max_or_exponent"] = m
        y = np.full(n, 7.0, np.float32)
        plain(bindings.pointer(x), bindings.pointer(y), n, bindings.pointer(states[:1]))
        assert np.all(y == 7.0)  # the plain pass writes nothing
        stored(bindings.pointer(x), bindings.pointer(y), n, bindings.pointer(states[1:]))
        assert states[0].tobytes() == states[1].tobytes()
        with np.errstate(invalid="ignore"):
            assert np.array_equal(y, x - m, equal_nan=True)


def _rows_far_below_the_max(n: int, rng) -> np.ndarray:
    """Rows whose sums the terms far below the max make up: thousands of terms at -10 to -20
    (together larger than the max's own 1), terms spread over the whole clamp range, terms at
    and around the clamp (-87: N = -4017, the table scale's smallest normal exponent near), past
    it (-87.4, -100, -104, -inf), and a row of near-equal terms."""
    rows = np.empty((5, n), np.float32)
    rows[0] = rng.uniform(-20.0, -10.0, n)
    rows[1] = rng.uniform(-87.5, 0.0, n)
    rows[2] = rng.choice(np.array([-86.9, -87.0, -87.1, -87.33, -87.4, -88.0, -100.0, -104.0,
                                   -np.inf, -60.0, -30.0], np.float32), n)
    rows[3] = rng.uniform(-1e-3, 0.0, n)
    rows[4] = rng.uniform(-0.35, 0.35, n) - 12.0
    for r in range(5):
        rows[r, rng.integers(0, n)] = 0.0
    return rows * np.float32(1.0) + np.float32(1234.5)  # a large max: x - m exact near it


@pytest.mark.parametrize("isa", ["avx512f", "avx2"])
def test_rows_whose_sum_lies_in_the_small_terms(isa):
    _native(isa)
    rng = np.random.default_rng(11)
    for n in (17, 1000, 100_003):
        x = _rows_far_below_the_max(n, rng)
        for algorithm in ("three-pass", "auto"):
            y = softjit.log_softmax(x, algorithm=algorithm, isa=isa)
            check_log_softmax(y, x)
            out = x.copy()
            softjit.log_softmax(out, algorithm=algorithm, isa=isa, out=out)
            assert np.array_equal(out, y)
        check_logsumexp(softjit.logsumexp(x, isa=isa), x)


@pytest.mark.parametrize("isa", ["avx512f", "avx2"])
def test_rminmax_leaves_the_max_and_the_min_at_every_tail(isa):
    _native(isa)
    variant = variants.REGISTRY.log_softmax("three-pass", isa)
    run = bindings.function(variant, variant.three_pass_passes[0].symbol)
    rng = np.random.default_rng(3)
    state = np.zeros(1, bindings.PASS_STATE_DTYPE)
    for n in list(range(1, 70)) + [1000, 4099]:
        x = rng.uniform(-50.0, 50.0, n).astype(np.float32)
        run(bindings.pointer(x), bindings.pointer(x), n, bindings.pointer(state))
        assert state["max_or_exponent"][0] == x.max() and state[sumexp_state_min()][0] == x.min()


def sumexp_state_min() -> str:
    """The state field rminmax leaves the minimum in."""
    return {offset: name for name, (dtype, offset) in bindings.PASS_STATE_DTYPE.fields.items()}[
        sumexp.STATE_MIN]


@pytest.mark.parametrize("isa", ["avx512f", "avx2"])
def test_rows_without_the_clamp_sum_what_the_clamped_loop_sums(isa):
    """A row whose min - max is at least D_MIN skips the clamp; the same row with one -inf
    more takes the clamped loop, whose extra term (about 1.6e-38) is below the sum's rounding:
    the same c bit for bit, and the same log_softmax. Spreads at and around -87 pick either
    loop; NaN rows of a small spread stay NaN."""
    _native(isa)
    rng = np.random.default_rng(13)
    for spread in (1.0, 30.0, 86.99, 87.0, 87.01, 87.5, 100.0):
        for n in (5, 100, 5000):
            x = rng.uniform(-spread, 0.0, n).astype(np.float32) + np.float32(3.0)
            x[0], x[-1] = np.float32(3.0), np.float32(3.0) - np.float32(spread)
            with_inf = np.append(x, np.float32(-np.inf))
            c = softjit.logsumexp(x, isa=isa, dtype=np.float64)
            assert c == softjit.logsumexp(with_inf, isa=isa, dtype=np.float64), (spread, n)
            y = softjit.log_softmax(x, algorithm="three-pass", isa=isa)
            assert np.array_equal(y, softjit.log_softmax(with_inf, algorithm="three-pass",
                                                         isa=isa)[:n])
            check_log_softmax(y, x)
            x[n // 2] = np.nan
            assert np.isnan(softjit.log_softmax(x, algorithm="three-pass", isa=isa)).all()
            assert np.isnan(softjit.logsumexp(x, isa=isa))
