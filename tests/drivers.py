"""Call a registered softmax row driver on 2-D views with any row strides, natively or in the
emulator (the one driver-call helper of the tests).

    marked, status = drivers.call(variant, x2d, y2d)                  # natively
    marked, status = drivers.call(variant, x2d, y2d, emulator=emu)    # emulated
    marked, status = drivers.call(scaled_variant, x2d, y2d, input_scale=np.float32(-1.5))

x2d and y2d are (rows, n) views (float32, or the 16-bit dtype of the variant's element format) with unit element stride and any row stride, positive or
negative, of (possibly different) base arrays; the driver gets x's and y's row strides
separately, as softjit.softmax passes them (and a scaled driver its input scale after them). In the emulator the whole base arrays are mapped
(x read-only), so any byte the driver touches outside them faults.
"""
from __future__ import annotations

import numpy as np

from softjit.runtime.bindings import (function as _function, pointer as _pointer,
                                     strides_argument as _strides_argument)


def _base(view: np.ndarray) -> np.ndarray:
    """The array owning view's memory (through slices and as_strided's wrapper)."""
    base = view
    while getattr(base, "base", None) is not None:
        base = base.base
    base = np.asarray(base)
    assert base.flags.c_contiguous and base.dtype == view.dtype, "an unexpected base array"
    return base


def call(variant, x2d: np.ndarray, y2d: np.ndarray, emulator=None,
         status_fill: int = -5, input_scale=None) -> tuple[int, np.ndarray]:
    """Run the variant's row driver: (its return value, the status words of the rows). A scaled
    variant needs input_scale (a numpy.float32), an unscaled one takes none."""
    rows, n = x2d.shape
    assert y2d.shape == x2d.shape and y2d.dtype == x2d.dtype
    assert n <= 1 or x2d.strides[1] == y2d.strides[1] == x2d.itemsize
    assert (input_scale is not None) == variant.scaled, "input_scale goes with scaled variants"
    strides = _strides_argument(x2d.strides[0], y2d.strides[0], input_scale)
    status = np.full(rows, status_fill, np.int32)
    if emulator is None:
        function, p = _function(variant, variant.driver_symbol), _pointer
        marked = function(p(x2d), p(y2d), n, rows, p(strides), p(status))
        return int(marked), status
    machine = emulator.machine(variant)
    x_base, y_base = _base(x2d), _base(y2d)
    x_at = machine.map(x_base, writable=False)
    y_at = machine.map(y_base)
    strides_at = machine.map(strides, writable=False)
    status_at = machine.map(status)
    try:
        marked = machine.call(variant.driver_symbol,
                              x_at + (x2d.ctypes.data - x_base.ctypes.data),
                              y_at + (y2d.ctypes.data - y_base.ctypes.data),
                              n, rows, strides_at, status_at)
    finally:
        for address in (x_at, y_at, strides_at, status_at):
            machine.unmap(address)
    return int(marked), status


def rows_in(base: np.ndarray, rows: int, n: int, stride: int, offset: int = 0) -> np.ndarray:
    """A (rows, n) view of the 1-D array `base` whose rows start `stride` elements apart
    (negative: row 0 is the last in memory), the lowest row `offset` elements into base."""
    span = (rows - 1) * abs(stride) + n
    assert offset + span <= base.size, "base is too small for these rows"
    first = offset + (rows - 1) * abs(stride) if stride < 0 else offset
    size = base.itemsize
    return np.lib.stride_tricks.as_strided(base[first:], (rows, n), (size * stride, size))
