"""softjit.softmax over axis=None and tuples of axes (scipy.special.softmax's forms), against
the float64 reference over the same axes."""
from __future__ import annotations

import numpy as np
import pytest

import softjit


def reference(x, axis):
    x = x.astype(np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@pytest.mark.parametrize("axis", [None, (0, 1), (1, 2), (0, 2), (2, 0), (1,), (0, 1, 2)])
def test_axes_match_the_reference(axis):
    rng = np.random.default_rng(31)
    base = (rng.standard_normal((6, 7, 9)) * 8).astype(np.float32)
    for x in (base, base[::2, :, ::-1], base.transpose(2, 0, 1)):
        want = reference(x, axis)
        got = softjit.softmax(x, axis=axis)
        assert np.allclose(got, want, rtol=1e-5, atol=1e-30)
        out = np.full(x.shape, 5.0, np.float32)
        assert softjit.softmax(x, axis=axis, out=out) is out
        assert np.array_equal(out, got)
        y = x.copy()
        assert softjit.softmax(y, axis=axis, out=y) is y  # in place
        assert np.array_equal(y, got)


def test_axis_errors():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="repeats"):
        softjit.softmax(x, axis=(0, -2))
    with pytest.raises(ValueError, match="out of range"):
        softjit.softmax(x, axis=(0, 2))
    with pytest.raises(TypeError, match="axis must be an integer, None or a tuple"):
        softjit.softmax(x, axis=[0, 1])
