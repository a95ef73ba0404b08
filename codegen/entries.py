"""CPython entry points in assembly: METH_FASTCALL functions that take numpy arrays through the
buffer protocol and call a kernel, so that a Python call reaches the kernel without cffi.

    PyObject *entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs)

Two entries, both called with (x, out):

- softmax_rows: softmax of every row of a C-contiguous float32 array (the last axis) into out,
  through a row driver chosen by row length and size from a table; rows the driver marks for
  recomputation are redone at once with the table row's fallback driver.
- elementwise: out = f(x) through a kernel f(x, y, n) (exp).

`self` is a bytes object holding the entry's table (built by runtime/entries.py): the exact type
both arrays must have (numpy.ndarray), then the kernel addresses. An entry accepts the call only
when x and out are exactly that type, export C-contiguous buffers of format "f" and item size 4,
out is writable, the shapes are equal and not empty, both are 4-byte aligned, and out is x itself
or shares no byte with it. It then releases the GIL around the kernel and returns an int: the
number of rows recomputed (0 for elementwise). Anything else returns NotImplemented with no
exception set and nothing written, and the caller takes its general path, which raises the
error a bad argument deserves. Every buffer acquired is released on every path.

Only the stable ABI is used (codegen/cpython_abi.py): one object serves every CPython >= 3.10
with the GIL. The module imports CPython's functions from the process it is loaded into, so it
loads only into such a process; the kernel modules themselves import nothing.
"""
from __future__ import annotations

from softjit.codegen import cpython_abi as abi
from softjit.codegen.module import MethodRecord, Module
from softjit.codegen.isa import X86_64
from softjit.codegen.operands import Mem, ptr
from softjit.codegen.abi import (ROW_STRIDES_INPUT_SCALE, ROW_STRIDES_SCALED_WORDS, SYSV_ARGS,
                                 Param, Signature)
from softjit.codegen.stream import Function

# The module's name, symbols and table layout are shared with the runtime (entry_layout.py).
from softjit.codegen.entry_layout import (  # noqa: E402 (re-exported: the layout's names)
    ELEMENTWISE, ELEMENTWISE_RECORD, FITS_ALL, MODULE_NAME, ROW_DRIVER, ROW_FALLBACK,
    ROW_MAX_BYTES, ROW_MAX_N, ROW_SIZE, SOFTMAX_ROWS, SOFTMAX_ROWS_RECORD, STATUS_CHUNK,
    TABLE_ARRAY_TYPE, TABLE_KERNEL, TABLE_ROWS)

_X_FLAGS = abi.PYBUF_C_CONTIGUOUS | abi.PYBUF_FORMAT
_OUT_FLAGS = _X_FLAGS | abi.PYBUF_WRITABLE


def _signature(name: str, doc: str) -> Signature:
    return Signature(name, (Param("void*", "self"), Param("void* const*", "args"),
                            Param("ptrdiff_t", "nargs")), "void*", doc)


