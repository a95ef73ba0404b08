"""The kernel ABI: what the generated code and the Python runtime must agree on, written once.

- the SysV AMD64 calling convention: integer argument registers, callee-saved registers;
- C signatures (Param lists) of every kind of kernel softjit generates: vexp, rmax, the softmax
  passes and their row driver, the bandwidth probes and their row drivers;
- the pass state: the 16 bytes one softmax pass leaves for the next (PASS_STATE), which also
  carries the input scale of the scaled kernels (softmax(scale * x));
- the row driver's stride pair, its per-row status word and the passes' return codes.

The generators (codegen/kernels/) build functions from these signatures and address the state
through PASS_STATE's offsets; the runtime (runtime/bindings.py, runtime/rows.py) declares the
functions to cffi from the same signatures (`Signature.cffi_declaration`) and reads and writes
the state through PASS_STATE's numpy dtype, never through bare indices.
"""
from __future__ import annotations

from dataclasses import dataclass

# SysV AMD64: integer and pointer arguments go in these registers, in this order.
SYSV_ARGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
# SysV AMD64: a function must preserve these (and rsp) for its caller.
SYSV_CALLEE_SAVED = ("rbx", "rbp", "r12", "r13", "r14", "r15")


@dataclass(frozen=True)
class Param:
    """One C parameter: its C type ("const float*", "size_t") and name. Integer and pointer
    parameters only: they arrive in the SysV argument registers (at most six)."""

    ctype: str
    name: str

    @property
    def is_pointer(self) -> bool:
        return self.ctype.rstrip().endswith("*")


@dataclass(frozen=True)
class Signature:
    """A C prototype: the same object renders the C header declaration, the cffi declaration,
    and pins the SysV argument registers of the Function built from it."""

    name: str
    params: tuple  # of Param
    returns: str = "void"
    doc: str = ""

    def c_declaration(self) -> str:
        """The declaration with the real C types (generated/kernels.h, the .S comments)."""
        params = ", ".join(f"{p.ctype} {p.name}" for p in self.params) or "void"
        return f"{self.returns} {self.name}({params});"

    def cffi_declaration(self) -> str:
        """The declaration the runtime gives cffi: every pointer parameter as void*.

        Callers pass ffi.from_buffer(array), the cheapest way from a numpy array to a pointer
        (about 0.3 us, where reading the address through __array_interface__ takes 1.5 us);
        cffi accepts that buffer for void* parameters only."""
        params = ", ".join(f"{'void*' if p.is_pointer else p.ctype} {p.name}"
                           for p in self.params) or "void"
        return f"{self.returns} {self.name}({params});"


# ---------------------------------------------------------------------------- element formats
# (owned by element_formats.py; part of this module's names)
from softjit.codegen.element_formats import (  # noqa: E402
    BF16, ELEMENT_FORMATS, F16, F32, ElementFormat, element_format)


def _elements_as(params: tuple, element: ElementFormat) -> tuple:
    """params with the x and y buffers typed as `element` (float32: unchanged)."""
    if element is F32:
        return params
    return tuple(Param(p.ctype.replace("float", element.ctype), p.name) if p.name in ("x", "y")
                 else p for p in params)


# ---------------------------------------------------------------------------- signatures
VEXP_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"))
RMAX_PARAMS = (Param("const float*", "x"), Param("size_t", "n"), Param("float*", "max"))

# Every softmax pass has this one signature, so that a row driver can chain any of them:
#     int pass(const float* x, float* y, size_t n, float* state)
PASS_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
               Param("float*", "state"))
PASS_RETURNS = "int"
PASS_OK = 0  # what every pass returns, except:
PASS_RECOMPUTE = 1  # two-pass's first pass: this row needs the three-pass algorithm

# The softmax row driver: rows of n floats, row r at x + r*row_strides[0] bytes, its result at
# y + r*row_strides[1] bytes; status[r] = ROW_MARKED for a row left to the caller; returns how
# many rows were marked.
DRIVER_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
                 Param("size_t", "rows"), Param("const int64_t*", "row_strides"),
                 Param("int32_t*", "status"))
DRIVER_RETURNS = "size_t"
ROW_STRIDES_CTYPE = "int64_t"  # row_strides: (x row stride, y row stride) in bytes
# A scaled row driver (softmax(scale * x)) reads one more word through row_strides: the float32
# input scale, in the low four bytes of a third int64 at this byte offset. It copies the scale
# into the pass state's "input_scale" before each row's passes.
ROW_STRIDES_INPUT_SCALE = 16
ROW_STRIDES_SCALED_WORDS = 3  # int64 words of a scaled driver's row_strides
STATUS_CTYPE = "int32_t"  # status: one word per row
ROW_DONE, ROW_MARKED = 0, 1

# log_softmax and logsumexp (codegen/kernels/log_softmax.py): a batch is one call of a driver.
# The logsumexp driver (REDUCE_DRIVER_PARAMS) leaves each row's log-sum-exp state
# (LOG_SUM_EXP_STATE) in states + r*LOG_SUM_EXP_STATE.size bytes, status[r] = ROW_MARKED for a
# row the three-pass passes reduced, and returns how many; the log_softmax driver computes each
# row's state there too, then runs the output pass on the row with it. softjit.dask, whose rows'
# sums come from several chunks, uses the reduce driver (the same parameters: each row's
# PASS_STATE, rows whose first pass asks for recomputation marked as the softmax driver marks
# them) and the apply driver (only the output pass, with states the caller made).
REDUCE_DRIVER_PARAMS = (Param("const float*", "x"), Param("size_t", "n"), Param("size_t", "rows"),
                        Param("int64_t", "x_row_stride"), Param("float*", "states"),
                        Param("int32_t*", "status"))
