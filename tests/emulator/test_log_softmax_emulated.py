"""The log_softmax modules' drivers (logsumexp's reduce driver, the log_softmax row driver and
softjit.dask's apply driver)
through softjit.codegen.emulator on exactly-sized buffers (any access past them faults): every
row length up to two unrolled steps and a block, special rows (the two-pass module's three-pass
fallback, in the same call), for AVX-512 and AVX2, checked against the float64 reference, and
bit for bit against the CPU where the host runs the ISA."""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softjit.codegen import variants
from softjit.runtime import bindings, log_softmax as runtime

from log_softmax_checks import check_log_softmax, check_logsumexp, reference_logsumexp

HOST_ISAS = softjit.host_isas()
LOG_SOFTMAX_VARIANTS = [v for v in variants.REGISTRY if v.op == "log_softmax"
                        and v.element == "f32"  # 16-bit: test_half_emulated.py
                        and not v.scaled]  # scaled: tests/kernels/test_scaled_log_softmax.py


def emulated_reduce(emulator, variant, x2d):
    rows, n = x2d.shape
    states = np.full(rows, 7.0, runtime.STATE_DTYPE)
    status = np.full(rows, -5, np.int32)
    marked = emulator.call(variant, ("ro", x2d), n, rows, 4 * n, states.view(np.float32),
                           status, symbol=variant.logsumexp_symbol)
    return marked, states, status


def emulated_pass_states(emulator, variant, x2d):
    """softjit.dask's reduce driver: each row's pass state, rows to recompute marked."""
    rows, n = x2d.shape
    states = np.full(rows, 7.0, bindings.PASS_STATE_DTYPE)
    status = np.full(rows, -5, np.int32)
    marked = emulator.call(variant, ("ro", x2d), n, rows, 4 * n, states.view(np.float32),
                           status, symbol=variant.reduce_symbol)
    return marked, states, status


def emulated_log_softmax(emulator, variant, x2d):
    rows, n = x2d.shape
    y = np.full((rows, n), 7.0, np.float32)
    states = np.full(rows, 7.0, runtime.STATE_DTYPE)
    strides = np.array([4 * n, 4 * n], np.int64)
    emulator.call(variant, ("ro", x2d), y, n, rows, ("ro", strides), states.view(np.float32),
                  symbol=variant.log_softmax_symbol)
    return y, states


def emulated_apply(emulator, variant, x2d, states):
    """The apply driver (softjit.dask's): the output pass with states the caller made."""
    rows, n = x2d.shape
    y = np.full((rows, n), 7.0, np.float32)
    strides = np.array([4 * n, 4 * n], np.int64)
    emulator.call(variant, ("ro", x2d), y, n, rows, ("ro", strides),
                  ("ro", states.view(np.float32)), symbol=variant.apply_symbol)
    return y


def row_lengths(variant):
    step = max(variant.reduce_unroll, variant.output_unroll) * variant.target.lanes
    return list(range(1, 2 * step + 2)) + [variant._softmax().block + 3]


def _check_native(variant, x, states, y):
    """The CPU's drivers give the emulator's bits."""
    module = runtime._Module(variant)
    native_states = np.full_like(states, 7.0)
    module.reduce(x, native_states, np.empty(x.shape[0], np.int32))
    assert np.array_equal(native_states.view(np.uint32), states.view(np.uint32))
    native_y = np.empty_like(y)
    module.log_softmax(x, native_y, np.empty_like(states))
    assert np.array_equal(native_y, y, equal_nan=True)


@pytest.mark.parametrize("variant", LOG_SOFTMAX_VARIANTS, ids=lambda v: v.name)
def test_emulated_every_row_length(variant, emulator):
    rng = np.random.default_rng(21)
    for n in row_lengths(variant):
        x = np.stack([rng.uniform(-1, 1, n), rng.uniform(-100, 100, n),
                      rng.standard_normal(n) * 1e3]).astype(np.float32)
        marked, states, status = emulated_reduce(emulator, variant, x)
        assert marked == 0 and status.tolist() == [0, 0, 0], (n, status)
        c = states["log_sum_exp"]
        check_logsumexp(c.astype(np.float32), x)
        # float64 c: the row sums' error only (absolute, whatever |c| is)
        assert np.max(np.abs(c - reference_logsumexp(x))) <= 2e-6, n
        y, row_states = emulated_log_softmax(emulator, variant, x)
        assert np.array_equal(row_states.view(np.uint32), states.view(np.uint32))
        check_log_softmax(y, x)
        assert np.array_equal(emulated_apply(emulator, variant, x, states), y)
        if variant.isa in HOST_ISAS:
            _check_native(variant, x, states, y)


