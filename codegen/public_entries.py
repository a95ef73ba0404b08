"""softjit.softmax and softjit.exp themselves as generated builtins: METH_FASTCALL |
METH_KEYWORDS functions that take the documented arguments, run the common calls natively and
hand every other call, as given, to the Python function that owns the checks and the error
messages.

    PyObject *entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                    PyObject *kwnames)

softmax(x, axis=-1, *, algorithm, isa, out, threads, scale, dtype) is run natively when all of
these hold (anything else goes to the Python function, which raises what a bad argument
deserves or runs the general path):

- one or two positional arguments (x, axis), keywords only among out, axis, algorithm, isa,
  threads, scale and dtype, each named by the very interned string object the table holds (any
  keyword the entry does not know, e.g. one a later softjit adds, goes to the Python function);
- x is exactly numpy.ndarray with the float32 descriptor, C-contiguous, aligned, at least one
  dimension and not empty; axis absent, or an int (exactly) equal to -1 or x.ndim - 1;
  threads absent or the int 1; dtype absent, None, numpy.float32 or its descriptor (for a
  float32 x it changes nothing);
- scale absent or None, or exactly an int or a float found in the SCALES dict, which the
  Python function fills with the float32 bits of each scale it validated (by value: 2 and 2.0
  are one key, True is refused by its type); bits other than float32 1.0 take the scaled
  routes, the scale goes after the row stride pair, and rows the fallback driver marks in
  turn (a product that overflowed, runtime/scaled.py) send the whole call, x untouched, to the
  Python function afterwards; a scaled call in place goes there at once;- out absent or None (a new array like x is made, as numpy.empty(x.shape, float32) does), or
  exactly numpy.ndarray, float32, C-contiguous, aligned, writable, of x's shape, and x itself
  or sharing no byte with x;
- algorithm and isa (default: the table's "auto") are str objects registered in the routes
  dict (scaled: SCALED_ROUTES), {algorithm: {isa: rows}}, which the Python function fills once
  it has validated them;
  rows is a bytes object of table rows as the softmax_rows entry's (codegen/entries.py), and
  the row this call fits has a driver.

exp(x, *, isa, out, dtype) likewise: one positional argument, keywords out, isa and dtype (as
softmax's); x of any number of
dimensions (0-d too), not empty; the routes dict is {isa: kernel}, kernel a bytes object whose
first word is the address of the kernel f(x, y, n).

The arrays' fields are read where numpy keeps them (codegen/numpy_abi.py) rather than through
buffer requests. The GIL is released around the kernels when x holds at least the table's
GIL_MIN_BYTES: below that the release and the retake cost more than they could give another
thread. Returns out (a new reference).

`self` is a module object whose module state holds the table, 64-bit words (built by
runtime/entries.py): a module, so that the builtin pickles and prints by its own name
(softjit.runtime.api.softmax) as a module-level builtin does. The objects the table names are
kept alive by the runtime for the life of the process.
"""
from __future__ import annotations

from softjit.codegen import cpython_abi as abi
from softjit.codegen import numpy_abi as np_abi
from softjit.codegen.abi import LOG_SUM_EXP_STATE, SYSV_ARGS, Param, Signature
from softjit.codegen.entries import choose_driver, run_row_chunks
from softjit.codegen.isa import X86_64
from softjit.codegen.operands import ptr
from softjit.codegen.stream import Function

# The symbols and the table layout are shared with the runtime (entry_layout.py).
from softjit.codegen.entry_layout import (  # noqa: E402 (re-exported: the layout's names)
    ARRAY_TYPE, AUTO, EXP_PUBLIC, LOG_SOFTMAX_CHUNK, LOG_SOFTMAX_PUBLIC, FLOAT32_DESCR, FLOAT32_TYPE, FLOAT_TYPE, GENERAL,
    GIL_MIN_BYTES, INT_TYPE, KEYWORDS, NAME_ALGORITHM, NAME_AXIS, NAME_DTYPE, NAME_ISA, NAME_OUT,
    NAME_SCALE, NAME_THREADS, NEW_LIKE, NONE, ONE, ROUTES, SCALED_ROUTES, SCALES, SOFTMAX_PUBLIC,
    STR_TYPE, TABLE_WORDS)

# float32 1.0: the scale whose products equal x (the unscaled kernels)
_ONE_BITS = 0x3F800000
_STATE_BYTES = LOG_SUM_EXP_STATE.size