APPLY_DRIVER_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
                       Param("size_t", "rows"), Param("const int64_t*", "row_strides"),
                       Param("const float*", "states"))
LOG_SOFTMAX_DRIVER_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
                             Param("size_t", "rows"), Param("const int64_t*", "row_strides"),
                             Param("float*", "states"))
# The scaled drivers of a log_softmax module (log_softmax and logsumexp of scale * x) take the
# same parameters; the caller writes the float32 input scale into the first row's state (its
# PASS_STATE "input_scale" field), which the driver reads before any pass runs and copies into
# every row's state. A scaled log_softmax driver leaves to the caller a row it cannot compute as
# the unscaled driver would on the float32 products (a product of a finite x that overflowed
# and may change a result, codegen/kernels/log_softmax.py): that row's y is not written, its
# state's log_sum_exp is LEFT_TO_CALLER, and the driver returns how many rows it left.
LEFT_TO_CALLER = float("inf")

# Bandwidth probes and the driver that calls one once per row (strides may be 0).
STREAM_READ_PARAMS = (Param("const float*", "x"), Param("size_t", "n"), Param("float*", "out"))
STREAM_COPY_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"))
PROBE_ROWS_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
                     Param("size_t", "rows"), Param("int64_t", "x_stride"),
                     Param("int64_t", "y_stride"))


def pass_signature(name: str, doc: str, element: ElementFormat = F32) -> Signature:
    return Signature(name, _elements_as(PASS_PARAMS, element), PASS_RETURNS, doc)


def driver_signature(name: str, doc: str, element: ElementFormat = F32) -> Signature:
    return Signature(name, _elements_as(DRIVER_PARAMS, element), DRIVER_RETURNS, doc)


def reduce_driver_signature(name: str, doc: str, element: ElementFormat = F32) -> Signature:
    return Signature(name, _elements_as(REDUCE_DRIVER_PARAMS, element), DRIVER_RETURNS, doc)


def apply_driver_signature(name: str, doc: str, element: ElementFormat = F32) -> Signature:
    return Signature(name, _elements_as(APPLY_DRIVER_PARAMS, element), DRIVER_RETURNS, doc)


def log_softmax_driver_signature(name: str, doc: str, element: ElementFormat = F32) -> Signature:
    return Signature(name, _elements_as(LOG_SOFTMAX_DRIVER_PARAMS, element), DRIVER_RETURNS, doc)


# ---------------------------------------------------------------------------- the pass state
@dataclass(frozen=True)
class StateField:
    name: str
    offset: int  # bytes from the start of the state
    doc: str
    ctype: str = "float"
    numpy_type: str = "<f4"


@dataclass(frozen=True)
class StateLayout:
    """A fixed block of memory the passes of one row share, field by field."""

    fields: tuple  # of StateField, in memory order
    size: int  # bytes

    def offset(self, name: str) -> int:
        for field in self.fields:
            if field.name == name:
                return field.offset
        raise KeyError(f"the pass state has no field {name!r}; fields: "
                       f"{', '.join(f.name for f in self.fields)}")

    @property
    def names(self) -> tuple:
        return tuple(f.name for f in self.fields)

    def numpy_dtype(self):
        """The layout as a numpy structured dtype (numpy imported only when asked)."""
        import numpy as np

        return np.dtype({"names": [f.name for f in self.fields],
                         "formats": [f.numpy_type for f in self.fields],
                         "offsets": [f.offset for f in self.fields],
                         "itemsize": self.size})


PASS_STATE = StateLayout(
    fields=(
        StateField("max_or_exponent", 0,
                   "three-pass: the row maximum m; two-pass: the exponent e of the sum v * 2^e"),
        StateField("scale", 4, "the output scale 1 / sum (two-pass: 1 / v)"),
        StateField("sum", 8, "the sum itself, float32 (two-pass: v), so that the pieces of one "
                             "row split over threads can be combined"),
        StateField("input_scale", 12,
                   "scaled kernels: the float32 factor every element of x is multiplied by as it "
                   "is loaded, in every pass (softmax(scale * x)); unscaled kernels ignore it"),
    ),
    size=16,
)

# The state a log_softmax row driver leaves per row, made by the row's logarithm from a
# PASS_STATE in the same 16 bytes: c = ln(sum(exp(x))) in float64, and c as two float32 terms
# a + b for the output pass y = (x - a) - b.
LOG_SUM_EXP_STATE = StateLayout(
    fields=(
        StateField("high", 0, "a: c rounded to float32 (three-pass: the row maximum m); NaN for a "
                              "row holding NaN or +inf, or only -inf"),
        StateField("low", 4, "b: float32(c - a) (three-pass: float32(ln sum))"),
        StateField("log_sum_exp", 8, "c, float64 (LEFT_TO_CALLER: a row a scaled log_softmax "
                                     "driver left to the caller)", ctype="double",
                   numpy_type="<f8"),
    ),
    size=16,
)
