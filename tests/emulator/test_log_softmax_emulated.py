"""The log_softmax modules' drivers (reduce and apply) through softjit.codegen.emulator on
exactly-sized buffers (any access past them faults): every row length up to two unrolled steps
and a block, for AVX-512 and AVX2, checked against the float64 reference through the same host
arithmetic softjit.log_softmax uses, and bit for bit against the CPU where the host runs the ISA."""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softjit.codegen import variants
from softjit.runtime import log_softmax as runtime

from log_softmax_checks import check_log_softmax, check_logsumexp

HOST_ISAS = softjit.host_isas()
LOG_SOFTMAX_VARIANTS = [v for v in variants.REGISTRY if v.op == "log_softmax"
                        and v.element == "f32"]  # 16-bit: test_half_emulated.py


def emulated_reduce(emulator, variant, x2d):
    rows, n = x2d.shape
    states = np.full((rows, 4), 7.0, np.float32)
    status = np.full(rows, -5, np.int32)
    marked = emulator.call(variant, ("ro", x2d), n, rows, 4 * n, states, status,
                           symbol=variant.reduce_symbol)
    return marked, states, status


def emulated_apply(emulator, variant, x2d, states):
    rows, n = x2d.shape
    y = np.full((rows, n), 7.0, np.float32)
    strides = np.array([4 * n, 4 * n], np.int64)
    emulator.call(variant, ("ro", x2d), y, n, rows, ("ro", strides), ("ro", states),
                  symbol=variant.apply_symbol)
    return y


def host_states(x2d, variant, states, status):
    """The host's part of softjit.log_softmax on emulated reduce states: c per row and the apply
    states (a three-pass module's states, or two-pass states with no row marked)."""
    three_pass = np.full(x2d.shape[0], variant.algorithm == "three-pass")
    assert not status[~three_pass].any()
    s = states.astype(np.float64)
    with np.errstate(all="ignore"):
        log_total = np.log(s[:, 2])
        c = np.where(three_pass, s[:, 0] + log_total, log_total + s[:, 0] * runtime.LN2)
    high = np.where(three_pass, states[:, 0], c.astype(np.float32))
    low = np.where(three_pass, log_total.astype(np.float32),
                   (c - c.astype(np.float32)).astype(np.float32))
    apply_states = np.zeros_like(states)
    apply_states[:, 0], apply_states[:, 1] = high, low
    return c, apply_states


def row_lengths(variant):
    step = max(variant.reduce_unroll, variant.output_unroll) * variant.target.lanes
    return list(range(1, 2 * step + 2)) + [variant._softmax().block + 3]


@pytest.mark.parametrize("variant", LOG_SOFTMAX_VARIANTS, ids=lambda v: v.name)
def test_emulated_every_row_length(variant, emulator):
    rng = np.random.default_rng(21)
    for n in row_lengths(variant):
        x = np.stack([rng.uniform(-1, 1, n), rng.uniform(-100, 100, n),
                      rng.standard_normal(n) * 1e3]).astype(np.float32)
        marked, states, status = emulated_reduce(emulator, variant, x)
        assert marked == 0 and not status.any(), (n, status)
        c, apply_states = host_states(x, variant, states, status)
        y = emulated_apply(emulator, variant, x, apply_states)
        check_logsumexp(c.astype(np.float32), x)
        check_log_softmax(y, x)
        if variant.isa in HOST_ISAS:  # the emulator and the CPU agree bit for bit
            module = runtime._Module(variant)
            native_states = np.full_like(states, 7.0)
            module.reduce(x, native_states, np.empty(3, np.int32))
            assert np.array_equal(native_states, states, equal_nan=True)
            native_y = np.empty_like(y)
            module.apply(x, native_y, apply_states)
            assert np.array_equal(native_y, y, equal_nan=True)


@pytest.mark.parametrize("variant", [v for v in LOG_SOFTMAX_VARIANTS if v.algorithm == "two-pass"
                                     and not v.nontemporal], ids=lambda v: v.name)
def test_emulated_two_pass_marks_special_rows(variant, emulator):
    x = np.array([[1, np.nan, 2, 3, 4], [1, np.inf, 2, 3, 4], [-np.inf] * 5, [3e6, 0, 1, 2, 3],
                  [1, 2, 3, 4, 5]], np.float32)
    marked, _, status = emulated_reduce(emulator, variant, x)
    assert marked == 4 and status.tolist() == [1, 1, 1, 1, 0]
