"""What the generated CPython entries (codegen/entries.py, codegen/public_entries.py) and the
runtime that wraps them (runtime/entries.py) agree on: the entry module's name, its symbols, and
the layout of the tables the entries read. Kept apart from the generators, so that `import
softjit`, which makes the public builtins from an already built entry module, imports none of
the code generator.
"""
from __future__ import annotations

MODULE_NAME = "cpython_entries"

# ---------------------------------------------------------------- the entries (codegen/entries.py)
SOFTMAX_ROWS = "softjit_softmax_rows_entry"
ELEMENTWISE = "softjit_elementwise_entry"
SOFTMAX_ROWS_RECORD = SOFTMAX_ROWS + "_def"
ELEMENTWISE_RECORD = ELEMENTWISE + "_def"

# The tables (`self`), as 64-bit little-endian words.
# Both: word 0, the type object x and out must have exactly.
TABLE_ARRAY_TYPE = 0
# elementwise: word 1, the kernel f(const float *x, float *y, size_t n).
TABLE_KERNEL = 8
# softmax_rows: from byte 16, rows of four words, the first that fits a call is used:
# rows of at most max_n elements and arrays of at most max_bytes bytes run `driver` (the row
# driver signature of codegen/kernels/softmax.py); rows it marks run `fallback` (0 for a driver
# that never marks). A table row whose driver is 0 refuses the calls it fits (NotImplemented:
# the general path takes them). The last row must fit every call (max_n = max_bytes = 2^64 - 1).
TABLE_ROWS = 16
ROW_MAX_N, ROW_MAX_BYTES, ROW_DRIVER, ROW_FALLBACK = 0, 8, 16, 24
ROW_SIZE = 32
FITS_ALL = (1 << 64) - 1

# Rows per driver call: the status words of one call live on the entry's stack.
STATUS_CHUNK = 256

# ---------------------------------------------------------------- the public builtins
# (codegen/public_entries.py)
SOFTMAX_PUBLIC = "softjit_softmax_public_entry"
EXP_PUBLIC = "softjit_exp_public_entry"
LOG_SOFTMAX_PUBLIC = "softjit_log_softmax_public_entry"
# Rows per log_softmax driver call: their log-sum-exp states (16 bytes each, abi.LOG_SUM_EXP_STATE)
# live on the entry's stack.
LOG_SOFTMAX_CHUNK = 128

# The table (`self`), byte offsets of 64-bit words: object addresses, then numbers. Every
# builtin's table has this layout (exp's and log_softmax's leave SCALES and SCALED_ROUTES 0:
# they read neither).
ARRAY_TYPE = 0  # numpy.ndarray
FLOAT32_DESCR = 8  # numpy.dtype(numpy.float32)
GENERAL = 16  # the Python function every other call goes to
ROUTES = 24  # softmax, log_softmax: {algorithm: {isa: rows bytes}}; exp: {isa: kernel bytes}
NAME_OUT, NAME_AXIS, NAME_ALGORITHM, NAME_ISA, NAME_THREADS = 32, 40, 48, 56, 64  # interned
AUTO = 72  # the str "auto": algorithm and isa when not given
ONE = 80  # the int 1
INT_TYPE = 88  # int
STR_TYPE = 96  # str
NONE = 104  # None
NEW_LIKE = 112  # PyArray_NewLikeArray, or 0: new outputs go to the Python function
GIL_MIN_BYTES = 120  # release the GIL for inputs of at least this many bytes
NAME_SCALE, NAME_DTYPE = 128, 136  # interned
FLOAT_TYPE = 144  # float
FLOAT32_TYPE = 152  # numpy.float32 (dtype=numpy.float32 names the type, not the descriptor)
# softmax: {scale: 4 bytes}, the float32 bits of each scale= value (an int or float, compared by
# value) the Python function validated; 1.0's bits mean the unscaled kernels (check_scale)
SCALES = 160
SCALED_ROUTES = 168  # softmax: {algorithm: {isa: rows bytes}} of the scaled row drivers
TABLE_WORDS = 22

KEYWORDS = ("out", "axis", "algorithm", "isa", "threads", "scale", "dtype")
