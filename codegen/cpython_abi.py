"""The facts of CPython's stable ABI that the generated entry points rely on (x86-64, LP64).

Everything here is part of the stable ABI of every CPython >= 3.10 built with the GIL: the
layout of Py_buffer and of PyMethodDef, the PyBUF_* request flags, METH_FASTCALL, the offset of
ob_type in an object header, and the exported functions and data the entries import. One object
built from these facts serves every such interpreter; a free-threaded build (whose object header
differs) and other interpreters never load it (see runtime/entries.py).
"""
from __future__ import annotations

# struct Py_buffer: the byte offset of each field the entries read, and its size.
BUFFER_BUF = 0  # void *buf
BUFFER_OBJ = 8  # PyObject *obj
BUFFER_LEN = 16  # Py_ssize_t len: bytes
BUFFER_ITEMSIZE = 24  # Py_ssize_t itemsize
BUFFER_READONLY = 32  # int readonly
BUFFER_NDIM = 36  # int ndim
BUFFER_FORMAT = 40  # char *format
BUFFER_SHAPE = 48  # Py_ssize_t *shape
BUFFER_STRIDES = 56  # Py_ssize_t *strides
BUFFER_SIZE = 80  # sizeof(Py_buffer)

# PyObject_GetBuffer request flags.
PYBUF_WRITABLE = 0x0001
PYBUF_FORMAT = 0x0004
PYBUF_ND = 0x0008
PYBUF_STRIDES = 0x0010 | PYBUF_ND
PYBUF_C_CONTIGUOUS = 0x0020 | PYBUF_STRIDES

# PyObject header: ob_refcnt, then ob_type (the types compared are exact: no subclass).
OBJECT_TYPE = 8

# struct PyMethodDef { const char *ml_name; PyCFunction ml_meth; int ml_flags; const char *ml_doc; }
METHOD_DEF_SIZE = 32
METH_FASTCALL = 0x0080
METH_KEYWORDS = 0x0002  # with METH_FASTCALL: (self, args, nargs, kwnames)

# The format string of a native float32 buffer ("f" and its terminating NUL, read as one
# little-endian 16-bit word).
FLOAT32_FORMAT_WORD = ord("f")
FLOAT32_ITEMSIZE = 4

# Exported functions the entries call (through the PLT) and data they address (through the GOT).
# Each is in the stable ABI of every CPython from 3.2 on: CPython's documentation keeps the
# list (the "Contents of Limited API" table of its C-API reference, page "C API Stability"),
# and each name below appears there as a function of the stable ABI. None of them is a macro
# or an inline function, which the stable ABI would not export. The public softmax entry
# (codegen/public_entries.py) needs the tuple, dict and call functions to hand a call on to the
# Python function: PyObject_Vectorcall joined the stable ABI only in 3.12.
FUNCTIONS = (
    "PyBytes_AsString", "PyObject_GetBuffer", "PyBuffer_Release", "PyErr_Clear",
    "PyEval_SaveThread", "PyEval_RestoreThread", "PyLong_FromSsize_t", "Py_IncRef",
    "Py_DecRef", "PyLong_AsSsize_t", "PyErr_Occurred", "PyTuple_Size", "PyTuple_GetItem",
    "PyTuple_New", "PyTuple_SetItem", "PyDict_New", "PyDict_SetItem", "PyDict_GetItem",
    "PyObject_Call", "PyModule_GetState",
)

# The C-API version a module definition is created for (PyModule_Create2's second argument):
# 1013 in every CPython 3.x, so the runtime's table modules never draw a version warning.
PYTHON_API_VERSION = 1013
DATA = ("_Py_NotImplementedStruct",)