_X_FLAGS = np_abi.C_CONTIGUOUS | np_abi.ALIGNED
_OUT_FLAGS = _X_FLAGS | np_abi.WRITEABLE


class _Public:
    """One public builtin being emitted: its stack slots, the table register, the label of the
    general path, and the steps both builtins share."""

    def __init__(self, name: str, doc: str):
        f = self.f = Function(Signature(
            name, (Param("void*", "self"), Param("void* const*", "args"),
                   Param("ptrdiff_t", "nargs"), Param("void*", "kwnames")), "void*", doc), X86_64)
        self.rax = f.physical_gp("rax")
        self.general = f.label("general")
        slot = self.slot
        self.s_args, self.s_nargs, self.s_kwnames, self.s_count = slot(), slot(), slot(), slot()
        self.s_table, self.s_x, self.s_out, self.s_isa = slot(), slot(), slot(), slot()
        self.s_ndim, self.s_length, self.s_state = slot(), slot(), slot()

    def slot(self):
        return self.f.stack(8).sized(64)

    def arg(self, index: int):
        return self.f.physical_gp(SYSV_ARGS[index])

    def call(self, name: str, *arguments):
        for index, value in enumerate(arguments):
            self.f.mov(self.arg(index), value)
        self.f.call(self.f.imported(name))

    def start(self, most_positional: int, extra_positional=()):
        """Keep the arguments, read the table; x = args[0], extra_positional[i] =
        args[i + 1] or 0; at least one and at most most_positional positional arguments.
        Returns the callee-saved registers (args, table), live until the keywords are read."""
        f, rax, general = self.f, self.rax, self.general
        self_, args, nargs, kwnames = f.args
        kept_args = f.gp("args", callee_saved=True)
        table = f.gp("table", callee_saved=True)
        f.mov(kept_args, args)
        f.mov(self.s_args, args)
        f.mov(self.s_nargs, nargs)
        f.mov(self.s_kwnames, kwnames)
        f.comment("the table is the state of the module object self")
        self.call("PyModule_GetState", self_)
        f.mov(table, rax)
        f.mov(self.s_table, rax)
        f.comment(f"positional: 1 to {most_positional}")
        t = f.gp("t")
        f.mov(t, self.s_nargs)
        f.cmp(t, 1)
        f.jb(general)
        f.cmp(t, most_positional)
        f.ja(general)
        for position, target in enumerate(extra_positional, start=1):
            f.mov(target, 0)
            absent = f.label("absent")
            f.cmp(t, position)
            f.jbe(absent)
            value = f.gp("value")
            f.mov(value, ptr(kept_args, 8 * position))
            f.mov(target, value)
            f.bind(absent)
        value = f.gp("value")
        f.mov(value, ptr(kept_args, 0))
        f.mov(self.s_x, value)
        f.mov(self.s_out, 0)
        f.mov(value, ptr(table, AUTO))
        f.mov(self.s_isa, value)
        return kept_args, table

    def keywords(self, kept_args, table, known: tuple, positional_too=()):
        """Read the keywords: `known` is ((name offset, slot), ...); a slot in positional_too
        already given (non-zero) is a keyword given twice; any other name goes to general."""
        f, rax, general = self.f, self.rax, self.general
        f.comment("keywords: each name compared with the table's interned names")
        done = f.label("keywords_done")
        t = f.gp("t")
        f.mov(t, self.s_kwnames)
        f.test(t, t)
        f.je(done)
        self.call("PyTuple_Size", t)
        f.mov(self.s_count, rax)
        index = f.gp("keyword", callee_saved=True)
        f.mov(index, 0)
        keyword, next_keyword = f.label("keyword"), f.label("next_keyword")
        f.bind(keyword)
        f.cmp(index, self.s_count)
        f.jae(done)
        self.call("PyTuple_GetItem", self.s_kwnames, index)
        f.comment("its value: args[nargs + i]")
        t, value = f.gp("t"), f.gp("value")
        f.mov(t, self.s_nargs)
        f.add(t, index)
        f.mov(value, ptr(kept_args, 0, t, 8))
        for offset, target in known:
            other = f.label("other_name")
            f.cmp(rax, ptr(table, offset))
            f.jne(other)
            if target in positional_too:
                f.comment("given positionally too: the Python function says so")
                f.cmp(target, 0)
                f.jne(general)
            f.mov(target, value)
            f.jmp(next_keyword)
            f.bind(other)
        f.comment("a keyword this entry does not know")
        f.jmp(general)
        f.bind(next_keyword)
        f.add(index, 1)
        f.jmp(keyword)
        f.bind(done)
        f.comment("out=None: a new output")
        t = f.gp("t")
        out_given = f.label("out_given")
        f.mov(t, self.s_out)
        f.cmp(t, ptr(table, NONE))
        f.jne(out_given)
        f.mov(self.s_out, 0)
        f.bind(out_given)

    def check_x(self, table):
        """x: exactly ndarray, float32, C-contiguous, aligned. Keeps its ndim; returns the
        register holding x (valid until the next call)."""
        f = self.f
        f.comment("x: exactly ndarray, float32, C-contiguous and aligned")
        x = f.gp("x_object")
        f.mov(x, self.s_x)
        _check_array(f, x, table, _X_FLAGS, self.general)
        ndim = f.gp("ndim")
        f.mov(ndim.r32, ptr(x, np_abi.ARRAY_NDIM, bits=32))
        f.mov(self.s_ndim, ndim)
        return x

    def length(self, elements):
        """s_length = elements * 4 (bytes of x)."""
        f = self.f
        t = f.gp("t")
        f.mov(t, elements)
        f.shl(t, 2)
        f.mov(self.s_length, t)

    def check_out(self, table):
        """out, when given: exactly ndarray, float32, C-contiguous, aligned, writable, of x's
        shape; x itself or sharing no byte with it."""
        f, general = self.f, self.general
        f.comment("out, when given: exactly ndarray, float32, C-contiguous, aligned, writable, "
                  "x's shape")
        out_checked = f.label("out_checked")
        out, t = f.gp("out_object"), f.gp("t")
        f.mov(out, self.s_out)
        f.test(out, out)
        f.je(out_checked)
        _check_array(f, out, table, _OUT_FLAGS, general)
        f.mov(t.r32, ptr(out, np_abi.ARRAY_NDIM, bits=32))
        f.cmp(t, self.s_ndim)
        f.jne(general)
        x_dims, out_dims, j, extent = f.gp("x_dims"), f.gp("out_dims"), f.gp("j"), f.gp("extent")
        f.mov(x_dims, self.s_x)
        f.mov(x_dims, ptr(x_dims, np_abi.ARRAY_DIMENSIONS))
        f.mov(out_dims, ptr(out, np_abi.ARRAY_DIMENSIONS))
        f.mov(j, 0)
        same, shapes_equal = f.label("same_shape"), f.label("shapes_equal")
        f.bind(same)
        f.cmp(j, self.s_ndim)
        f.jae(shapes_equal)
        f.mov(extent, ptr(x_dims, 0, j, 8))
        f.cmp(extent, ptr(out_dims, 0, j, 8))
        f.jne(general)
        f.add(j, 1)
        f.jmp(same)
        f.bind(shapes_equal)
        f.comment("out is x's memory itself (in place) or shares no byte with it: x < out + len "
                  "and out < x + len is an overlap")
        x_data, out_data, end = f.gp("x_data"), f.gp("out_data"), f.gp("end")
        f.mov(x_data, self.s_x)
        f.mov(x_data, ptr(x_data, np_abi.ARRAY_DATA))
        f.mov(out_data, self.s_out)
        f.mov(out_data, ptr(out_data, np_abi.ARRAY_DATA))
        f.cmp(x_data, out_data)
        f.je(out_checked)
        f.mov(end, out_data)
        f.add(end, self.s_length)
        f.cmp(x_data, end)
        f.jae(out_checked)
        f.mov(end, x_data)
        f.add(end, self.s_length)
        f.cmp(out_data, end)
        f.jb(general)
        f.bind(out_checked)

    def check_dtype(self, table, given):
        """dtype: absent, None, numpy.float32 or its descriptor (x is checked to be float32:
        dtype=numpy.float32 then changes nothing)."""
        f = self.f
        f.comment("dtype: absent, None, numpy.float32 or numpy.dtype(numpy.float32)")
        ok = f.label("dtype_ok")
        t = f.gp("t")
        f.mov(t, given)
        f.test(t, t)
        f.je(ok)
        for accepted in (NONE, FLOAT32_TYPE, FLOAT32_DESCR):
            f.cmp(t, ptr(table, accepted))
            f.je(ok)
        f.jmp(self.general)
        f.bind(ok)

    def check_str(self, table, given):
        f = self.f
        t, kind = f.gp("t"), f.gp("kind")
        f.mov(t, given)
        f.mov(kind, ptr(t, abi.OBJECT_TYPE))
        f.cmp(kind, ptr(table, STR_TYPE))
        f.jne(self.general)

    def output(self):
        """out (a new reference), or a new array like x; then the GIL released from
        GIL_MIN_BYTES. Returns callee-saved registers (x data, out data)."""
        f, rax, general = self.f, self.rax, self.general
        f.comment("the output: out (a new reference), or a new array like x")
        allocated, have_out, run = f.label("allocated"), f.label("have_out"), f.label("run")
        t = f.gp("t")
        f.mov(t, self.s_out)
        f.test(t, t)
        f.jne(have_out)
        f.mov(rax, self.s_table)
        f.mov(rax, ptr(rax, NEW_LIKE))
        f.test(rax, rax)
        f.je(general)
        f.mov(self.arg(0), self.s_x)
        f.mov(self.arg(1), np_abi.NPY_CORDER)
        f.mov(self.arg(2), 0)
        f.mov(self.arg(3), 0)
        f.call(rax)
        f.test(rax, rax)
        f.jne(allocated)
        f.comment("no memory: the Python function tries again and raises numpy's error")
        f.call(f.imported("PyErr_Clear"))
        f.jmp(general)
        f.bind(have_out)
        self.call("Py_IncRef", self.s_out)
        f.jmp(run)
        f.bind(allocated)
        f.mov(self.s_out, rax)
        f.bind(run)
        data_x = f.gp("data_x", callee_saved=True)
        data_out = f.gp("data_out", callee_saved=True)
        t = f.gp("t")
        f.mov(t, self.s_x)
        f.mov(data_x, ptr(t, np_abi.ARRAY_DATA))
        f.mov(t, self.s_out)
        f.mov(data_out, ptr(t, np_abi.ARRAY_DATA))
        f.comment("release the GIL around the kernels from GIL_MIN_BYTES")
        kept = f.label("gil_kept")
        f.mov(self.s_state, 0)
        f.mov(t, self.s_table)
        f.mov(t, ptr(t, GIL_MIN_BYTES))
        f.cmp(t, self.s_length)
        f.ja(kept)
        f.call(f.imported("PyEval_SaveThread"))
        f.mov(self.s_state, rax)
        f.bind(kept)
        return data_x, data_out

    def finish(self, host_rows=None):
        """Take the GIL back if it was released, return out; then the general path.
        host_rows: a slot that is non-zero when the kernels left rows to the host: then out is
        dropped and the call, x untouched, goes to the Python function."""
        f = self.f
        retaken = f.label("gil_retaken")
        f.mov(self.arg(0), self.s_state)
        f.test(self.arg(0), self.arg(0))
        f.je(retaken)
        f.call(f.imported("PyEval_RestoreThread"))
        f.bind(retaken)
        if host_rows is not None:
            done = f.label("kernels_done")
            t = f.gp("t")
            f.mov(t, host_rows)
            f.test(t, t)
            f.je(done)
            f.comment("rows for the host: drop out (the reference this entry holds), then the "
                      "Python function computes the call again")
            self.call("Py_DecRef", self.s_out)
            f.jmp(self.general)
            f.bind(done)
        f.mov(self.rax, self.s_out)
        f.ret()
        _general(f, self.general, self.s_args, self.s_table, self.s_nargs, self.s_kwnames)
        return f


