"""The generated CPython entry points (codegen/entries.py) as Python callables, without a compiler.

The entry module is assembled and cached like a kernel module and opened for its addresses
(runtime/native.py); each of its method-definition records becomes a builtin function with
PyCFunction_NewEx (through ctypes.pythonapi), whose `self` is a bytes table of the addresses of
the kernels it calls. cffi stays the interface of the general path.

When entries are used (`unavailable_reason()` is None): CPython >= 3.10 built with the GIL, and
the entry module loads, which needs CPython's functions exported by the running process (the
loader resolves them at load time, so an object that loaded has them all). Anywhere else (PyPy
and other interpreters, a free-threaded CPython, an embedding that keeps libpython's symbols
private) the public functions call the kernels through cffi, as they do for any call an entry
refuses.
"""
from __future__ import annotations

import struct
import sys

from softjit.codegen import entries as layout
from softjit.runtime.forksafe import ForkSafeLock

_lock = ForkSafeLock()

_state: dict = {}


def unavailable_reason() -> str | None:
    """None when entries can be used in this process, else why not (said once, then memoised)."""
    if "reason" not in _state:
        with _lock:
            if "reason" not in _state:
                _state["reason"] = _probe()
    return _state["reason"]


def _probe() -> str | None:
    if sys.implementation.name != "cpython":
        return f"the entries need CPython; this is {sys.implementation.name}"
    if sys.version_info < (3, 10):
        return "the entries need CPython 3.10 or later"
    if _free_threaded():
        return "this CPython is free-threaded; the entries follow the GIL build's stable ABI"
    from softjit.runtime.errors import SoftjitError

    try:
        _state["module"] = _load_module()
    except (OSError, SoftjitError) as error:
        # no toolchain and no prebuilt entry module, or CPython's symbols are not exported here
        return f"the entry module could not be loaded: {error}"
    return None


def _free_threaded() -> bool:
    """A free-threaded build says so in its ABI flags ("t"; cheaper than asking sysconfig)."""
    abiflags = getattr(sys, "abiflags", None)
    if abiflags is not None:
        return "t" in abiflags
    import sysconfig

    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _load_module():
    """The entry module, prebuilt, cached or built like any kernel module (runtime/native.py)."""
    from softjit.runtime import native

    return native.load(layout.MODULE_NAME, layout.build_module)


def _new_function(record: str, table: bytes):
    """A builtin function running the method-definition record `record` with `self` = table."""
    import ctypes

    from softjit.runtime import native

    address = native.data_address(layout.MODULE_NAME, layout.build_module, record)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_void_p, ctypes.py_object, ctypes.py_object)
    return new(address, table, None)


def _array_type() -> int:
    import numpy as np

    return id(np.ndarray)  # CPython: an object's id is its address


def softmax_rows(rows) -> object | None:
    """entry(x, out) -> rows recomputed | NotImplemented, for a table of
    (max_n, max_bytes, driver, fallback) rows (function addresses; fallback 0 for a driver that
    never marks rows; driver 0 refuses the calls its row fits); None when entries cannot be
    used here."""
    if unavailable_reason() is not None:
        return None
    rows = list(rows)
    if not rows or rows[-1][:2] != (layout.FITS_ALL, layout.FITS_ALL):
        raise ValueError("the last row of a softmax entry table must fit every call")
    words = [_array_type(), 0]
    for max_n, max_bytes, driver, fallback in rows:
        words += [max_n, max_bytes, driver, fallback]
    return _new_function(layout.SOFTMAX_ROWS_RECORD, struct.pack(f"<{len(words)}Q", *words))


def elementwise(kernel: int) -> object | None:
    """entry(x, out) -> 0 | NotImplemented running the function at address `kernel`,
    kernel(x, out, n); None when entries cannot be used here."""
    if unavailable_reason() is not None:
        return None
    table = struct.pack("<2Q", _array_type(), kernel)
    return _new_function(layout.ELEMENTWISE_RECORD, table)
