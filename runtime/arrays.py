"""Checking and preparing the numpy arrays the public functions take (numpy's conventions)."""
from __future__ import annotations

import sys

import numpy as np


def as_float32_array(x, function: str) -> np.ndarray:
    masked = sys.modules.get("numpy.ma")  # (not imported: then x cannot be a masked array, and
    if masked is not None and isinstance(x, masked.MaskedArray):  # importing it costs 20 ms)
        # the kernels would read the masked-out values as if they were data
        raise TypeError(
            f"softjit.{function} does not take masked arrays (the mask would be ignored); pass "
            f"x.filled(-numpy.inf) for softmax (masked entries get probability 0) or x.filled(v)")
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(
            f"softjit.{function} computes in float32 and got dtype {x.dtype}; "
            f"convert with x.astype(numpy.float32)")
    return x


def is_integer(value) -> bool:
    """An int or numpy integer, not a bool (True is an int to Python, never a count or an axis)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_out(out, shape: tuple, function: str) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"softjit.{function}: out must be a numpy.ndarray, not {type(out).__name__}")
    if out.dtype != np.float32:
        raise TypeError(f"softjit.{function}: out has dtype {out.dtype}; it must be float32")
    if out.shape != shape:
        raise ValueError(f"softjit.{function}: out has shape {out.shape}; it must be {shape}")
    if not out.flags.writeable:
        raise ValueError(f"softjit.{function}: out is read-only")
    return out


def writes_directly(out: np.ndarray, src: np.ndarray) -> bool:
    """True when a kernel reading src may write out element by element in place.

    Either out is exactly src (in place) or they share no memory; any other overlap (a shifted
    view) would let early writes corrupt later reads.
    """
    if not out.flags.c_contiguous:
        return False
    if out is src:
        return True
    if not np.shares_memory(out, src):
        return True
    return out.ctypes.data == src.ctypes.data and out.strides == src.strides