def _rows_arguments(e: _Public):
    """Emit what softmax and log_softmax share: read x, axis and the keywords (out, axis,
    algorithm, isa, threads, scale, dtype); threads absent or 1, dtype as check_dtype says, x
    a float32 array of at least one dimension, not empty, axis its last, out as check_out says.
    Returns (table, s_algorithm, s_scale, rows, n): the table and rows and n (the product of
    all dimensions but the last, and the last) in callee-saved registers."""
    f, rax, general = e.f, e.rax, e.general
    s_axis, s_algorithm, s_threads = e.slot(), e.slot(), e.slot()
    s_scale, s_dtype = e.slot(), e.slot()
    kept_args, table = e.start(2, (s_axis,))
    f.mov(s_threads, 0)
    f.mov(s_scale, 0)
    f.mov(s_dtype, 0)
    auto = f.gp("auto")
    f.mov(auto, ptr(table, AUTO))
    f.mov(s_algorithm, auto)
    e.keywords(kept_args, table, ((NAME_OUT, e.s_out), (NAME_ALGORITHM, s_algorithm),
                                  (NAME_ISA, e.s_isa), (NAME_THREADS, s_threads),
                                  (NAME_AXIS, s_axis), (NAME_SCALE, s_scale),
                                  (NAME_DTYPE, s_dtype)), positional_too=(s_axis,))
    f.comment("threads: absent or the int 1")
    t = f.gp("t")
    threads_ok = f.label("threads_ok")
    f.mov(t, s_threads)
    f.test(t, t)
    f.je(threads_ok)
    f.cmp(t, ptr(table, ONE))
    f.jne(general)
    f.bind(threads_ok)
    e.check_dtype(table, s_dtype)

    x = e.check_x(table)
    f.comment("at least one dimension; rows = product of all dimensions but the last, n = the "
              "last; neither 0")
    ndim = f.gp("ndim")
    f.mov(ndim, e.s_ndim)
    f.test(ndim, ndim)
    f.je(general)
    rows, n = f.gp("rows", callee_saved=True), f.gp("n", callee_saved=True)
    dims, i = f.gp("dims"), f.gp("i")
    f.mov(dims, ptr(x, np_abi.ARRAY_DIMENSIONS))
    f.sub(ndim, 1)
    f.mov(rows, 1)
    f.mov(i, 0)
    dimension, last = f.label("dimension"), f.label("last_dimension")
    f.bind(dimension)
    f.cmp(i, ndim)
    f.jae(last)
    f.imul(rows, ptr(dims, 0, i, 8))
    f.add(i, 1)
    f.jmp(dimension)
    f.bind(last)
    f.mov(n, ptr(dims, 0, ndim, 8))
    f.test(n, n)
    f.je(general)
    f.test(rows, rows)
    f.je(general)
    elements = f.gp("elements")
    f.mov(elements, rows)
    f.imul(elements, n)
    e.length(elements)

    f.comment("axis: absent, or exactly an int equal to -1 or ndim - 1")
    axis_ok, axis_value = f.label("axis_ok"), f.label("axis_value")
    t, kind = f.gp("t"), f.gp("kind")
    f.mov(t, s_axis)
    f.test(t, t)
    f.je(axis_ok)
    f.mov(kind, ptr(t, abi.OBJECT_TYPE))
    f.cmp(kind, ptr(table, INT_TYPE))
    f.jne(general)
    e.call("PyLong_AsSsize_t", t)
    f.cmp(rax, -1)
    f.jne(axis_value)
    f.comment("-1: the value, or an int too large for Py_ssize_t (an error is set)")
    f.call(f.imported("PyErr_Occurred"))
    f.test(rax, rax)
    f.je(axis_ok)
    f.call(f.imported("PyErr_Clear"))
    f.jmp(general)
    f.bind(axis_value)
    t = f.gp("t")
    f.mov(t, e.s_ndim)
    f.sub(t, 1)
    f.cmp(rax, t)
    f.jne(general)
    f.bind(axis_ok)

    e.check_out(table)
    return table, s_algorithm, s_scale, rows, n


