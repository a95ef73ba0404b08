"""The row drivers with different row strides for x and y (softjit.softmax passes x's and y's
separately: a padded output, a reversed input): every registered softmax driver natively where
the host runs its ISA, and through the emulator on any host (where any byte read or written
outside x's or y's array faults). Results right, every float of y outside its rows untouched,
x unchanged. A scaled driver (softmax(s * x)) gives the bits its unscaled twin gives on the
products float32(s) * x, with the same strides.
"""
from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest

import drivers
import runners
from softjit.codegen import variants
from softmax_checks import check_softmax

SOFTMAX_VARIANTS = [pytest.param(v, id=v.name) for v in variants.VARIANTS
                    if v.op == "softmax" and v.element == "f32"]
ROWS = 3
SENTINEL = np.float32(-9.0)
SCALE = np.float32(-0.375)  # negative: the masked tail's -inf fill must not be scaled


def stride_pairs(n: int) -> list:
    """(x row stride, y row stride) in floats: unequal, each side the larger, negative too."""
    return [(n, n + 19), (n + 37, n), (n + 5, n + 21), (-(n + 3), n + 11), (n + 7, -n),
            (-(n + 13), -(n + 1))]


def check_case(variant, n, x_stride, y_stride, offsets, emulator=None):
    rng = np.random.default_rng(zlib.crc32(repr((variant.name, n, x_stride, y_stride)).encode()))
    x_span, y_span = (ROWS - 1) * abs(x_stride) + n, (ROWS - 1) * abs(y_stride) + n
    x_base = rng.uniform(-40, 40, x_span + offsets[0]).astype(np.float32)
    y_base = np.full(y_span + offsets[1], SENTINEL, np.float32)
    x = drivers.rows_in(x_base, ROWS, n, x_stride, offsets[0])
    y = drivers.rows_in(y_base, ROWS, n, y_stride, offsets[1])
    x_before = x_base.copy()
    s = SCALE if variant.scaled else None
    marked, status = drivers.call(variant, x, y, emulator=emulator, input_scale=s)
    what = f"{variant.name} n={n} strides x={x_stride} y={y_stride} offsets={offsets}"
    assert np.array_equal(x_base, x_before), f"{what}: x was modified"
    mask = np.zeros(y_base.size, np.float32)
    drivers.rows_in(mask, ROWS, n, y_stride, offsets[1])[...] = 1.0
    written = mask == 1.0
    assert (y_base[~written] == SENTINEL).all(), f"{what}: wrote outside y's rows"
    assert marked == 0 and (status == 0).all(), (what, marked, status)
    if not variant.scaled:
        check_softmax(np.array(y), np.array(x))
        return
    twin = dataclasses.replace(variant, scaled=False)
    products_base = x_base * s
    twin_base = np.full(y_span + offsets[1], SENTINEL, np.float32)
    drivers.call(twin, drivers.rows_in(products_base, ROWS, n, x_stride, offsets[0]),
                 drivers.rows_in(twin_base, ROWS, n, y_stride, offsets[1]), emulator=emulator)
    assert np.array_equal(y_base.view(np.uint32), twin_base.view(np.uint32)), what


@pytest.mark.parametrize("variant", SOFTMAX_VARIANTS)
def test_native_driver_with_unequal_row_strides(variant):
    runners.require_native(variant)
    step = variant.target.lanes * max(variant.reduce_unroll, variant.output_unroll,
                                      variant.rmax_unroll)
    for n in (1, 7, step - 1, step, 2 * step + 3, 1000):
        for x_stride, y_stride in stride_pairs(n):
            for offsets in ((0, 0), (3, 0), (1, 6)):
                check_case(variant, n, x_stride, y_stride, offsets)


@pytest.mark.parametrize("variant", SOFTMAX_VARIANTS)
def test_emulated_driver_with_unequal_row_strides(variant, emulator):
    step = variant.target.lanes * max(variant.reduce_unroll, variant.output_unroll,
                                      variant.rmax_unroll)
    for n in (1, step + 5):
        for x_stride, y_stride in stride_pairs(n):
            check_case(variant, n, x_stride, y_stride, (1, 2), emulator)