class _Entry:
    """The parts both entries share: argument and buffer checks, the rejection paths."""

    def __init__(self, f: Function):
        self.f = f
        self.x_buffer = f.stack(abi.BUFFER_SIZE)
        self.out_buffer = f.stack(abi.BUFFER_SIZE)
        self.not_implemented = f.label("not_implemented")
        self.clear_error = f.label("clear_error")
        self.release_x = f.label("release_x")
        self.reject = f.label("reject")

    def reg(self, name: str):
        return self.f.physical_gp(name)

    def arg(self, index: int):
        """The register of a called function's argument `index` (SysV order, codegen/abi.py)."""
        return self.f.physical_gp(SYSV_ARGS[index])

    def acquire(self):
        """Check the arguments and get both buffers; returns the table register."""
        f, reg, arg = self.f, self.reg, self.arg
        self_, args, nargs = f.args
        f.comment("exactly two arguments: x and out")
        f.cmp(nargs, 2)
        f.jne(self.not_implemented)
        kept_args = f.gp("args", callee_saved=True)
        f.mov(kept_args, args)
        f.comment("the table is the bytes object self")
        f.mov(arg(0), self_)
        f.call(f.imported("PyBytes_AsString"))
        table = f.gp("table", callee_saved=True)
        f.mov(table, reg("rax"))
        f.comment("x and out are exactly the table's array type (no subclass, no masked array)")
        argument, kind = f.gp("argument"), f.gp("kind")
        for index in (0, 1):
            f.mov(argument, ptr(kept_args, 8 * index))
            f.mov(kind, ptr(argument, abi.OBJECT_TYPE))
            f.cmp(kind, ptr(table, TABLE_ARRAY_TYPE))
            f.jne(self.not_implemented)
        f.comment("x: a C-contiguous buffer with its format; out: the same, writable")
        for index, buffer, flags, failed in ((0, self.x_buffer, _X_FLAGS, self.clear_error),
                                              (1, self.out_buffer, _OUT_FLAGS, self.release_x)):
            f.mov(arg(0), ptr(kept_args, 8 * index))
            f.lea(arg(1), buffer)
            f.mov(arg(2), flags)
            f.call(f.imported("PyObject_GetBuffer"))
            f.test(reg("rax").r32, reg("rax").r32)
            f.jne(failed)
        f.comment('both hold float32: format "f", item size 4')
        pointer = f.gp("format")
        for buffer in (self.x_buffer, self.out_buffer):
            f.mov(pointer, buffer + abi.BUFFER_FORMAT)
            f.test(pointer, pointer)
            f.je(self.reject)
            f.cmp(ptr(pointer, bits=16), abi.FLOAT32_FORMAT_WORD)
            f.jne(self.reject)
            f.cmp((buffer + abi.BUFFER_ITEMSIZE).sized(64), abi.FLOAT32_ITEMSIZE)
            f.jne(self.reject)
        return table

    def shapes(self, allow_scalar: bool):
        """Compare the shapes; returns (rows, n): the product of all dimensions but the last,
        and the last (1 for a 0-d array when allowed). Empty arrays are rejected."""
        f = self.f
        f.comment("equal shapes; rows = product of all dimensions but the last, n = the last")
        ndim = f.gp("ndim")
        f.mov(ndim.r32, (self.x_buffer + abi.BUFFER_NDIM).sized(32))
        f.cmp(ndim.r32, (self.out_buffer + abi.BUFFER_NDIM).sized(32))
        f.jne(self.reject)
        rows = f.gp("rows", callee_saved=True)
        n = f.gp("n", callee_saved=True)
        f.mov(rows, 1)
        f.mov(n, 1)
        shape_done = f.label("shape_done")
        f.test(ndim, ndim)
        f.je(shape_done if allow_scalar else self.reject)
        x_shape, out_shape, index, extent = f.gp("x_shape"), f.gp("out_shape"), f.gp("i"), f.gp("extent")
        f.mov(x_shape, self.x_buffer + abi.BUFFER_SHAPE)
        f.mov(out_shape, self.out_buffer + abi.BUFFER_SHAPE)
        f.sub(ndim, 1)
        f.mov(index, 0)
        top, last = f.label("dimension"), f.label("last_dimension")
        f.bind(top)
        f.cmp(index, ndim)
        f.jae(last)
        f.mov(extent, ptr(x_shape, 0, index, 8))
        f.cmp(extent, ptr(out_shape, 0, index, 8))
        f.jne(self.reject)
        f.imul(rows, extent)
        f.add(index, 1)
        f.jmp(top)
        f.bind(last)
        f.mov(n, ptr(x_shape, 0, ndim, 8))
        f.cmp(n, ptr(out_shape, 0, ndim, 8))
        f.jne(self.reject)
        f.bind(shape_done)
        f.comment("not empty")
        f.test(n, n)
        f.je(self.reject)
        f.test(rows, rows)
        f.je(self.reject)
        return rows, n

    def data(self):
        """Check alignment and overlap; returns the (x, out) data pointers and the length."""
        f = self.f
        x, out = f.gp("x", callee_saved=True), f.gp("out", callee_saved=True)
        length, scratch = f.gp("length", callee_saved=True), f.gp("scratch")
        f.mov(x, self.x_buffer + abi.BUFFER_BUF)
        f.mov(out, self.out_buffer + abi.BUFFER_BUF)
        f.mov(length, self.x_buffer + abi.BUFFER_LEN)
        f.comment("both 4-byte aligned")
        f.mov(scratch, x)
        f.or_(scratch, out)
        f.test(scratch, 3)
        f.jne(self.reject)
        f.comment("out is x itself (in place) or shares no byte with it: x < out + len and "
                  "out < x + len is an overlap")
        apart = f.label("apart")
        f.cmp(x, out)
        f.je(apart)
        f.mov(scratch, out)
        f.add(scratch, length)
        f.cmp(x, scratch)
        f.jae(apart)
        f.mov(scratch, x)
        f.add(scratch, length)
        f.cmp(out, scratch)
        f.jb(self.reject)
        f.bind(apart)
        return x, out, length

    def release_and_return(self, result):
        """Take the GIL back is the caller's job; release both buffers, return int(result)."""
        f, arg = self.f, self.arg
        for buffer in (self.out_buffer, self.x_buffer):
            f.lea(arg(0), buffer)
            f.call(f.imported("PyBuffer_Release"))
        f.mov(arg(0), result)
        f.call(f.imported("PyLong_FromSsize_t"))
        f.ret()

    def rejections(self):
        """The paths that return NotImplemented: buffers released, any exception cleared."""
        f, reg, arg = self.f, self.reg, self.arg
        f.bind(self.reject)
        f.comment("refused after both buffers were acquired")
        f.lea(arg(0), self.out_buffer)
        f.call(f.imported("PyBuffer_Release"))
        f.lea(arg(0), self.x_buffer)
        f.call(f.imported("PyBuffer_Release"))
        f.jmp(self.not_implemented)
        f.bind(self.release_x)
        f.comment("out has no acceptable buffer: release x's, drop the exception")
        f.lea(arg(0), self.x_buffer)
        f.call(f.imported("PyBuffer_Release"))
        f.bind(self.clear_error)
        f.call(f.imported("PyErr_Clear"))
        f.bind(self.not_implemented)
        f.comment("return a new reference to NotImplemented")
        f.mov(arg(0), f.got("_Py_NotImplementedStruct"))
        f.call(f.imported("Py_IncRef"))
        f.mov(reg("rax"), f.got("_Py_NotImplementedStruct"))
        f.ret()


