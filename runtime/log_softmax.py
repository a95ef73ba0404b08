"""softjit.log_softmax and softjit.logsumexp: rows of any float32 array through the log_softmax
modules (codegen/kernels/log_softmax.py).

A batch of rows is one native call. The log_softmax driver reduces each row (two-pass: one read
of x; rows that pass gives back are reduced again with three passes in the same call), turns
its sum into c = ln(sum(exp(x))) in float64 (one logarithm a row, in the kernel) and writes
y = x - c while the row is in cache. The logsumexp driver stops at c, which the host reads as
float64; rows whose c is NaN hold a NaN, a +inf or only -inf, and get their special value from
the row itself.

threads=k splits the rows of a batch over k threads (each row's result does not depend on which
thread ran it, so results are identical for any k); one long row is not split.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from softjit.codegen import algorithms
from softjit.codegen.lazy import LazyModule
from softjit.runtime import entries, scaled, tensors
from softjit.runtime.api import resolve_isa
from softjit.runtime.api import check_out, check_threads, is_integer
from softjit.runtime.elements import check_host_features, element_of
from softjit.runtime.inputs import FLOAT32, FLOAT64, compute_input, requested_dtype
from softjit.runtime.memo import LOG_SOFTMAX_ROUTES
from softjit.runtime.scaled import check_scale

# cffi's bindings and the variants load at the first call, not with softjit
bindings = LazyModule("softjit.runtime.bindings")
variants = LazyModule("softjit.codegen.variants")

ALGORITHMS = ("auto",) + algorithms.LOG_SOFTMAX_ALGORITHMS
# Outputs at least this large are written with non-temporal stores (as softmax does), when their
# rows are at least NONTEMPORAL_MIN_ROW_BYTES long: the output pass fences its stores at the end
# of every row, which costs more than write-allocate saves on short rows (4096 x 1000: 1.36 ms
# with plain stores, 1.77 ms non-temporal; 8192 x 4096: 14.3 and 13.5 ms; one row of 64M: 31.7
# and 25.9 ms; on the development host, Zen 4).
NONTEMPORAL_MIN_BYTES = 16 << 20
NONTEMPORAL_MIN_ROW_BYTES = 16 << 10
_STATE_DTYPE: list = []


def _state_dtype() -> np.dtype:
    """The numpy dtype of one row's log-sum-exp state (abi.LOG_SUM_EXP_STATE: (a, b, c), the
    row's c is states["log_sum_exp"]); also this module's STATE_DTYPE. Made at first use: the
    kernel ABI is not imported with softjit."""
    if not _STATE_DTYPE:
        from softjit.codegen.abi import LOG_SUM_EXP_STATE

        _STATE_DTYPE.append(LOG_SUM_EXP_STATE.numpy_dtype())
    return _STATE_DTYPE[0]


def __getattr__(name: str):
    if name == "STATE_DTYPE":
        return _state_dtype()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_INPUT_SCALE_FLOAT: list = []


def input_scale_float() -> int:
    """Which float of a row's state a scaled driver reads the input scale from (the first
    row's: abi.LEFT_TO_CALLER's comment)."""
    if not _INPUT_SCALE_FLOAT:
        from softjit.codegen.abi import PASS_STATE

        _INPUT_SCALE_FLOAT.append(PASS_STATE.offset("input_scale") // 4)
    return _INPUT_SCALE_FLOAT[0]


def put_input_scale(states: np.ndarray, input_scale) -> None:
    """The input scale where a scaled driver reads it (states holds at least one row)."""
    states[:1].view(np.float32)[input_scale_float()] = input_scale


class _Module:
    """The two row drivers of one log_softmax module (of scale * x for a scaled module: each
    call then takes the input scale)."""

    def __init__(self, variant):
        self.variant = variant
        check_host_features(bindings.module(variant).features, variant.name)
        self.reduce_function = bindings.function(variant, variant.logsumexp_symbol)
        self.rows_function = bindings.function(variant, variant.log_softmax_symbol)
        self.buffer = bindings.pointer
        self.contiguous_buffer = bindings.contiguous_pointer

    def reduce(self, x2d: np.ndarray, states: np.ndarray, status: np.ndarray,
               input_scale=None) -> int:
        """Every row's log-sum-exp state; returns how many rows the three-pass passes reduced
        (marked in status) in a two-pass module."""
        b = self.buffer
        if input_scale is not None and len(states):
            put_input_scale(states, input_scale)
        return self.reduce_function(b(x2d), x2d.shape[1], x2d.shape[0], x2d.strides[0],
                                    b(states), b(status))

    def log_softmax(self, x2d: np.ndarray, y2d: np.ndarray, states: np.ndarray,
                    input_scale=None) -> int:
        """y2d = log_softmax of the rows of x2d; states: one scratch state a row. Returns how
        many rows a scaled module left to the caller (y not written, c = abi.LEFT_TO_CALLER in
        their states; 0 for an unscaled one)."""
        b = self.buffer
        if input_scale is not None and len(states):
            put_input_scale(states, input_scale)
        return self.rows_function(b(x2d), b(y2d), x2d.shape[1], x2d.shape[0],
                                  _stride_pair(x2d.strides[0], y2d.strides[0]), b(states))


class _Scratch:
    """One thread's own states and status words for batches of up to ROWS rows, with their
    pointers made once: a small call would otherwise spend more on making them than on its
    rows. (A thread's calls run one at a time; other threads have their own.)"""

    ROWS = 64

    def __init__(self):
        self.states = np.empty(self.ROWS, _state_dtype())
        self.floats = self.states.view(np.float32)  # (the input scale goes in the first state)
        self.status = np.empty(self.ROWS, np.int32)
        self.states_pointer = bindings.pointer(self.states)
        self.status_pointer = bindings.pointer(self.status)


_thread_local = threading.local()


def _scratch() -> _Scratch:
    """This thread's scratch, made at its first use (not at import: that would load cffi)."""
    found = getattr(_thread_local, "scratch", None)
    if found is None:
        found = _thread_local.scratch = _Scratch()
    return found


_stride_pairs: dict = {}
_STRIDE_PAIRS_KEPT = 64


def _stride_pair(x_stride: int, y_stride: int):
    """The (x, y) row-stride pair as a pointer for the log_softmax driver, made once per pair
    (the arrays stay referenced here while their pointers are in use; the cache is bounded)."""
    key = (x_stride, y_stride)
    found = _stride_pairs.get(key)
    if found is None:
        if len(_stride_pairs) >= _STRIDE_PAIRS_KEPT:
            _stride_pairs.clear()
        pair = np.array(key, np.int64)
        found = _stride_pairs[key] = (pair, bindings.pointer(pair))
    return found[1]


_modules: dict = {}


def _module(algorithm: str, isa: str, nontemporal: bool = False, element: str = "f32",
            scaled: bool = False) -> _Module:
    """The module for x and y of element format `element` (float16 / bfloat16: converted in
    the kernels' registers, runtime/elements.py); of scale * x when scaled."""
    key = (algorithm, isa, nontemporal, element, scaled)
    m = _modules.get(key)
    if m is None:
        m = _modules[key] = _Module(variants.REGISTRY.log_softmax(algorithm, isa, nontemporal,
                                                                  element, scaled))
    return m


def _in_pieces(rows: int, threads: int, work) -> None:
    """work(a, b) on [a, b) pieces of range(rows), over `threads` threads."""
    from softjit.runtime.rows import on_threads, pieces as _pieces, threads_for

    threads = threads_for(threads, rows)  # capped to the usable CPUs and the rows
    if threads <= 1:
        work(0, rows)
        return
    on_threads([(lambda a=a, b=b: work(a, b)) for a, b in _pieces(rows, threads)])


def _element_name(dtype: np.dtype) -> str:
    """The element format's name of a dtype the kernels take (float32 without asking numpy for
    the dtype's name, which costs a microsecond)."""
    return "f32" if dtype is _FLOAT32 else element_of(dtype).name


def _rows_module(algorithm: str, isa: str, output_bytes: int, row_bytes: int,
                 element: str = "f32", scaled: bool = False) -> _Module:
    """The module whose log_softmax driver writes an output of output_bytes in rows of
    row_bytes: non-temporal stores for long outputs of long rows (two-pass has such a variant)."""
    return _module(algorithm, isa, stores_nontemporal(algorithm, output_bytes, row_bytes),
                   element, scaled)


def stores_nontemporal(algorithm: str, output_bytes: int, row_bytes: int) -> bool:
    """Whether `algorithm` writes an output of output_bytes in rows of row_bytes with
    non-temporal stores (its module's variant; also the public builtin's tables)."""
    return (output_bytes >= NONTEMPORAL_MIN_BYTES and row_bytes >= NONTEMPORAL_MIN_ROW_BYTES
            and algorithm == "two-pass")


def _special_value(row: np.ndarray) -> float:
    """ln(sum(exp(row))) of a row holding a NaN, a +inf or only -inf (or nothing)."""
    row = row.astype(np.float32, copy=False)  # (a 16-bit row: its values, as float32)
    if np.isnan(row).any():
        return math.nan
    if np.isposinf(row).any():
        return math.inf
    return -math.inf


# logsumexp reduces rows of up to this many elements with the three-pass passes (max, then the
# sum with sumexp's cheaper exp), longer ones with two-pass (one read of x). Measured on the
# development host (Zen 4, one pinned core, the logsumexp drivers interleaved): three-pass was
# faster at every length up to 10^6 (AVX-512, 10^5: 17.3 against 19.1 us; 4096 x 1000: 0.83
# against 1.03 ms; 10^6: 162 against 177 us; AVX2: 31.8 against 39.4 us, 1.18 against 1.43 ms,
# 237 against 282 us) and slower at 4 * 10^6 (AVX-512: 863 against 737 us), where its second
# read of x comes from memory.
LOGSUMEXP_THREE_PASS_MAX_ROW = 1 << 20


def _row_logsumexp(x2d: np.ndarray, isa: str, threads: int, input_scale=None) -> np.ndarray:
    """c = ln(sum(exp(row))) per row, float64 (the module of x2d's element format that
    LOGSUMEXP_THREE_PASS_MAX_ROW picks); of input_scale * row with an input scale (a
    numpy.float32)."""
    rows = x2d.shape[0]
    algorithm = "three-pass" if x2d.shape[1] <= LOGSUMEXP_THREE_PASS_MAX_ROW else "two-pass"
    module = _module(algorithm, isa, element=_element_name(x2d.dtype),
                     scaled=input_scale is not None)
    if rows <= _Scratch.ROWS and threads <= 1:
        b = module.buffer
        scratch = _scratch()
        if input_scale is not None:
            scratch.floats[input_scale_float()] = input_scale
        marked = module.reduce_function(b(x2d), x2d.shape[1], rows, x2d.strides[0],
                                        scratch.states_pointer, scratch.status_pointer)
        c = scratch.states["log_sum_exp"][:rows].copy()
    else:
        states = np.empty(rows, _state_dtype())
        status = np.empty(rows, np.int32)
        if threads <= 1:
            marked = module.reduce(x2d, states, status, input_scale)
        else:
            _in_pieces(rows, threads, lambda a, b: module.reduce(
                x2d[a:b], states[a:b], status[a:b], input_scale))
            marked = status.any()
        c = states["log_sum_exp"]
    if marked:  # only marked rows can hold a NaN, +inf or only -inf (see the driver)
        for r in np.flatnonzero(np.isnan(c)):
            # (scaled: a row whose largest product is infinite, perhaps one that overflowed)
            c[r] = (_special_value(x2d[r]) if input_scale is None
                    else scaled.logsumexp_row(x2d[r], input_scale))
    return c


# ---------------------------------------------------------------------------- arguments
def _axes(axis, ndim: int, function: str) -> tuple:
    """axis (an int, None or a tuple of ints) as a sorted tuple of distinct axes."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    for a in items:
        if not is_integer(a):
            raise TypeError(f"softjit.{function}: axis must be an integer, None or a tuple of "
                            f"integers, not {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"softjit.{function}: axis {a!r} is out of range for an array of "
                             f"{ndim} dimension(s)")
    normal = sorted(int(a) % ndim for a in items)
    if len(set(normal)) != len(normal):
        raise ValueError(f"softjit.{function}: axis {axis!r} repeats an axis")
    if not normal:
        raise ValueError(f"softjit.{function}: axis {axis!r} names no axis")
    return tuple(normal)


def _check_common(isa, threads, function: str) -> str:
    check_threads(threads, function)
    return resolve_isa(isa)


def _moved(a: np.ndarray, axes: tuple) -> np.ndarray:
    """a with `axes` moved to the end, in order."""
    k = len(axes)
    if axes == tuple(range(a.ndim - k, a.ndim)):
        return a  # already there
    return np.moveaxis(a, axes, tuple(range(a.ndim - k, a.ndim)))


def _as_rows(xm: np.ndarray, k: int) -> np.ndarray:
    """xm's last k axes merged into rows: a (rows, n) view with unit element stride where one
    exists, else a contiguous copy."""
    n = math.prod(xm.shape[xm.ndim - k:])
    rows = math.prod(xm.shape[:xm.ndim - k])
    try:
        view = xm.view()
        view.shape = (rows, n)  # raises instead of copying
        if n <= 1 or view.strides[1] == xm.itemsize:
            return view
    except AttributeError:
        pass
    return np.ascontiguousarray(xm).reshape(rows, n)


# "auto" takes the three-pass algorithm for rows up to this many elements (on both ISAs).
THREE_PASS_MAX_ROW = 1 << 22


def _choose(algorithm: str, n: int, isa: str) -> str:
    """The algorithm "auto" means for rows of n on isa. Measured on the development host (Zen
    4, one pinned core, the row drivers interleaved, thread CPU time): the float32 three-pass
    row (max; y = x - m stored beside the sum of exp(x - m) with sumexp's table exp; y -=
    ln(sum) in place: codegen/kernels/sumexp.py) was faster than two-pass up to 10^6 on both
    ISAs (AVX-512: 10^4: 2.75 against 3.03 us; 10^5: 21.0 against 26.0 us; 4096 x 1000: 1.20
    against 1.41 ms; 10^6: 228 against 273 us; AVX2: 3.23 against 4.11 us, 29.6 against 38.3
    us, 1.51 against 1.69 ms, 289 against 366 us), even with two-pass at 4 * 10^6 on AVX-512
    (1.60 against 1.59 ms; 1.41 against 1.43 in another run) and still faster there on AVX2
    (1.67 against 1.93 ms), and slower beyond, where its extra read of x and its second write
    of y come from memory (8 * 10^6: AVX-512 3.81 against 2.96 ms, AVX2 4.13 against 3.85 ms).

    16-bit rows take the same rule, so that a 16-bit result is the float32 result rounded
    (their three-pass rows keep the subtracting output pass: a stored x - m would be rounded to
    16 bits before ln(sum) is subtracted, but they sum with the same exp); there three-pass was
    5-17% faster than two-pass at 10^5, 4096 x 1000 and 10^6 on both ISAs (float16 at 10^5:
    AVX-512 41.4 against 49.1 us, AVX2 46.8 against 54.3 us)."""
    if algorithm != "auto":
        return algorithm
    return "three-pass" if n <= THREE_PASS_MAX_ROW else "two-pass"


# ---------------------------------------------------------------------------- public functions
def log_softmax(x, axis=-1, *, algorithm: str = "auto", isa: str = "auto", out=None,
                threads: int = 1, scale=None, dtype=None) -> np.ndarray:
    """log_softmax along `axis` of a float32 array: x - ln(sum(exp(x))).

    axis: an int, None (the whole array) or a tuple of axes; algorithm: "auto", "two-pass"
    (one read of x to the sum, no exp in the output pass) or "three-pass". out may be x itself
    or any float32 array of x's shape. -inf entries give -inf; rows holding NaN or +inf, or only
    -inf, come out all NaN; absolute error at most 2e-6 * max(1, |y|).

    scale: a temperature, log_softmax(scale * x) (None: 1), a finite real number: the bits of
    log_softmax(numpy.float32(scale) * x) where those products are finite (runtime/scaled.py).
    """
    if (scale is None and dtype is None and x.__class__ is _NDARRAY and x.dtype is _FLOAT32
            and threads.__class__ is int
            and threads == 1 and axis.__class__ is int and x.ndim and axis in (-1, x.ndim - 1)
            and x.flags.c_contiguous and x.flags.aligned and x.size
            and isinstance(algorithm, str) and algorithm in ALGORITHMS):
        # contiguous rows along the last axis: no axis moves, no views to check
        y = _empty_like(x) if out is None else out
        if y is x or (y.__class__ is _NDARRAY and y.dtype is _FLOAT32 and y.shape == x.shape
                      and y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
                      and not np.may_share_memory(y, x)):  # (exact for C-contiguous arrays)
            n = x.shape[-1]
            rows = x.size // n
            isa_argument, isa = isa, resolve_isa(isa)
            if log_softmax is not _python_log_softmax:  # the builtin took no call of these yet
                _register_route(algorithm, isa_argument, isa)
            module = _rows_module(_choose(algorithm, n, isa), isa, x.size * 4, n * 4)
            if rows <= _Scratch.ROWS:
                b = module.contiguous_buffer
                module.rows_function(b(x), b(y), n, rows, _stride_pair(4 * n, 4 * n),
                                     _scratch().states_pointer)
            else:
                module.log_softmax(x.reshape(rows, n), y.reshape(rows, n),
                                   np.empty(rows, _state_dtype()))
            return y
    if tensors.is_tensor(x) or tensors.is_tensor(out):
        return tensors.through_tensors("log_softmax", x, out, lambda xa, oa: log_softmax(
            xa, axis, algorithm=algorithm, isa=isa, out=oa, threads=threads, scale=scale,
            dtype=dtype))
    if dtype is not None:
        requested_dtype(dtype, "log_softmax")
    x = compute_input(x, dtype, "log_softmax", halves=True)
    if x.ndim == 0:
        raise ValueError("softjit.log_softmax needs an array with at least one dimension; got a "
                         "0-d array")
    axes = _axes(axis, x.ndim, "log_softmax")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"softjit.log_softmax: unknown algorithm {algorithm!r}; "
                         f"valid: {', '.join(ALGORITHMS)}")
    isa_argument, isa = isa, _check_common(isa, threads, "log_softmax")
    input_scale = check_scale(scale, "log_softmax")
    if input_scale is None and x.dtype == _FLOAT32 and log_softmax is not _python_log_softmax:
        _register_route(algorithm, isa_argument, isa)
    out = np.empty(x.shape, x.dtype) if out is None else check_out(out, x.shape, "log_softmax",
                                                                   x.dtype)
    if x.size == 0:
        return out
    k = len(axes)
    xm, om = _moved(x, axes), _moved(out, axes)
    src = _as_rows(xm, k)
    dst = _as_rows(om, k)
    direct = (np.shares_memory(dst, om) and dst.flags.aligned
              and (not np.shares_memory(dst, src)
                   or (dst.ctypes.data == src.ctypes.data and dst.strides == src.strides)))
    if not direct:
        dst = np.empty(src.shape, src.dtype)
    _log_softmax_rows(src, dst, _choose(algorithm, src.shape[1], isa), isa, threads,
                      input_scale)
    if not direct:
        om[...] = dst.reshape(om.shape)
    return out


def _register_route(algorithm, isa_argument, isa: str) -> None:
    """The public builtin's route for a validated algorithm and isa argument (resolved to isa):
    only exact str keys, so that its lookups never run Python code."""
    if type(algorithm) is str and type(isa_argument) is str:
        from softjit.runtime import entry_tables

        LOG_SOFTMAX_ROUTES.setdefault(algorithm, {})[isa_argument] = (
            entry_tables.log_softmax_row_table(algorithm, isa))


def _log_softmax_rows(src: np.ndarray, dst: np.ndarray, algorithm: str, isa: str,
                      threads: int, input_scale=None) -> None:
    """dst = log_softmax of the rows of src ((rows, n) views, unit element stride); of
    input_scale * src with an input scale (a numpy.float32). The rows a scaled
    driver leaves (a product of a finite x overflowed where it may change y) are untouched in
    src, also in place: the host computes them in float64 (runtime/scaled.py)."""
    module = _rows_module(algorithm, isa, dst.size * dst.itemsize, dst.shape[1] * dst.itemsize,
                          _element_name(dst.dtype), input_scale is not None)
    states = np.empty(src.shape[0], _state_dtype())
    if threads <= 1 or src.shape[0] <= 1:
        left = module.log_softmax(src, dst, states, input_scale)
    else:
        counts = []
        _in_pieces(src.shape[0], threads, lambda a, b: counts.append(
            module.log_softmax(src[a:b], dst[a:b], states[a:b], input_scale)))
        left = sum(counts)
    if left:
        from softjit.codegen.abi import LEFT_TO_CALLER

        for r in np.flatnonzero(states["log_sum_exp"] == LEFT_TO_CALLER):
            dst[r] = scaled.log_softmax_row(src[r], input_scale)


_NDARRAY = np.ndarray
_FLOAT32 = np.dtype(np.float32)
_empty_like = np.empty_like


def logsumexp(x, axis=-1, *, keepdims: bool = False, isa: str = "auto", out=None,
              threads: int = 1, scale=None, dtype=None):
    """ln(sum(exp(x))) along `axis` of a float32 array, float32 results (a float32 scalar array
    of shape () when every axis is reduced and keepdims is False, as numpy reductions give).

    Rows of up to 2^20 elements: the max, then the sum (three passes' reduction); longer rows:
    one read of x (the two-pass reduction). -inf for rows of only -inf (and empty rows),
    +inf when a row holds +inf, NaN when it holds a NaN; relative error at most 1e-6.

    dtype: None (float32 results), numpy.float32 (other input dtypes computed in float32) or
    numpy.float64: float32 input, float64 results computed from the same row sums without
    rounding through float32 (absolute error about 1e-6 whatever |result| is).

    scale: a temperature, logsumexp(scale * x) (None: 1), a finite real number: the bits of
    logsumexp(numpy.float32(scale) * x) where those products are finite (runtime/scaled.py).
    """
    if (scale is None and dtype is None and out is None and keepdims is False
            and x.__class__ is _NDARRAY
            and x.dtype is _FLOAT32 and threads.__class__ is int and threads == 1
            and axis.__class__ is int and x.ndim and axis in (-1, x.ndim - 1)
            and x.flags.c_contiguous and x.flags.aligned and x.size):
        # contiguous rows along the last axis: no axis moves, no views to check
        n = x.shape[-1]
        c = _row_logsumexp(x.reshape(-1, n), resolve_isa(isa), 1)
        return c.astype(np.float32).reshape(x.shape[:-1])
    if tensors.is_tensor(x) or tensors.is_tensor(out):
        return tensors.through_tensors("logsumexp", x, out, lambda xa, oa: logsumexp(
            xa, axis, keepdims=keepdims, isa=isa, out=oa, threads=threads, scale=scale,
            dtype=dtype))
    result_dtype = FLOAT32
    if dtype is not None:
        result_dtype = requested_dtype(dtype, "logsumexp", (FLOAT32, FLOAT64))
        if result_dtype == FLOAT64:
            dtype = None  # x itself must be float32 (or a half dtype): the rule below says so
            if isinstance(x, np.ndarray) and x.dtype == FLOAT64:
                raise TypeError("softjit.logsumexp computes in float32 and got dtype float64; "
                                "dtype=numpy.float64 gives float64 results of a float32 "
                                "computation: pass x.astype(numpy.float32) (or "
                                "dtype=numpy.float32 for float32 results)")
    x = compute_input(x, dtype, "logsumexp", halves=True)
    if result_dtype == FLOAT32 and x.dtype != FLOAT32:
        result_dtype = x.dtype  # float16 / bfloat16 in, the same out (torch.logsumexp's rule)
    if x.ndim == 0:
        x = x.reshape(1)
    axes = _axes(axis, x.ndim, "logsumexp")
    isa = _check_common(isa, threads, "logsumexp")
    input_scale = check_scale(scale, "logsumexp")
    kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    shape = kept if keepdims else tuple(s for i, s in enumerate(x.shape) if i not in axes)
    if out is not None:
        out = check_out(out, shape, "logsumexp", result_dtype)
    k = len(axes)
    xm = _moved(x, axes)
    rows = math.prod(xm.shape[:xm.ndim - k])
    if xm.size == 0:
        c = np.full(rows, -math.inf)
    else:
        c = _row_logsumexp(_as_rows(xm, k), isa, threads, input_scale)
    # a 16-bit result is the float32 result rounded once more (to nearest even); beyond the
    # float32 range (a scaled row computed in float64), the infinity it rounds to
    with np.errstate(over="ignore"):
        result = c.astype(np.float32 if result_dtype.itemsize < 4 else result_dtype).astype(
            result_dtype, copy=False).reshape(shape)
    if out is None:
        return result
    out[...] = result
    return out


# softjit.log_softmax: the generated builtin that runs the common float32 calls natively and
# hands every other call to the Python function above (runtime/entries.py: public_builtin), or
# that Python function where builtins are not used.
_python_log_softmax = log_softmax
log_softmax = entries.public_log_softmax(_python_log_softmax,
                                         LOG_SOFTMAX_ROUTES) or _python_log_softmax