def build_softmax_public() -> Function:
    e = _Public(SOFTMAX_PUBLIC,
                "CPython METH_FASTCALL | METH_KEYWORDS softmax(x, axis=-1, *, algorithm, isa,\n"
                "out, threads): runs the common calls natively, hands the others to the Python\n"
                "function.")
    f, rax, general = e.f, e.rax, e.general
    s_routes, s_scale_bits, s_host = e.slot(), e.slot(), e.slot()
    table, s_algorithm, s_scale, rows, n = _rows_arguments(e)
    _scale(e, table, s_scale, s_routes, s_scale_bits)
    f.comment("algorithm and isa: str objects with a registered route")
    e.check_str(table, s_algorithm)
    e.check_str(table, e.s_isa)
    e.call("PyDict_GetItem", s_routes, s_algorithm)
    f.test(rax, rax)
    f.je(general)
    e.call("PyDict_GetItem", rax, e.s_isa)
    f.test(rax, rax)
    f.je(general)
    e.call("PyBytes_AsString", rax)
    length = f.gp("length")
    f.mov(length, e.s_length)
    driver, fallback = choose_driver(f, ptr(rax, 0), n, length, general)
    data_x, data_out = e.output()
    run_row_chunks(f, data_x, data_out, rows, n, driver, fallback, s_scale_bits, s_host)
    return e.finish(s_host)


