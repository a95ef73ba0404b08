"""softjit.softmax's arguments: empty rows and batches, refused inputs (float64 lists, masked
arrays, bad dtypes, axes, shapes, out arrays, threads) raising before anything is written, and
softjit.assembly's text and errors.
"""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softjit.codegen import variants

from softmax_cases import (ALGORITHMS, ALL_ALGORITHMS, ISAS)


# ---------------------------------------------------------------------------- empty and errors
def test_empty_rows_and_empty_batches():
    for shape, axis in [((0,), -1), ((4, 0), -1), ((0, 5), -1), ((0, 5), 0), ((3, 0, 2), 1),
                        ((2, 3, 0), 0)]:
        x = np.zeros(shape, np.float32)
        for algorithm in ALL_ALGORITHMS:
            y = softjit.softmax(x, axis=axis, algorithm=algorithm)
            assert y.shape == shape and y.dtype == np.float32
            out = np.zeros(shape, np.float32)
            assert softjit.softmax(x, axis=axis, algorithm=algorithm, out=out) is out


def test_python_lists_become_float32():
    # a list carries no dtype: its numbers are computed in float32 (runtime/inputs.py)
    y = softjit.softmax([[1.0, 2.0], [3, 4]])
    assert y.dtype == np.float32
    assert np.array_equal(y, softjit.softmax(np.array([[1, 2], [3, 4]], np.float32)))


def test_argument_errors():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="0-d"):
        softjit.softmax(np.float32(1.0))
    with pytest.raises(ValueError):
        softjit.softmax(np.array(1.0, np.float32))
    for dtype in (np.float64, np.int32, np.complex64):  # float16: tests/api/test_half_precision.py
        with pytest.raises(TypeError) as info:
            softjit.softmax(x.astype(dtype))
        message = str(info.value)
        assert str(np.dtype(dtype)) in message and "astype(numpy.float32)" in message, message
    with pytest.raises(ValueError) as info:
        softjit.softmax(x, algorithm="online")
    for name in ALL_ALGORITHMS:
        assert name in str(info.value)
    assert "online" in str(info.value)
    with pytest.raises(ValueError) as info:
        softjit.softmax(x, isa="sse2")
    for name in ("auto", "avx2", "avx512f"):
        assert name in str(info.value)
    for bad in (2, -3, 10):
        with pytest.raises(ValueError, match="axis"):
            softjit.softmax(x, axis=bad)
    with pytest.raises((ValueError, TypeError)):
        softjit.softmax(x, axis=1.0)
    with pytest.raises(ValueError, match="shape"):
        softjit.softmax(x, out=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        softjit.softmax(x, out=np.zeros((3, 4, 1), np.float32))
    with pytest.raises(TypeError, match="float32"):
        softjit.softmax(x, out=np.zeros((3, 4), np.float64))
    with pytest.raises(TypeError):
        softjit.softmax(x, out=[[0.0] * 4] * 3)
    read_only = np.zeros((3, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError):
        softjit.softmax(x, out=read_only)
    for threads in (0, -1):
        with pytest.raises(ValueError, match="threads"):
            softjit.softmax(x, threads=threads)
    # errors are raised before anything is written
    out = np.full((3, 4), 5.0, np.float32)
    with pytest.raises(ValueError):
        softjit.softmax(x, axis=7, out=out)
    assert (out == 5.0).all()


def test_assembly_text():
    for algorithm in ALGORITHMS:
        for isa in ISAS:
            text = softjit.assembly(algorithm, isa=isa)
            v = variants.REGISTRY.softmax(algorithm, isa)
            assert v.driver_symbol in text
            for symbol in (p.symbol for p in v.passes):
                assert symbol in text
            assert ("zmm" in text) == (isa == "avx512f")
    with pytest.raises(ValueError) as info:
        softjit.assembly("auto")
    assert all(a in str(info.value) for a in ALGORITHMS)
    with pytest.raises(ValueError) as info:
        softjit.assembly("fast")
    assert all(a in str(info.value) for a in ALGORITHMS)
    with pytest.raises(ValueError) as info:
        softjit.assembly("two-pass", isa="neon")
    assert "avx2" in str(info.value) and "avx512f" in str(info.value)


def test_masked_arrays_are_refused_not_silently_unmasked():
    x = np.ma.masked_array(np.float32([1.0, 2.0, 3.0]), mask=[False, True, False])
    for function in (softjit.softmax, softjit.exp):
        with pytest.raises(TypeError, match=r"masked arrays.*filled\(-numpy.inf\)"):
            function(x)
    filled = softjit.softmax(x.filled(-np.inf))
    assert filled[1] == 0.0 and abs(filled.sum() - 1.0) < 1e-6
