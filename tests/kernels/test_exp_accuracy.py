"""Accuracy of exp over the whole float32 domain, against float64 exp rounded to float32.

Bounds (exp_reference.py): within 2 ULP where the correctly rounded result is normal; where it
is subnormal, within one unit of 2^-149 of it and less than 1.5 units from exp(x) (measured:
the strongest bounds that hold, see SUBNORMAL_ULP); bit-exact +0 / +inf; NaN stays NaN.

    python -m pytest tests/kernels/test_exp_accuracy.py -q              # sampled, seconds
    python -m pytest -m exhaustive tests/kernels/test_exp_accuracy.py -q -s   # every input, minutes

- Sampled (default run): every ISA this host runs natively, through softjit.exp and through each
  registered vexp variant, on > 2*10^6 inputs (uniform random bit patterns, a dense sample of
  [-104, 89], the subnormal-result range, and every special value and cutoff neighbourhood).
  AVX-512 variants the host cannot run go through the emulator on a smaller sample.
- Exhaustive (-m exhaustive): all 2^32 inputs in chunks of 2^24 for every host ISA natively;
  AVX-512 on a host without it through the emulator (all 2^32 emulated would take days): every
  input whose result is subnormal or near it ([-104, -87], 2.2 million) and every 4093rd bit
  pattern.

The measured maxima are printed straight to the terminal (also without -s) and attached to the
test report as user properties.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import softjit
from softjit.runtime import cpu

import runners
from exp_reference import (FLT_MAX, FLT_MIN, FLT_TRUE_MIN, OVERFLOW_CUTOFF, ZERO_CUTOFF,
                           Accuracy, describe, f32_bits, from_bits, reference, sampled_inputs,
                           special_inputs)

SEED = 20200113  # fixed: a failure names inputs that reproduce
RANDOM_BITS = 2 ** 20
DENSE = 2 ** 20
SUBNORMAL_RANGE = 2 ** 18
# the emulator runs ~60,000 to 90,000 elements a second
EMULATED_RANDOM_BITS = 2 ** 15
EMULATED_DENSE = 2 ** 15
EMULATED_SUBNORMAL_RANGE = 2 ** 13

CHUNK = 2 ** 24
EMULATED_STRIDE = 4093  # a prime: ~1.05 million inputs over every exponent, ~15 s per variant
ISA_PARAMS = [pytest.param(isa, id=isa) for isa in cpu.ISAS]


def report(accuracy: Accuracy, capsys, record_property) -> None:
    record_property("exp_accuracy", accuracy.summary())
    record_property("normal_max_ulp", accuracy.normal_max)
    record_property("subnormal_max_units", accuracy.subnormal_max)
    with capsys.disabled():
        print("\n" + accuracy.summary())


def check(accuracy: Accuracy) -> None:
    problems = accuracy.failure_report()
    assert not problems, problems


def require_host_isa(isa: str) -> None:
    if isa not in softjit.host_isas():
        pytest.skip(f"host does not run {isa} natively (host ISAs: "
                    f"{', '.join(softjit.host_isas()) or 'none'}); its kernels are checked "
                    f"through the emulator by the vexp variant tests")


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return sampled_inputs(np.random.default_rng(SEED), RANDOM_BITS, DENSE, SUBNORMAL_RANGE)


@pytest.fixture(scope="module")
def small_sample() -> np.ndarray:
    return sampled_inputs(np.random.default_rng(SEED + 1), EMULATED_RANDOM_BITS, EMULATED_DENSE,
                          EMULATED_SUBNORMAL_RANGE)


def test_sample_is_large_and_covers_every_exponent(sample):
    assert sample.size >= 10 ** 6
    exponents = np.unique((sample.view(np.uint32) >> 23) & 0xFF)
    assert exponents.size == 256, f"exponent fields missing: {sorted(set(range(256)) - set(exponents))}"
    assert np.isnan(sample).sum() >= 10 and np.isinf(sample).sum() >= 2


@pytest.mark.parametrize("isa", ISA_PARAMS)
def test_sampled_accuracy_public_api(isa, sample, capsys, record_property):
    require_host_isa(isa)
    y = softjit.exp(sample, isa=isa)
    r, r64 = reference(sample)
    accuracy = Accuracy(f"softjit.exp isa={isa}, sampled")
    accuracy.add(sample, y, r, r64)
    report(accuracy, capsys, record_property)
    check(accuracy)


@pytest.mark.parametrize("variant", runners.variant_params("vexp"))
def test_sampled_accuracy_variant(variant, sample, small_sample, capsys, record_property):
    how = runners.require(variant)
    x = sample if how == "native" else small_sample
    t0 = time.perf_counter()
    y = runners.vexp(variant, x)
    elapsed = time.perf_counter() - t0
    r, r64 = reference(x)
    accuracy = Accuracy(f"{variant.name} {how}, sampled, {elapsed:.2f} s")
    accuracy.add(x, y, r, r64)
    report(accuracy, capsys, record_property)
    check(accuracy)


def _special_checks(x: np.ndarray, y: np.ndarray) -> list:
    """Exact expectations for special inputs: (what, x, got, expected) of every mismatch."""
    problems = []
    bits_x, bits_y = x.view(np.uint32), y.view(np.uint32)

    def expect(mask, expected_bits, what):
        for i in np.flatnonzero(mask & (bits_y != np.uint32(expected_bits))):
            problems.append(f"{what}: x={describe(x[i])} got {describe(y[i])} expected "
                            f"{describe(from_bits(expected_bits))}")

    one = f32_bits(1.0)
    expect(bits_x == f32_bits(-np.inf), 0x00000000, "exp(-inf) must be +0")
    expect(bits_x == f32_bits(np.inf), 0x7F800000, "exp(+inf) must be +inf")
    expect(bits_x == f32_bits(FLT_MAX), 0x7F800000, "exp(FLT_MAX) must be +inf")
    expect(bits_x == f32_bits(-FLT_MAX), 0x00000000, "exp(-FLT_MAX) must be +0")
    tiny = np.abs(x) <= FLT_MIN  # +-0, subnormals, +-FLT_MIN: exp rounds to exactly 1
    expect(tiny, one, "exp(+-0 / subnormal / FLT_MIN) must be exactly 1")
    above = (x > OVERFLOW_CUTOFF) & np.isfinite(x)
    expect(above, 0x7F800000, "above the overflow cutoff exp must be +inf")
    below = (x < ZERO_CUTOFF) & np.isfinite(x)
    expect(below, 0x00000000, "below the zero cutoff exp must be +0")
    for i in np.flatnonzero(np.isnan(x) & ~np.isnan(y)):
        problems.append(f"NaN in must give NaN: x={describe(x[i])} got {describe(y[i])}")
    return problems


@pytest.mark.parametrize("variant", runners.variant_params("vexp"))
def test_special_values(variant):
    runners.require(variant)
    x = special_inputs()
    y = runners.vexp(variant, x)
    problems = _special_checks(x, y)
    r, _ = reference(x)
    accuracy = Accuracy(f"{variant.name} special values")
    accuracy.add(x, y, r)
    assert not problems and not accuracy.failures, (
        f"{variant.name}: {len(problems)} special-value mismatches\n" + "\n".join(problems[:20])
        + "\n" + accuracy.failure_report())


@pytest.mark.parametrize("isa", ISA_PARAMS)
def test_special_values_public_api(isa):
    require_host_isa(isa)
    x = special_inputs()
    problems = _special_checks(x, softjit.exp(x, isa=isa))
    assert not problems, f"isa={isa}: {len(problems)} mismatches\n" + "\n".join(problems[:20])


def test_cutoffs_are_where_the_reference_changes_regime():
    """The constants the test relies on mean what docs/algorithms.md says of them."""
    r, _ = reference(np.array([OVERFLOW_CUTOFF, np.nextafter(OVERFLOW_CUTOFF, np.float32(np.inf)),
                               ZERO_CUTOFF, np.nextafter(ZERO_CUTOFF, np.float32(-np.inf))],
                              np.float32))
    assert np.isfinite(r[0]) and np.isposinf(r[1])
    assert r[2] > 0 and r[3] == 0
    assert FLT_TRUE_MIN > 0 and FLT_TRUE_MIN / 2 == 0


# ---------------------------------------------------------------------------- exhaustive
def _chunk_is_trivial(chunk: int) -> bool:
    """Chunk c holds bit patterns c*2^24 ... : two exponent fields. From |x| >= 128 on, exp is
    +0, +inf or NaN and the float64 reference is not needed."""
    exponent = ((chunk % 128) * CHUNK) >> 23
    return exponent >= 127 + 7


def _exhaustive_worker(isa: str, chunks: list) -> Accuracy:
    accuracy = Accuracy(f"softjit.exp isa={isa}, all 2^32 inputs")
    base = np.arange(CHUNK, dtype=np.uint32)
    bits = np.empty(CHUNK, np.uint32)
    y = np.empty(CHUNK, np.float32)
    r = np.empty(CHUNK, np.float32)
    r64 = np.empty(CHUNK, np.float64)
    for chunk in chunks:
        np.add(base, np.uint32(chunk * CHUNK), out=bits)
        x = bits.view(np.float32)
        softjit.exp(x, isa=isa, out=y)
        if _chunk_is_trivial(chunk):
            r.fill(0.0 if chunk >= 128 else np.inf)
            nan = np.isnan(x)
            r[nan] = x[nan]
            accuracy.add(x, y, r)
        else:
            reference(x, out64=r64, out=r)
            accuracy.add(x, y, r, r64)
    return accuracy


@pytest.mark.exhaustive
@pytest.mark.parametrize("isa", ISA_PARAMS)
def test_exhaustive_native(isa, capsys, record_property):
    require_host_isa(isa)
    workers = max(1, min(4, os.cpu_count() or 1))
    chunks = list(range(2 ** 32 // CHUNK))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda k: _exhaustive_worker(isa, chunks[k::workers]), range(workers)))
    total = parts[0]
    for part in parts[1:]:
        total.merge(part)
    total.label += f", {time.perf_counter() - t0:.0f} s"
    assert total.inputs == 2 ** 32
    report(total, capsys, record_property)
    check(total)


SUBNORMAL_RESULTS = (np.float32(-87.0), np.float32(-104.0))


def emulated_exhaustive(variant, x: np.ndarray, what: str, capsys, record_property) -> None:
    if runners.is_native(variant):
        pytest.skip(f"{variant.name} runs natively here: test_exhaustive_native covers its ISA")
    runners.require(variant)
    t0 = time.perf_counter()
    y = runners.vexp(variant, x)
    r, r64 = reference(x)
    accuracy = Accuracy(f"{variant.name} emulated, {what}, {time.perf_counter() - t0:.0f} s")
    accuracy.add(x, y, r, r64)
    report(accuracy, capsys, record_property)
    check(accuracy)


@pytest.mark.exhaustive
@pytest.mark.parametrize("variant", runners.variant_params("vexp"))
def test_exhaustive_subnormal_results_emulated(variant, capsys, record_property):
    """Every input in [-104, -87] (2.2 million: every exp result that is subnormal, and the
    bottom of the normal range), through the emulator: the hardest regime, exhaustively."""
    first, last = (int(v.view(np.uint32)) for v in SUBNORMAL_RESULTS)
    x = np.arange(first, last + 1, dtype=np.uint32).view(np.float32)
    emulated_exhaustive(variant, x, "every input in [-104, -87]", capsys, record_property)


@pytest.mark.exhaustive
@pytest.mark.parametrize("variant", runners.variant_params("vexp"))
def test_exhaustive_strided_emulated(variant, capsys, record_property):
    """Every EMULATED_STRIDE-th bit pattern (~1.05 million inputs), through the emulator.

    All 2^32 inputs through a software emulator would take days, so AVX-512 kernels on a host
    without AVX-512 get this strided subset; on an AVX-512 host they run natively above."""
    x = np.arange(0, 2 ** 32, EMULATED_STRIDE, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([x, special_inputs()])
    emulated_exhaustive(variant, x, f"every {EMULATED_STRIDE}th input", capsys, record_property)