def _scale(e: _Public, table, s_scale, s_routes, s_scale_bits) -> None:
    """Emit: s_routes = the unscaled routes, s_scale_bits = 0, unless scale is given and not
    None: then it must be exactly an int or a float found in the table's SCALES (validated by
    the Python function; a dict lookup by value, whose hash and comparison of exact ints and
    floats run no Python code), and a scale other than float32 1.0 takes the scaled routes with
    its bits. A scaled call in place goes to the Python function: a row the kernels leave to
    the host is computed again from x, which in place would be overwritten by then."""
    f, rax, general = e.f, e.rax, e.general
    f.comment("scale: absent or None (the unscaled kernels), or a registered int or float")
    t, kind = f.gp("t"), f.gp("kind")
    f.mov(t, ptr(table, ROUTES))
    f.mov(s_routes, t)
    f.mov(s_scale_bits, 0)
    done, exact = f.label("scale_done"), f.label("scale_type_ok")
    f.mov(t, s_scale)
    f.test(t, t)
    f.je(done)
    f.cmp(t, ptr(table, NONE))
    f.je(done)
    f.mov(kind, ptr(t, abi.OBJECT_TYPE))
    f.cmp(kind, ptr(table, FLOAT_TYPE))
    f.je(exact)
    f.cmp(kind, ptr(table, INT_TYPE))
    f.jne(general)
    f.bind(exact)
    e.call("PyDict_GetItem", ptr(table, SCALES), s_scale)
    f.test(rax, rax)
    f.je(general)
    e.call("PyBytes_AsString", rax)
    bits = f.gp("bits")
    f.mov(bits.r32, ptr(rax, 0, bits=32))
    f.cmp(bits, _ONE_BITS)
    f.je(done)
    f.mov(s_scale_bits, bits)
    scaled_routes = f.gp("scaled_routes")
    f.mov(scaled_routes, ptr(table, SCALED_ROUTES))
    f.mov(s_routes, scaled_routes)
    f.comment("scaled and in place: the Python function")
    x_data, out_data = f.gp("x_data"), f.gp("out_data")
    f.mov(out_data, e.s_out)
    f.test(out_data, out_data)
    f.je(done)
    f.mov(out_data, ptr(out_data, np_abi.ARRAY_DATA))
    f.mov(x_data, e.s_x)
    f.mov(x_data, ptr(x_data, np_abi.ARRAY_DATA))
    f.cmp(x_data, out_data)
    f.je(general)
    f.bind(done)


