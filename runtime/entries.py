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

from softjit.codegen import entry_layout as layout
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

    return native.load(layout.MODULE_NAME, build_module)


def build_module():
    """The entry module's codegen Module (the generator is imported only to generate it)."""
    from softjit.codegen import entries

    return entries.build_module()


def _new_function(record: str, table: bytes):
    """A builtin function running the method-definition record `record` with `self` = table."""
    import ctypes

    from softjit.runtime import native

    address = native.data_address(layout.MODULE_NAME, build_module, record)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_void_p, ctypes.py_object, ctypes.py_object)
    return new(address, table, None)


def _array_type() -> int:
    import numpy as np

    return id(np.ndarray)  # CPython: an object's id is its address


def pack_rows(rows) -> bytes:
    """The table rows (max_n, max_bytes, driver, fallback) as the entries read them (function
    addresses; fallback 0 for a driver that never marks rows; driver 0 refuses the calls its
    row fits). The last row must fit every call."""
    rows = list(rows)
    if not rows or rows[-1][:2] != (layout.FITS_ALL, layout.FITS_ALL):
        raise ValueError("the last row of a softmax entry table must fit every call")
    words = [word for row in rows for word in row]
    return struct.pack(f"<{len(words)}Q", *words)


def softmax_rows(rows) -> object | None:
    """entry(x, out) -> rows recomputed | NotImplemented, for a table of rows (pack_rows);
    None when entries cannot be used here."""
    if unavailable_reason() is not None:
        return None
    table = struct.pack("<2Q", _array_type(), 0) + pack_rows(rows)
    return _new_function(layout.SOFTMAX_ROWS_RECORD, table)


def elementwise(kernel: int) -> object | None:
    """entry(x, out) -> 0 | NotImplemented running the function at address `kernel`,
    kernel(x, out, n); None when entries cannot be used here."""
    if unavailable_reason() is not None:
        return None
    table = struct.pack("<2Q", _array_type(), kernel)
    return _new_function(layout.ELEMENTWISE_RECORD, table)


# ---------------------------------------------------------------------------- public builtins
# What the public builtins' tables point at, kept alive for the life of the process (a table
# holds their addresses, not references): the names, the records, the strings of the records.
_KEPT: list = []


def public_softmax(general, routes: dict, scales: dict, scaled_routes: dict):
    """softjit.softmax as the generated builtin (codegen/public_entries.py); routes and
    scaled_routes are {algorithm: {isa: rows}} (pack_rows) of the unscaled and the scaled row
    drivers, scales is {scale: pack_scale(its float32)}. See public_builtin."""
    return public_builtin(layout.SOFTMAX_PUBLIC, general, routes, scales, scaled_routes)


def public_exp(general, routes: dict):
    """softjit.exp as the generated builtin; routes is {isa: kernel} (pack_kernel)."""
    return public_builtin(layout.EXP_PUBLIC, general, routes)


def public_log_softmax(general, routes: dict):
    """softjit.log_softmax as the generated builtin; routes is {algorithm: {isa: rows}}
    (pack_rows of log_softmax drivers, no fallbacks). See public_builtin."""
    return public_builtin(layout.LOG_SOFTMAX_PUBLIC, general, routes)


def pack_scale(input_scale) -> bytes:
    """A scale's entry in the softmax builtin's SCALES: the bits of its float32 (1.0 for a scale
    whose products equal x: the unscaled kernels)."""
    return struct.pack("<f", 1.0 if input_scale is None else float(input_scale))


def pack_kernel(kernel: int) -> bytes:
    """An exp route: the kernel's address as the public exp reads it."""
    return struct.pack("<Q", kernel)