def choose_driver(f: Function, first_row: Mem, n, length, refuse):
    """Emit: the first table row from address `first_row` with n <= max_n and length <= max_bytes
    (the table's last row fits every call); a driver of 0 jumps to `refuse`. Returns the stack
    slots (driver, fallback) the row's addresses were copied to, so the table is not read again
    (it may be freed once the GIL is released)."""
    rax = f.physical_gp("rax")
    f.comment("the first table row with n <= max_n and len <= max_bytes")
    row = f.gp("row")
    f.lea(row, first_row)
    walk, found, next_row = f.label("walk"), f.label("found"), f.label("next_row")
    f.bind(walk)
    f.cmp(n, ptr(row, ROW_MAX_N))
    f.ja(next_row)
    f.cmp(length, ptr(row, ROW_MAX_BYTES))
    f.jbe(found)
    f.bind(next_row)
    f.add(row, ROW_SIZE)
    f.jmp(walk)
    f.bind(found)
    driver, fallback = f.stack(8).sized(64), f.stack(8).sized(64)
    f.mov(rax, ptr(row, ROW_DRIVER))
    f.comment("driver 0: this call is not the entry's to run")
    f.test(rax, rax)
    f.je(refuse)
    f.mov(driver, rax)
    f.mov(rax, ptr(row, ROW_FALLBACK))
    f.mov(fallback, rax)
    return driver, fallback