def build_log_softmax_public() -> Function:
    e = _Public(LOG_SOFTMAX_PUBLIC,
                "CPython METH_FASTCALL | METH_KEYWORDS log_softmax(x, axis=-1, *, algorithm,\n"
                "isa, out, threads): runs the common calls natively, hands the others to the\n"
                "Python function.")
    f, rax, general = e.f, e.rax, e.general
    table, s_algorithm, s_scale, rows, n = _rows_arguments(e)
    f.comment("scale: absent or None (scale= is the Python function's)")
    t = f.gp("t")
    unscaled = f.label("unscaled")
    f.mov(t, s_scale)
    f.test(t, t)
    f.je(unscaled)
    f.cmp(t, ptr(table, NONE))
    f.jne(general)
    f.bind(unscaled)
    f.comment("algorithm and isa: str objects with a registered route")
    e.check_str(table, s_algorithm)
    e.check_str(table, e.s_isa)
    e.call("PyDict_GetItem", ptr(table, ROUTES), s_algorithm)
    f.test(rax, rax)
    f.je(general)
    e.call("PyDict_GetItem", rax, e.s_isa)
    f.test(rax, rax)
    f.je(general)
    e.call("PyBytes_AsString", rax)
    length = f.gp("length")
    f.mov(length, e.s_length)
    driver, _ = choose_driver(f, ptr(rax, 0), n, length, general)
    data_x, data_out = e.output()
    _log_softmax_chunks(f, data_x, data_out, rows, n, driver)
    return e.finish()