SPECIAL_ROWS = np.array([[1, np.nan, 2, 3, 4], [1, np.inf, 2, 3, 4], [-np.inf] * 5,
                         [3e6, 0, 1, 2, 3], [1, 2, 3, 4, 5], [-np.inf, 2, -np.inf, 0, 1],
                         [np.nan, np.inf, -np.inf, 0, 1], [-3e38, -3e38, 1e5, 0, 0]], np.float32)


@pytest.mark.parametrize("variant", [v for v in LOG_SOFTMAX_VARIANTS if not v.nontemporal],
                         ids=lambda v: v.name)
def test_emulated_special_rows(variant, emulator):
    """Rows two-pass cannot take are reduced again with three passes within the same call
    (marked in status; a three-pass module marks the rows whose c is NaN); their c, and every
    log_softmax, match the reference's special values."""
    x = SPECIAL_ROWS
    marked, states, status = emulated_reduce(emulator, variant, x)
    if variant.algorithm == "two-pass":
        assert marked == 5 and status.tolist() == [1, 1, 1, 1, 0, 0, 1, 0]
    else:  # the rows whose c is NaN: the host gives them their special values
        assert marked == 4 and status.tolist() == [1, 1, 1, 0, 0, 0, 1, 0]
    c = states["log_sum_exp"]
    want = reference_logsumexp(x)
    finite = np.isfinite(want)
    assert np.all(np.isnan(c[~finite])), c  # NaN, +inf and only -inf rows: NaN for the host
    assert np.max(np.abs(c[finite] - want[finite])) <= 2e-6
    y, _ = emulated_log_softmax(emulator, variant, x)
    check_log_softmax(y, x)
    if variant.isa in HOST_ISAS:
        _check_native(variant, x, states, y)


@pytest.mark.parametrize("variant", [v for v in LOG_SOFTMAX_VARIANTS if not v.nontemporal],
                         ids=lambda v: v.name)
def test_emulated_reduce_driver_leaves_pass_states(variant, emulator):
    """softjit.dask's reduce driver: the module's own reduction, each row's pass state (two-pass:
    sum = v * 2^e; three-pass: m and sum(exp(x - m))), rows two-pass gives back marked and left
    for the caller; the unmarked rows' states give the logsumexp driver's c."""
    x = SPECIAL_ROWS
    marked, states, status = emulated_pass_states(emulator, variant, x)
    _, lse_states, _ = emulated_reduce(emulator, variant, x)
    first, total = states["max_or_exponent"].astype(np.float64), states["sum"].astype(np.float64)
    if variant.algorithm == "two-pass":
        assert marked == 5 and status.tolist() == [1, 1, 1, 1, 0, 0, 1, 0]
        c = np.log(total) + first * np.log(2.0)
    else:
        assert marked == 0 and not status.any()
        with np.errstate(invalid="ignore"):
            c = first + np.log(total)
    done = (status == 0) & np.isfinite(c)
    assert done.sum() >= 2
    assert np.allclose(c[done], lse_states["log_sum_exp"][done], rtol=1e-13, atol=1e-13)
    if variant.isa in HOST_ISAS:
        native = np.full_like(states, 7.0)
        native_status = np.full(x.shape[0], -5, np.int32)
        function = bindings.function(variant, variant.reduce_symbol)
        p = bindings.pointer
        assert function(p(x), x.shape[1], x.shape[0], x.strides[0], p(native),
                        p(native_status)) == marked
        assert np.array_equal(native.view(np.uint32), states.view(np.uint32))
