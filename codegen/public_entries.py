"""softjit.softmax itself as a generated builtin: a METH_FASTCALL | METH_KEYWORDS function that
takes the documented arguments, runs the common calls natively and hands every other call, as
given, to the Python function that owns the checks and the error messages.

    PyObject *softmax(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)

The call is run natively when all of these hold (anything else goes to the Python function,
which raises what a bad argument deserves or runs the general path):

- one or two positional arguments (x, axis), keywords only among out, axis, algorithm, isa and
  threads, each named by the very interned string object the table holds (any keyword the entry
  does not know, e.g. one a later softjit adds, goes to the Python function);
- x is exactly numpy.ndarray with the float32 descriptor, C-contiguous, aligned, at least one
  dimension and not empty; axis absent, or an int (exactly) equal to -1 or x.ndim - 1;
  threads absent or the int 1;
- out absent or None (a new array like x is made, as numpy.empty(x.shape, float32) does), or
  exactly numpy.ndarray, float32, C-contiguous, aligned, writable, of x's shape, and x itself
  or sharing no byte with x;
- algorithm and isa (default: the table's "auto") are str objects registered in the routes
  dict, {algorithm: {isa: rows}}, which the Python function fills once it has validated them;
  rows is a bytes object of table rows as the softmax_rows entry's (codegen/entries.py), and
  the row this call fits has a driver.

The arrays' fields are read where numpy keeps them (codegen/numpy_abi.py) rather than through
buffer requests. The GIL is released around the kernels when x holds at least the table's
GIL_MIN_BYTES: below that the release and the retake cost more than they could give another
thread. Returns out (a new reference).

`self` is a bytes object of 64-bit words (built by runtime/entries.py); the objects it names are
kept alive by the runtime for the life of the process.
"""
from __future__ import annotations

from softjit.codegen import cpython_abi as abi
from softjit.codegen import numpy_abi as np_abi
from softjit.codegen.abi import SYSV_ARGS, Param, Signature
from softjit.codegen.entries import choose_driver, run_row_chunks
from softjit.codegen.isa import X86_64
from softjit.codegen.operands import ptr
from softjit.codegen.stream import Function

SOFTMAX_PUBLIC = "softjit_softmax_public_entry"

# The table (`self`), byte offsets of 64-bit words: object addresses, then numbers.
ARRAY_TYPE = 0  # numpy.ndarray
FLOAT32_DESCR = 8  # numpy.dtype(numpy.float32)
GENERAL = 16  # the Python function every other call goes to
ROUTES = 24  # {algorithm: {isa: rows bytes}}
NAME_OUT, NAME_AXIS, NAME_ALGORITHM, NAME_ISA, NAME_THREADS = 32, 40, 48, 56, 64  # interned
AUTO = 72  # the str "auto": algorithm and isa when not given
ONE = 80  # the int 1
INT_TYPE = 88  # int
STR_TYPE = 96  # str
NONE = 104  # None
NEW_LIKE = 112  # PyArray_NewLikeArray, or 0: new outputs go to the Python function
GIL_MIN_BYTES = 120  # release the GIL for inputs of at least this many bytes
TABLE_WORDS = 16

KEYWORDS = ("out", "axis", "algorithm", "isa", "threads")

_X_FLAGS = np_abi.C_CONTIGUOUS | np_abi.ALIGNED
_OUT_FLAGS = _X_FLAGS | np_abi.WRITEABLE