def run_row_chunks(f: Function, x, out, rows, n, driver: Mem, fallback: Mem,
                   input_scale: Mem | None = None, host_rows: Mem | None = None):
    """Emit: softmax of `rows` packed rows of `n` elements from x into out, STATUS_CHUNK rows per
    call of the row driver at [driver]; rows it marks are redone at once by [fallback]. x, out
    and rows are callee-saved registers (consumed); n a register or slot read once. Returns the
    callee-saved register holding the number of rows recomputed.

    input_scale: a slot holding the float32 bits of a scaled driver's input scale, written
    after the stride pair (abi.ROW_STRIDES_INPUT_SCALE, read by scaled drivers only).
    host_rows: a slot (zeroed here) that becomes non-zero when [fallback] marks a row in turn:
    a row the kernels leave to the host (runtime/scaled.py), not written."""
    rax = f.physical_gp("rax")

    def arg(index: int):
        return f.physical_gp(SYSV_ARGS[index])

    n_saved, row_bytes = f.stack(8).sized(64), f.stack(8).sized(64)
    strides = f.stack(16 if input_scale is None else 8 * ROW_STRIDES_SCALED_WORDS)
    status, scratch_status = f.stack(4 * STATUS_CHUNK), f.stack(4)
    if input_scale is not None:
        f.comment("the input scale after the stride pair")
        f.mov(rax, input_scale)
        f.mov((strides + ROW_STRIDES_INPUT_SCALE).sized(64), rax)
    if host_rows is not None:
        f.mov(host_rows, 0)
    f.mov(rax, n)
    f.mov(n_saved, rax)
    f.comment("both row strides are n * 4 bytes (packed rows)")
    f.shl(rax, 2)
    f.mov(row_bytes, rax)
    f.mov(strides.sized(64), rax)
    f.mov((strides + 8).sized(64), rax)
    recomputed, chunk = f.gp("recomputed", callee_saved=True), f.gp("chunk", callee_saved=True)
    f.mov(recomputed, 0)
    top, advance = f.label("chunk"), f.label("advance")
    f.bind(top)
    f.comment(f"chunk = min(rows left, {STATUS_CHUNK}); driver(x, out, n, chunk, strides, status)")
    f.mov(chunk, STATUS_CHUNK)
    f.cmp(rows, chunk)
    f.cmovb(chunk, rows)
    f.mov(arg(0), x)
    f.mov(arg(1), out)
    f.mov(arg(2), n_saved)
    f.mov(arg(3), chunk)
    f.lea(arg(4), strides)
    f.lea(arg(5), status)
    f.mov(rax, driver)
    f.call(rax)
    f.test(rax, rax)
    f.je(advance)
    f.comment("rows marked in this chunk: fallback(x + i*row_bytes, out + i*row_bytes, n, 1, ...)")
    index = f.gp("marked_row", callee_saved=True)
    f.mov(index, 0)
    scan, skip = f.label("scan"), f.label("skip")
    f.bind(scan)
    f.cmp(Mem(status.base, index.view(64), 4, status.disp, 32), 0)
    f.je(skip)
    f.mov(rax, row_bytes)
    f.imul(rax, index)
    f.lea(arg(0), ptr(x, 0, rax))
    f.lea(arg(1), ptr(out, 0, rax))
    f.mov(arg(2), n_saved)
    f.mov(arg(3), 1)
    f.lea(arg(4), strides)
    f.lea(arg(5), scratch_status)
    f.mov(rax, fallback)
    f.call(rax)
    if host_rows is not None:
        f.comment("a row the fallback marks too is the host's")
        marked = f.gp("marked")
        f.mov(marked, host_rows)
        f.or_(marked, rax)
        f.mov(host_rows, marked)
    f.add(recomputed, 1)
    f.bind(skip)
    f.add(index, 1)
    f.cmp(index, chunk)
    f.jb(scan)
    f.bind(advance)
    f.mov(rax, row_bytes)
    f.imul(rax, chunk)
    f.add(x, rax)
    f.add(out, rax)
    f.sub(rows, chunk)
    f.jne(top)
    return recomputed


