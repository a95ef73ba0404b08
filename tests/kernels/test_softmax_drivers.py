"""The softmax row drivers called directly, as the runtime calls them (the driver ABI): which
rows they mark for recomputation, every row length at every alignment with rows a padded
stride apart, nothing written outside the rows, x never modified.
"""
from __future__ import annotations

import numpy as np
import pytest

from softjit.codegen import variants
from softjit.runtime import bindings

from softmax_checks import check_softmax, needs_three_pass, uniform
from softmax_cases import (ALGORITHMS, ISAS, native, skip_unregistered_nontemporal, row_lengths,
                           rng_for, mixed_fallback_batch, call_native_driver)


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


# The scaled drivers: the same row lengths and offsets in tests/kernels/test_scaled_kernels.py,
# bit for bit against these.
SOFTMAX_VARIANTS = [v for v in variants.VARIANTS if v.op == "softmax" and v.element == "f32"
                    and not v.scaled]


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
