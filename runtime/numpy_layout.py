"""The running numpy checked against the facts the public entries read (codegen/numpy_abi.py):
the array fields at their offsets and the allocation function of numpy's C-API table. The
entries are used only when every check holds (runtime/entries.py)."""
from __future__ import annotations

import ctypes

import numpy as np

from softjit.codegen import numpy_abi as layout


def _field(array: np.ndarray, offset: int, kind):
    return kind.from_address(id(array) + offset).value  # CPython: id is the object's address


def _agrees(array: np.ndarray) -> bool:
    if _field(array, layout.ARRAY_DATA, ctypes.c_size_t) != array.ctypes.data:
        return False
    ndim = _field(array, layout.ARRAY_NDIM, ctypes.c_int)
    if ndim != array.ndim:
        return False
    dims = _field(array, layout.ARRAY_DIMENSIONS, ctypes.c_size_t)
    strides = _field(array, layout.ARRAY_STRIDES, ctypes.c_size_t)
    if ndim and (tuple((ctypes.c_ssize_t * ndim).from_address(dims)) != array.shape
                 or tuple((ctypes.c_ssize_t * ndim).from_address(strides)) != array.strides):
        return False
    if _field(array, layout.ARRAY_DESCR, ctypes.c_size_t) != id(array.dtype):
        return False
    flags = _field(array, layout.ARRAY_FLAGS, ctypes.c_int)
    return (bool(flags & layout.C_CONTIGUOUS) == array.flags.c_contiguous
            and bool(flags & layout.ALIGNED) == array.flags.aligned
            and bool(flags & layout.WRITEABLE) == array.flags.writeable)


def _probes() -> list:
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    read_only = base.copy()
    read_only.flags.writeable = False
    unaligned = np.frombuffer(bytearray(4 * 9), np.float32, 8, offset=2)
    return [base, base[:, ::2], base.T, read_only, unaligned, np.ones((), np.float32),
            np.empty(0, np.float32)]


def fields_as_expected() -> bool:
    """True when numpy's array fields are where codegen/numpy_abi.py says, for arrays of every
    flag combination the entries test (and the float32 descriptor is one shared object)."""
    try:
        if np.dtype(np.float32) is not np.empty(1, np.float32).dtype:
            return False
        return all(_agrees(array) for array in _probes())
    except Exception:  # noqa: BLE001 - any surprise means: do not read numpy's fields
        return False


def new_like_array_address() -> int | None:
    """The address of PyArray_NewLikeArray from numpy's C-API table, checked by making arrays
    with it; None when it cannot be found or does not behave as the entries need."""
    try:
        capsule = _array_api_capsule()
        get_name = ctypes.pythonapi.PyCapsule_GetName
        get_name.restype, get_name.argtypes = ctypes.c_char_p, (ctypes.py_object,)
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, (ctypes.py_object,
                                                                      ctypes.c_char_p)
        table = get_pointer(capsule, get_name(capsule))
        if not table:
            return None
        address = ctypes.c_void_p.from_address(
            table + layout.NEW_LIKE_ARRAY_INDEX * ctypes.sizeof(ctypes.c_void_p)).value
        if not address or not _makes_arrays_like(address):
            return None
        return address
    except Exception:  # noqa: BLE001 - no usable function: new outputs take the Python path
        return None


def _array_api_capsule():
    try:
        from numpy._core import _multiarray_umath as multiarray  # numpy 2
    except ImportError:
        from numpy.core import multiarray  # numpy 1.x
    return multiarray._ARRAY_API


def _makes_arrays_like(address: int) -> bool:
    new_like = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.c_int,
                                 ctypes.c_void_p, ctypes.c_int)(address)
    for prototype in (np.ones(7, np.float32), np.ones((3, 5, 2), np.float32),
                      np.ones((4, 6), np.float32)[:, ::2]):
        made = new_like(prototype, layout.NPY_CORDER, None, 0)
        if (type(made) is not np.ndarray or made.shape != prototype.shape
                or made.dtype is not np.dtype(np.float32) or not made.flags.c_contiguous
                or not made.flags.writeable or not made.flags.aligned
                or np.shares_memory(made, prototype)):
            return False
    return True