def _log_softmax_chunks(f: Function, x, out, rows, n, driver) -> None:
    """Emit: log_softmax of `rows` packed rows of `n` elements from x into out, LOG_SOFTMAX_CHUNK
    rows per call of the log_softmax driver at [driver] (codegen/kernels/log_softmax.py:
    driver(x, y, n, rows, row_strides, states), states scratch on this stack). x, out and rows
    are callee-saved registers (consumed)."""
    rax = f.physical_gp("rax")

    def arg(index: int):
        return f.physical_gp(SYSV_ARGS[index])

    n_saved, row_bytes = f.stack(8).sized(64), f.stack(8).sized(64)
    strides, states = f.stack(16), f.stack(_STATE_BYTES * LOG_SOFTMAX_CHUNK)
    f.mov(rax, n)
    f.mov(n_saved, rax)
    f.comment("both row strides are n * 4 bytes (packed rows)")
    f.shl(rax, 2)
    f.mov(row_bytes, rax)
    f.mov(strides.sized(64), rax)
    f.mov((strides + 8).sized(64), rax)
    chunk = f.gp("chunk", callee_saved=True)
    top = f.label("log_softmax_chunk")
    f.bind(top)
    f.comment(f"chunk = min(rows left, {LOG_SOFTMAX_CHUNK}); driver(x, out, n, chunk, strides, "
              f"states)")
    f.mov(chunk, LOG_SOFTMAX_CHUNK)
    f.cmp(rows, chunk)
    f.cmovb(chunk, rows)
    f.mov(arg(0), x)
    f.mov(arg(1), out)
    f.mov(arg(2), n_saved)
    f.mov(arg(3), chunk)
    f.lea(arg(4), strides)
    f.lea(arg(5), states)
    f.mov(rax, driver)
    f.call(rax)
    f.mov(rax, row_bytes)
    f.imul(rax, chunk)
    f.add(x, rax)
    f.add(out, rax)
    f.sub(rows, chunk)
    f.jne(top)


def build_exp_public() -> Function:
    e = _Public(EXP_PUBLIC,
                "CPython METH_FASTCALL | METH_KEYWORDS exp(x, *, isa, out): runs the common\n"
                "calls natively, hands the others to the Python function.")
    f, rax, general = e.f, e.rax, e.general
    s_dtype = e.slot()
    kept_args, table = e.start(1)
    f.mov(s_dtype, 0)
    e.keywords(kept_args, table, ((NAME_OUT, e.s_out), (NAME_ISA, e.s_isa),
                                  (NAME_DTYPE, s_dtype)))
    e.check_dtype(table, s_dtype)
    x = e.check_x(table)
    f.comment("elements = product of the dimensions (1 for a 0-d array); not 0")
    elements, dims, i = f.gp("elements"), f.gp("dims"), f.gp("i")
    f.mov(dims, ptr(x, np_abi.ARRAY_DIMENSIONS))
    f.mov(elements, 1)
    f.mov(i, 0)
    dimension, counted = f.label("dimension"), f.label("counted")
    f.bind(dimension)
    f.cmp(i, e.s_ndim)
    f.jae(counted)
    f.imul(elements, ptr(dims, 0, i, 8))
    f.add(i, 1)
    f.jmp(dimension)
    f.bind(counted)
    f.test(elements, elements)
    f.je(general)
    e.length(elements)
    e.check_out(table)
    f.comment("isa: a str object with a registered kernel")
    e.check_str(table, e.s_isa)
    e.call("PyDict_GetItem", ptr(table, ROUTES), e.s_isa)
    f.test(rax, rax)
    f.je(general)
    e.call("PyBytes_AsString", rax)
    kernel = e.slot()
    address = f.gp("kernel")
    f.mov(address, ptr(rax, 0))
    f.mov(kernel, address)
    data_x, data_out = e.output()
    f.comment("kernel(x, out, len / 4)")
    f.mov(e.arg(0), data_x)
    f.mov(e.arg(1), data_out)
    f.mov(e.arg(2), e.s_length)
    f.shr(e.arg(2), 2)
    f.mov(rax, kernel)
    f.call(rax)
    return e.finish()