def build_softmax_public() -> Function:
    f = Function(Signature(
        SOFTMAX_PUBLIC,
        (Param("void*", "self"), Param("void* const*", "args"), Param("ptrdiff_t", "nargs"),
         Param("void*", "kwnames")), "void*",
        "CPython METH_FASTCALL | METH_KEYWORDS softmax(x, axis=-1, *, algorithm, isa, out,\n"
        "threads): runs the common calls natively, hands the others to the Python function."),
        X86_64)
    rax = f.physical_gp("rax")

    def arg(index: int):
        return f.physical_gp(SYSV_ARGS[index])

    def slot():
        return f.stack(8).sized(64)

    def call(name: str, *arguments):
        for index, value in enumerate(arguments):
            f.mov(arg(index), value)
        f.call(f.imported(name))

    general = f.label("general")
    self_, args, nargs, kwnames = f.args
    s_nargs, s_kwnames, s_count = slot(), slot(), slot()
    s_x, s_out, s_axis, s_algorithm, s_isa, s_threads = (slot() for _ in range(6))
    s_ndim, s_length, s_state = slot(), slot(), slot()
    s_args, s_table = slot(), slot()
    kept_args = f.gp("args", callee_saved=True)
    table = f.gp("table", callee_saved=True)
    f.mov(kept_args, args)
    f.mov(s_args, args)
    f.mov(s_nargs, nargs)
    f.mov(s_kwnames, kwnames)
    f.comment("the table is the bytes object self")
    call("PyBytes_AsString", self_)
    f.mov(table, rax)
    f.mov(s_table, rax)

    f.comment("positional: x, or x and axis")
    t = f.gp("t")
    f.mov(t, s_nargs)
    f.cmp(t, 1)
    f.jb(general)
    f.cmp(t, 2)
    f.ja(general)
    f.mov(s_axis, 0)
    one_positional = f.label("one_positional")
    f.cmp(t, 1)
    f.je(one_positional)
    f.mov(t, ptr(kept_args, 8))
    f.mov(s_axis, t)
    f.bind(one_positional)
    f.mov(t, ptr(kept_args, 0))
    f.mov(s_x, t)
    f.mov(s_out, 0)
    f.mov(s_threads, 0)
    f.mov(t, ptr(table, AUTO))
    f.mov(s_algorithm, t)
    f.mov(s_isa, t)

    f.comment("keywords: each name compared with the table's interned names")
    keywords_done = f.label("keywords_done")
    f.mov(t, s_kwnames)
    f.test(t, t)
    f.je(keywords_done)
    call("PyTuple_Size", t)
    f.mov(s_count, rax)
    index = f.gp("keyword", callee_saved=True)
    f.mov(index, 0)
    keyword, next_keyword = f.label("keyword"), f.label("next_keyword")
    f.bind(keyword)
    f.cmp(index, s_count)
    f.jae(keywords_done)
    call("PyTuple_GetItem", s_kwnames, index)
    f.comment("its value: args[nargs + i]")
    t, k = f.gp("t"), f.gp("value")
    f.mov(t, s_nargs)
    f.add(t, index)
    f.mov(k, ptr(kept_args, 0, t, 8))
    for offset, target in ((NAME_OUT, s_out), (NAME_ALGORITHM, s_algorithm), (NAME_ISA, s_isa),
                           (NAME_THREADS, s_threads), (NAME_AXIS, s_axis)):
        other = f.label("other_name")
        f.cmp(rax, ptr(table, offset))
        f.jne(other)
        if target is s_axis:
            f.comment("axis given twice (positionally too): the Python function says so")
            f.cmp(s_axis, 0)
            f.jne(general)
        f.mov(target, k)
        f.jmp(next_keyword)
        f.bind(other)
    f.comment("a keyword this entry does not know")
    f.jmp(general)
    f.bind(next_keyword)
    f.add(index, 1)
    f.jmp(keyword)
    f.bind(keywords_done)

    f.comment("threads: absent or the int 1")
    t = f.gp("t")
    threads_ok = f.label("threads_ok")
    f.mov(t, s_threads)
    f.test(t, t)
    f.je(threads_ok)
    f.cmp(t, ptr(table, ONE))
    f.jne(general)
    f.bind(threads_ok)
    f.comment("out=None: a new output")
    out_given = f.label("out_given")
    f.mov(t, s_out)
    f.cmp(t, ptr(table, NONE))
    f.jne(out_given)
    f.mov(s_out, 0)
    f.bind(out_given)

    f.comment("x: exactly ndarray, float32, C-contiguous and aligned, at least one dimension")
    x = f.gp("x_object")
    f.mov(x, s_x)
    _check_array(f, x, table, _X_FLAGS, general)
    ndim = f.gp("ndim")
    f.mov(ndim.r32, ptr(x, np_abi.ARRAY_NDIM, bits=32))
    f.test(ndim, ndim)
    f.je(general)
    f.mov(s_ndim, ndim)
    f.comment("rows = product of all dimensions but the last, n = the last; neither 0")
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
    t = f.gp("t")
    f.mov(t, rows)
    f.imul(t, n)
    f.shl(t, 2)
    f.mov(s_length, t)

    f.comment("axis: absent, or exactly an int equal to -1 or ndim - 1")
    axis_ok, axis_value = f.label("axis_ok"), f.label("axis_value")
    t, k = f.gp("t"), f.gp("kind")
    f.mov(t, s_axis)
    f.test(t, t)
    f.je(axis_ok)
    f.mov(k, ptr(t, abi.OBJECT_TYPE))
    f.cmp(k, ptr(table, INT_TYPE))
    f.jne(general)
    call("PyLong_AsSsize_t", t)
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
    f.mov(t, s_ndim)
    f.sub(t, 1)
    f.cmp(rax, t)
    f.jne(general)
    f.bind(axis_ok)

    f.comment("out, when given: exactly ndarray, float32, C-contiguous, aligned, writable, "
              "x's shape")
    out_checked = f.label("out_checked")
    out, t = f.gp("out_object"), f.gp("t")
    f.mov(out, s_out)
    f.test(out, out)
    f.je(out_checked)
    _check_array(f, out, table, _OUT_FLAGS, general)
    f.mov(t.r32, ptr(out, np_abi.ARRAY_NDIM, bits=32))
    f.cmp(t, s_ndim)
    f.jne(general)
    x_dims, out_dims, j, extent = f.gp("x_dims"), f.gp("out_dims"), f.gp("j"), f.gp("extent")
    f.mov(x_dims, s_x)
    f.mov(x_dims, ptr(x_dims, np_abi.ARRAY_DIMENSIONS))
    f.mov(out_dims, ptr(out, np_abi.ARRAY_DIMENSIONS))
    f.mov(j, 0)
    same, shapes_equal = f.label("same_shape"), f.label("shapes_equal")
    f.bind(same)
    f.cmp(j, s_ndim)
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
    f.mov(x_data, s_x)
    f.mov(x_data, ptr(x_data, np_abi.ARRAY_DATA))
    f.mov(out_data, s_out)
    f.mov(out_data, ptr(out_data, np_abi.ARRAY_DATA))
    f.cmp(x_data, out_data)
    f.je(out_checked)
    f.mov(end, out_data)
    f.add(end, s_length)
    f.cmp(x_data, end)
    f.jae(out_checked)
    f.mov(end, x_data)
    f.add(end, s_length)
    f.cmp(out_data, end)
    f.jb(general)
    f.bind(out_checked)

    f.comment("algorithm and isa: str objects with a registered route")
    for given in (s_algorithm, s_isa):
        t, k = f.gp("t"), f.gp("kind")
        f.mov(t, given)
        f.mov(k, ptr(t, abi.OBJECT_TYPE))
        f.cmp(k, ptr(table, STR_TYPE))
        f.jne(general)
    call("PyDict_GetItem", ptr(table, ROUTES), s_algorithm)
    f.test(rax, rax)
    f.je(general)
    call("PyDict_GetItem", rax, s_isa)
    f.test(rax, rax)
    f.je(general)
    call("PyBytes_AsString", rax)
    length = f.gp("length")
    f.mov(length, s_length)
    driver, fallback = choose_driver(f, ptr(rax, 0), n, length, general)

    f.comment("the output: out (a new reference), or a new array like x")
    allocated, have_out = f.label("allocated"), f.label("have_out")
    t = f.gp("t")
    f.mov(t, s_out)
    f.test(t, t)
    f.jne(have_out)
    f.mov(rax, ptr(table, NEW_LIKE))
    f.test(rax, rax)
    f.je(general)
    f.mov(arg(0), s_x)
    f.mov(arg(1), np_abi.NPY_CORDER)
    f.mov(arg(2), 0)
    f.mov(arg(3), 0)
    f.call(rax)
    f.test(rax, rax)
    f.jne(allocated)
    f.comment("no memory: the Python function tries again and raises numpy's error")
    f.call(f.imported("PyErr_Clear"))
    f.jmp(general)
    f.bind(have_out)
    call("Py_IncRef", s_out)
    run = f.label("run")
    f.jmp(run)
    f.bind(allocated)
    f.mov(s_out, rax)
    f.bind(run)

    data_x, data_out = f.gp("data_x", callee_saved=True), f.gp("data_out", callee_saved=True)
    t = f.gp("t")
    f.mov(t, s_x)
    f.mov(data_x, ptr(t, np_abi.ARRAY_DATA))
    f.mov(t, s_out)
    f.mov(data_out, ptr(t, np_abi.ARRAY_DATA))
    f.comment("release the GIL around the kernels from GIL_MIN_BYTES")
    kept = f.label("gil_kept")
    f.mov(s_state, 0)
    f.mov(t, s_length)
    f.cmp(t, ptr(table, GIL_MIN_BYTES))
    f.jb(kept)
    f.call(f.imported("PyEval_SaveThread"))
    f.mov(s_state, rax)
    f.bind(kept)
    run_row_chunks(f, data_x, data_out, rows, n, driver, fallback)
    retaken = f.label("gil_retaken")
    f.mov(arg(0), s_state)
    f.test(arg(0), arg(0))
    f.je(retaken)
    f.call(f.imported("PyEval_RestoreThread"))
    f.bind(retaken)
    f.mov(rax, s_out)
    f.ret()

    _general(f, general, s_args, s_table, s_nargs, s_kwnames)
    return f


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

