"""The facts of numpy's C ABI that the public entry points read (x86-64, LP64).

numpy's extension modules compile the array accessors (PyArray_DATA, PyArray_NDIM,
PyArray_DIMS, PyArray_DESCR, PyArray_FLAGS) as plain reads of the array object's fields, so
numpy keeps those fields where they are in every release (1.x and 2.x alike), and its C-API
function table never renumbers a function. The entries read the fields directly instead of
asking for a buffer (numpy builds a format string and a buffer record on every buffer
request, which costs more than a small kernel). The runtime checks every offset and the
allocation function against the running numpy before it uses an entry that relies on them
(runtime/entries.py); where a check fails, the public functions stay Python functions.
"""
from __future__ import annotations

# struct PyArrayObject_fields: the byte offset of each field the entries read.
ARRAY_DATA = 16  # char *data
ARRAY_NDIM = 24  # int nd
ARRAY_DIMENSIONS = 32  # npy_intp *dimensions
ARRAY_STRIDES = 40  # npy_intp *strides
ARRAY_DESCR = 56  # PyArray_Descr *descr
ARRAY_FLAGS = 64  # int flags

# Array flags.
C_CONTIGUOUS = 0x0001
ALIGNED = 0x0100
WRITEABLE = 0x0400

# The C-API table (the _ARRAY_API capsule of numpy's multiarray module): the index of
#   PyObject *PyArray_NewLikeArray(PyArrayObject *prototype, NPY_ORDER order,
#                                  PyArray_Descr *dtype, int subok)
# which with (x, NPY_CORDER, NULL, 0) makes a new C-ordered ndarray of x's shape and dtype,
# as numpy.empty(x.shape, x.dtype) does.
NEW_LIKE_ARRAY_INDEX = 277
NPY_CORDER = 0