def _check_array(f: Function, array, table, flags: int, general) -> None:
    """Emit: `array` is exactly the table's array type with the float32 descriptor and all of
    `flags` set, else jump to `general`."""
    kind = f.gp("kind")
    f.mov(kind, ptr(array, abi.OBJECT_TYPE))
    f.cmp(kind, ptr(table, ARRAY_TYPE))
    f.jne(general)
    f.mov(kind, ptr(array, np_abi.ARRAY_DESCR))
    f.cmp(kind, ptr(table, FLOAT32_DESCR))
    f.jne(general)
    f.mov(kind.r32, ptr(array, np_abi.ARRAY_FLAGS, bits=32))
    f.and_(kind.r32, flags)
    f.cmp(kind.r32, flags)
    f.jne(general)
def _general(f: Function, general, s_args, s_table, s_nargs, s_kwnames) -> None:
    """Emit the general path: return general(*args, **dict(zip(kwnames, args[nargs:]))),
    the call exactly as given; NULL (an exception set) if building the arguments fails."""
    rax = f.physical_gp("rax")

    def arg(index: int):
        return f.physical_gp(SYSV_ARGS[index])

    s_tuple, s_dict, s_result, s_count = (f.stack(8).sized(64) for _ in range(4))
    f.bind(general)
    f.comment("every other call: the Python function, with the arguments as given")
    kept_args = f.gp("general_args", callee_saved=True)
    f.mov(kept_args, s_args)
    failed, done = f.label("failed"), f.label("done")
    f.mov(arg(0), s_nargs)
    f.call(f.imported("PyTuple_New"))
    f.test(rax, rax)
    f.je(done)
    f.mov(s_tuple, rax)
    f.mov(s_dict, 0)
    index = f.gp("item", callee_saved=True)
    f.mov(index, 0)
    positional, positional_done = f.label("positional"), f.label("positional_done")
    f.bind(positional)
    f.cmp(index, s_nargs)
    f.jae(positional_done)
    f.comment("PyTuple_SetItem steals a reference: give it one")
    f.mov(arg(0), ptr(kept_args, 0, index, 8))
    f.call(f.imported("Py_IncRef"))
    f.mov(arg(0), s_tuple)
    f.mov(arg(1), index)
    f.mov(arg(2), ptr(kept_args, 0, index, 8))
    f.call(f.imported("PyTuple_SetItem"))
    f.add(index, 1)
    f.jmp(positional)
    f.bind(positional_done)
    call_it = f.label("call")
    f.mov(rax, s_kwnames)
    f.test(rax, rax)
    f.je(call_it)
    f.call(f.imported("PyDict_New"))
    f.test(rax, rax)
    f.je(failed)
    f.mov(s_dict, rax)
    f.mov(arg(0), s_kwnames)
    f.call(f.imported("PyTuple_Size"))
    f.mov(s_count, rax)
    f.mov(index, 0)
    keyword, t = f.label("keyword"), f.gp("t")
    f.bind(keyword)
    f.cmp(index, s_count)
    f.jae(call_it)
    f.mov(arg(0), s_kwnames)
    f.mov(arg(1), index)
    f.call(f.imported("PyTuple_GetItem"))
    f.mov(arg(0), s_dict)
    f.mov(arg(1), rax)
    f.mov(t, s_nargs)
    f.add(t, index)
    f.mov(arg(2), ptr(kept_args, 0, t, 8))
    f.call(f.imported("PyDict_SetItem"))
    f.test(rax.r32, rax.r32)
    f.jne(failed)
    f.add(index, 1)
    f.jmp(keyword)
    f.bind(call_it)
    f.mov(arg(0), s_table)
    f.mov(arg(0), ptr(arg(0), GENERAL))
    f.mov(arg(1), s_tuple)
    f.mov(arg(2), s_dict)
    f.call(f.imported("PyObject_Call"))
    f.mov(s_result, rax)
    _drop(f, s_tuple, s_dict)
    f.mov(rax, s_result)
    f.ret()
    f.bind(failed)
    _drop(f, s_tuple, s_dict)
    f.mov(rax, 0)
    f.bind(done)
    f.ret()


def _drop(f: Function, s_tuple, s_dict) -> None:
    """Emit: Py_DecRef the argument tuple, and the keyword dict if one was made."""
    rdi = f.physical_gp("rdi")
    f.mov(rdi, s_tuple)
    f.call(f.imported("Py_DecRef"))
    no_dict = f.label("no_dict")
    f.mov(rdi, s_dict)
    f.test(rdi, rdi)
    f.je(no_dict)
    f.call(f.imported("Py_DecRef"))
    f.bind(no_dict)