def public_builtin(symbol: str, general, routes: dict, scales: dict | None = None,
                   scaled_routes: dict | None = None):
    """The generated builtin `symbol` (codegen/public_entries.py) running the common calls
    natively and handing every other call to `general`, the Python function with the same
    signature, name and docstring; None where it cannot be used: entries unavailable, numpy's
    array layout not the one the entry reads, the entry module not built yet (import does no
    kernel work: a process that finds no built entry module keeps the Python functions), or a
    relative SOFTJIT_CACHE_DIR (which the first call resolves against the directory of that
    moment).

    routes (and softmax's scales and scaled_routes) are filled by `general` once it validated
    the arguments they are keyed by; they are emptied in place, never rebound, while the builtin
    lives."""
    if "numpy new-like" not in _state:  # (no lock: unavailable_reason takes it; the answer
        _state["numpy new-like"] = _usable_numpy()  # is the same whoever works it out first)
    allocate = _state["numpy new-like"]
    if allocate is None:
        return None
    import ctypes

    import numpy as np

    from softjit.codegen import cpython_abi

    names = tuple(sys.intern(name) for name in layout.KEYWORDS)
    auto = sys.intern("auto")
    words = [0] * layout.TABLE_WORDS
    for offset, value in (
            (layout.ARRAY_TYPE, id(np.ndarray)), (layout.FLOAT32_DESCR, id(np.dtype(np.float32))),
            (layout.GENERAL, id(general)), (layout.ROUTES, id(routes)),
            (layout.NAME_OUT, id(names[0])), (layout.NAME_AXIS, id(names[1])),
            (layout.NAME_ALGORITHM, id(names[2])), (layout.NAME_ISA, id(names[3])),
            (layout.NAME_THREADS, id(names[4])), (layout.AUTO, id(auto)), (layout.ONE, id(1)),
            (layout.INT_TYPE, id(int)), (layout.STR_TYPE, id(str)), (layout.NONE, id(None)),
            (layout.NEW_LIKE, allocate), (layout.GIL_MIN_BYTES, GIL_MIN_BYTES),
            (layout.NAME_SCALE, id(names[5])), (layout.NAME_DTYPE, id(names[6])),
            (layout.FLOAT_TYPE, id(float)), (layout.FLOAT32_TYPE, id(np.float32)),
            (layout.SCALES, 0 if scales is None else id(scales)),
            (layout.SCALED_ROUTES, 0 if scaled_routes is None else id(scaled_routes))):
        words[offset // 8] = value
    table = struct.pack(f"<{len(words)}Q", *words)
    handle = _load_module()
    address = ctypes.cast(getattr(handle, symbol), ctypes.c_void_p).value
    name = general.__name__.encode()
    doc = (_text_signature(general) + (general.__doc__ or "")).encode()

    class MethodDef(ctypes.Structure):
        _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                    ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]

    flags = cpython_abi.METH_FASTCALL | cpython_abi.METH_KEYWORDS
    record = MethodDef(name, address, flags, doc)
    holder, definition = _table_module(table)
    _KEPT.append((names, auto, general, routes, scales, scaled_routes, name, doc, record, holder,
                  definition))
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = (ctypes.c_void_p, ctypes.py_object, ctypes.py_object)
    return new(ctypes.addressof(record), holder, general.__module__)


def _table_module(table: bytes) -> tuple:
    """(a module object whose state is a copy of `table`, its definition, kept alive with it).

    A builtin whose `self` is a module pickles, copies and prints by its own name and module
    (pickle finds softjit.runtime.api.softmax again), where one bound to a bytes object would
    pickle as an attribute of that bytes object and fail."""
    import ctypes

    from softjit.codegen import cpython_abi

    class ModuleDefBase(ctypes.Structure):  # PyModuleDef_Base: an object header, then
        _fields_ = [("ob_refcnt", ctypes.c_ssize_t), ("ob_type", ctypes.c_void_p),  # m_init,
                    ("m_init", ctypes.c_void_p), ("m_index", ctypes.c_ssize_t),  # m_index and
                    ("m_copy", ctypes.c_void_p)]  # m_copy (stable ABI)

    class ModuleDef(ctypes.Structure):  # PyModuleDef (stable ABI)
        _fields_ = [("m_base", ModuleDefBase), ("m_name", ctypes.c_char_p),
                    ("m_doc", ctypes.c_char_p), ("m_size", ctypes.c_ssize_t),
                    ("m_methods", ctypes.c_void_p), ("m_slots", ctypes.c_void_p),
                    ("m_traverse", ctypes.c_void_p), ("m_clear", ctypes.c_void_p),
                    ("m_free", ctypes.c_void_p)]

    definition = ModuleDef()
    definition.m_base.ob_refcnt = 1
    definition.m_name = b"softjit.runtime.entries.table"
    definition.m_doc = b"the table of a softjit public builtin, in the module state"
    definition.m_size = len(table)
    create = ctypes.pythonapi.PyModule_Create2
    create.restype, create.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_int)
    holder = create(ctypes.addressof(definition), cpython_abi.PYTHON_API_VERSION)
    get_state = ctypes.pythonapi.PyModule_GetState
    get_state.restype, get_state.argtypes = ctypes.c_void_p, (ctypes.py_object,)
    ctypes.memmove(get_state(holder), table, len(table))
    return holder, definition


def _usable_numpy() -> int | None:
    """The address of numpy's PyArray_NewLikeArray when the public builtins can be used here
    (see public_builtin), else None."""
    import os
    import warnings

    from softjit.runtime import asm_index, cachedir

    if not os.path.isabs(os.environ.get(cachedir.CACHE_ENV_VARIABLE) or "/"):
        return None  # a relative cache directory is resolved at the first call, not at import
    with warnings.catch_warnings():  # an unusable cache is said when a call first needs it,
        warnings.simplefilter("ignore")  # not at import
        built = asm_index.lookup(layout.MODULE_NAME) is not None
    if not built or unavailable_reason() is not None:
        return None
    from softjit.runtime import numpy_layout

    allocate = numpy_layout.new_like_array_address()
    if allocate is None or not numpy_layout.fields_as_expected():
        return None
    return allocate


# The builtin releases the GIL for inputs of at least this many bytes (16,384 float32): below
# it, the release and the retake cost more than another thread could gain in the time the
# kernel takes (measured: see docs/performance.md, "How a call reaches the kernel").
GIL_MIN_BYTES = 64 << 10


def _text_signature(function) -> str:
    """The first lines of a builtin's __doc__ that inspect.signature reads: "name(params)\\n--\\n\\n"
    (the Python function's parameters and defaults, without annotations)."""
    import inspect

    signature = inspect.signature(function)
    plain = signature.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty)
                    for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty)
    return f"{function.__name__}{plain}\n--\n\n"