def build_softmax_rows() -> Function:
    f = Function(_signature(
        SOFTMAX_ROWS,
        "CPython METH_FASTCALL entry (x, out): softmax of every row of x into out through the\n"
        "table's row driver; returns the number of rows recomputed, or NotImplemented."), X86_64)
    entry = _Entry(f)
    reg, arg = entry.reg, entry.arg
    table = entry.acquire()
    rows, n = entry.shapes(allow_scalar=False)
    x, out, length = entry.data()
    driver, fallback = choose_driver(f, ptr(table, TABLE_ROWS), n, length, entry.reject)
    state = f.stack(8).sized(64)
    f.comment("release the GIL around the kernels")
    f.call(f.imported("PyEval_SaveThread"))
    f.mov(state, reg("rax"))
    recomputed = run_row_chunks(f, x, out, rows, n, driver, fallback)
    f.mov(arg(0), state)
    f.call(f.imported("PyEval_RestoreThread"))
    entry.release_and_return(recomputed)
    entry.rejections()
    return f


def build_elementwise() -> Function:
    f = Function(_signature(
        ELEMENTWISE,
        "CPython METH_FASTCALL entry (x, out): out = f(x) elementwise through the table's\n"
        "kernel f(x, y, n); returns 0, or NotImplemented."), X86_64)
    entry = _Entry(f)
    reg, arg = entry.reg, entry.arg
    table = entry.acquire()
    entry.shapes(allow_scalar=True)
    x, out, length = entry.data()
    kernel, state = f.stack(8).sized(64), f.stack(8).sized(64)
    rax = reg("rax")
    f.mov(rax, ptr(table, TABLE_KERNEL))
    f.mov(kernel, rax)
    f.comment("release the GIL around the kernel: kernel(x, out, len / 4)")
    f.call(f.imported("PyEval_SaveThread"))
    f.mov(state, rax)
    f.mov(arg(0), x)
    f.mov(arg(1), out)
    f.mov(arg(2), length)
    f.shr(arg(2), 2)
    f.mov(rax, kernel)
    f.call(rax)
    f.mov(arg(0), state)
    f.call(f.imported("PyEval_RestoreThread"))
    done = f.gp("zero", callee_saved=True)
    f.mov(done, 0)
    entry.release_and_return(done)
    entry.rejections()
    return f


def build_module() -> Module:
    """The entry module: the entries, the records of the two the runtime wraps as they are,
    and the public softmax, exp and log_softmax (codegen/public_entries.py), whose records the
    runtime
    writes with the Python functions' docstrings."""
    from softjit.codegen.public_entries import (build_exp_public, build_log_softmax_public,
                                                build_softmax_public)

    records = (
        MethodRecord(SOFTMAX_ROWS_RECORD, SOFTMAX_ROWS, "softmax_rows", abi.METH_FASTCALL,
                     "softmax_rows(x, out) -> rows recomputed, or NotImplemented"),
        MethodRecord(ELEMENTWISE_RECORD, ELEMENTWISE, "elementwise", abi.METH_FASTCALL,
                     "elementwise(x, out) -> 0, or NotImplemented"),
    )
    return Module(MODULE_NAME, X86_64, "CPython entry points of the kernels (stable ABI)",
                  (build_softmax_rows(), build_elementwise(), build_softmax_public(),
                   build_exp_public(), build_log_softmax_public()), records)
