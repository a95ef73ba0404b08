"""README: exp is "within 1 unit of 2^-149 of [the correctly rounded result] for subnormal
results". In the default run, every float32 input whose exp is subnormal or near it (all 2.2
million inputs in [-104, -87]) through every vexp variant this host runs natively, checked
against the float64 exp: the correctly rounded result (at most SUBNORMAL_ULP units off) and
the exact value (less than SUBNORMAL_EXACT_UNITS units off), normal results within 2 ULP.

A single polynomial coefficient one unit in the last place off moves a handful of these inputs
(9 in 2.2 million for AVX2) past the bound: a random sample can miss them, this range cannot.
Variants of an ISA the host lacks run this range through the emulator only under
`-m exhaustive` (test_exp_accuracy.py): 2.2 million emulated inputs take about a minute.
"""
from __future__ import annotations

import numpy as np
import pytest

import runners
from exp_reference import Accuracy, reference

FIRST, LAST = np.float32(-87.0), np.float32(-104.0)  # negative: bit patterns grow downwards


@pytest.fixture(scope="module")
def subnormal_range() -> np.ndarray:
    first, last = int(FIRST.view(np.uint32)), int(LAST.view(np.uint32))
    return np.arange(first, last + 1, dtype=np.uint32).view(np.float32)


@pytest.mark.parametrize("variant", runners.variant_params("vexp"))
def test_every_input_with_a_subnormal_result(variant, subnormal_range):
    runners.require_native(variant)
    x = subnormal_range
    y = runners.vexp(variant, x)
    r, r64 = reference(x)
    accuracy = Accuracy(f"{variant.name}, every input in [-104, -87]")
    accuracy.add(x, y, r, r64)
    assert accuracy.subnormal > 2 * 10 ** 6, accuracy.summary()
    assert not accuracy.failures, accuracy.failure_report()
