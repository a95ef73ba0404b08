"""softjit.log_softmax and softjit.logsumexp: rows of any float32 array through the log_softmax
modules (codegen/kernels/log_softmax.py).

A batch of rows takes two native calls: the reduce driver leaves each row's sum as a pass state,
the host turns the states into c = ln(sum(exp(x))) per row in float64 (one logarithm a row), and
(log_softmax only) the apply driver writes y = x - c. Rows the two-pass reduction marks (NaN,
+inf, only -inf, magnitudes past the two-pass clamp) are reduced again with three passes
(rmax, then the sum of exp(x - max)); rows whose three-pass state is not finite hold a NaN, a
+inf or only -inf, and get their special value from the row itself.

threads=k splits the rows of a batch over k threads (each row's result does not depend on which
thread ran it, so results are identical for any k); one long row is not split.
"""
from __future__ import annotations

import math

import numpy as np

from softjit.codegen import variants
from softjit.runtime import bindings, tensors
from softjit.runtime.api import resolve_isa
from softjit.runtime.api import check_out, check_threads, is_integer
from softjit.runtime.elements import check_host_features, element_of
from softjit.runtime.inputs import FLOAT32, FLOAT64, compute_input, requested_dtype

ALGORITHMS = ("auto",) + variants.LOG_SOFTMAX_ALGORITHMS
LN2 = math.log(2.0)
# Outputs at least this large are written with non-temporal stores (as softmax does).
NONTEMPORAL_MIN_BYTES = 16 << 20
STATE_FLOATS = 4  # abi.PASS_STATE: 16 bytes, read here as (m or e, 1/sum, sum, unused)


class _Module:
    """The reduce and apply drivers of one log_softmax module."""

    def __init__(self, variant):
        check_host_features(bindings.module(variant).features, variant.name)
        self.reduce_function = bindings.function(variant, variant.reduce_symbol)
        self.apply_function = bindings.function(variant, variant.apply_symbol)
        self.buffer = bindings.pointer

    def reduce(self, x2d: np.ndarray, states: np.ndarray, status: np.ndarray) -> int:
        b = self.buffer
        return self.reduce_function(b(x2d), x2d.shape[1], x2d.shape[0], x2d.strides[0],
                                    b(states), b(status))

    def apply(self, x2d: np.ndarray, y2d: np.ndarray, states: np.ndarray) -> None:
        b = self.buffer
        self.apply_function(b(x2d), b(y2d), x2d.shape[1], x2d.shape[0],
                            _stride_pair(x2d.strides[0], y2d.strides[0]), b(states))


_stride_pairs: dict = {}
_STRIDE_PAIRS_KEPT = 64


def _stride_pair(x_stride: int, y_stride: int):
    """The (x, y) row-stride pair as a pointer for the apply driver, made once per pair (the
    arrays stay referenced here while their pointers are in use; the cache is bounded)."""
    key = (x_stride, y_stride)
    found = _stride_pairs.get(key)
    if found is None:
        if len(_stride_pairs) >= _STRIDE_PAIRS_KEPT:
            _stride_pairs.clear()
        pair = np.array(key, np.int64)
        found = _stride_pairs[key] = (pair, bindings.pointer(pair))
    return found[1]


_modules: dict = {}


def _module(algorithm: str, isa: str, nontemporal: bool = False, element: str = "f32") -> _Module:
    """The module for x and y of element format `element` (float16 / bfloat16: converted in
    the kernels' registers, runtime/elements.py)."""
    key = (algorithm, isa, nontemporal, element)
    m = _modules.get(key)
    if m is None:
        m = _modules[key] = _Module(variants.REGISTRY.log_softmax(algorithm, isa, nontemporal,
                                                                  element))
    return m


def _in_pieces(rows: int, threads: int, work) -> None:
    """work(a, b) on [a, b) pieces of range(rows), over `threads` threads."""
    from softjit.runtime.rows import on_threads, pieces as _pieces, threads_for

    threads = threads_for(threads, rows)  # capped to the usable CPUs and the rows
    if threads <= 1:
        work(0, rows)
        return
    on_threads([(lambda a=a, b=b: work(a, b)) for a, b in _pieces(rows, threads)])


def _reduce(x2d: np.ndarray, algorithm: str, isa: str, threads: int):
    """Every row's state, float64 (rows, 4), and which rows have a three-pass state (the others
    a two-pass one)."""
    rows = x2d.shape[0]
    states = np.empty((rows, STATE_FLOATS), np.float32)
    status = np.zeros(rows, np.int32)
    element = element_of(x2d.dtype).name
    module = _module(algorithm, isa, element=element)
    if threads <= 1 or rows <= 1:
        any_marked = module.reduce(x2d, states, status)
    else:
        _in_pieces(rows, threads, lambda a, b: module.reduce(x2d[a:b], states[a:b], status[a:b]))
        any_marked = status.any()
    if algorithm == "three-pass":
        return states, np.ones(rows, bool)
    three_pass = status != 0
    if any_marked:
        marked = np.flatnonzero(three_pass)
        fallback = _module("three-pass", isa, element=element)
        one = np.empty(1, np.int32)
        for r in marked:
            fallback.reduce(x2d[r:r + 1], states[r:r + 1], one)
    return states, three_pass


def _special_value(row: np.ndarray) -> float:
    """ln(sum(exp(row))) of a row holding a NaN, a +inf or only -inf (or nothing)."""
    row = row.astype(np.float32, copy=False)  # (a 16-bit row: its values, as float32)
    if np.isnan(row).any():
        return math.nan
    if np.isposinf(row).any():
        return math.inf
    return -math.inf


def _row_constants(x2d: np.ndarray, algorithm: str, isa: str, threads: int):
    """(c as float64 per row, the apply states: a + b = c as float32 terms, NaN rows marked)."""
    states, three_pass = _reduce(x2d, algorithm, isa, threads)
    if x2d.shape[0] <= _SCALAR_ROWS:
        return _row_constants_scalar(x2d, states, three_pass)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        states = states.astype(np.float64)
        first, total = states[:, 0], states[:, 2]  # m or e; the sum or v
        log_total = np.log(total)
        c = np.where(three_pass, first + log_total, log_total + first * LN2)
        special = three_pass & ~(np.isfinite(first) & np.isfinite(total))
        for r in np.flatnonzero(special):
            c[r] = _special_value(x2d[r])
        high = c.astype(np.float32)
        low = (c - high).astype(np.float32)
        # three-pass rows: a = m exactly, b = ln sum (x - m is exact near the maximum)
        high = np.where(three_pass, first.astype(np.float32), high)
        low = np.where(three_pass, log_total.astype(np.float32), low)
    apply_states = np.zeros((x2d.shape[0], STATE_FLOATS), np.float32)
    apply_states[:, 0] = high
    apply_states[:, 1] = low
    apply_states[special, 0] = np.nan  # log_softmax of a special row: NaN throughout
    return c, apply_states


# Batches up to this many rows take the per-row arithmetic in Python floats (numpy's per-call
# cost on tiny arrays would exceed it); larger ones the same arithmetic vectorised.
_SCALAR_ROWS = 4


def _row_constants_scalar(x2d: np.ndarray, states: np.ndarray, three_pass: np.ndarray):
    """_row_constants' arithmetic row by row, in Python floats (the same float64 operations)."""
    # np.log, not math.log: the same logarithm as the vectorised path, so that a row's result
    # does not depend on the size of its batch
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(states[:, 2].astype(np.float64)).tolist()
    c, terms = [], []
    for r, ((first, _, total, _), log_total) in enumerate(zip(states.tolist(), logs)):
        if three_pass[r]:
            if math.isfinite(first) and math.isfinite(total):
                c.append(first + log_total)
                terms += (first, log_total, 0.0, 0.0)
            else:
                c.append(_special_value(x2d[r]))
                terms += (math.nan, 0.0, 0.0, 0.0)
        else:
            row_c = log_total + first * LN2
            high = float(_F32(row_c))
            c.append(row_c)
            terms += (high, row_c - high, 0.0, 0.0)
    return np.array(c), np.array(terms, np.float32).reshape(-1, STATE_FLOATS)


_F32 = np.float32


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


def _choose(algorithm: str, n: int) -> str:
    # The two-pass reduction reads x once and its output pass has no exp: it won in cache and
    # out of it on the development host (see the README's log_softmax figures).
    return "two-pass" if algorithm == "auto" else algorithm


# ---------------------------------------------------------------------------- public functions
def log_softmax(x, axis=-1, *, algorithm: str = "auto", isa: str = "auto", out=None,
                threads: int = 1, dtype=None) -> np.ndarray:
    """log_softmax along `axis` of a float32 array: x - ln(sum(exp(x))).

    axis: an int, None (the whole array) or a tuple of axes; algorithm: "auto", "two-pass"
    (one read of x to the sum, no exp in the output pass) or "three-pass". out may be x itself
    or any float32 array of x's shape. -inf entries give -inf; rows holding NaN or +inf, or only
    -inf, come out all NaN; absolute error at most 2e-6 * max(1, |y|).
    """
    if (dtype is None and x.__class__ is _NDARRAY and x.dtype is _FLOAT32
            and threads.__class__ is int
            and threads == 1 and axis.__class__ is int and x.ndim and axis in (-1, x.ndim - 1)
            and x.flags.c_contiguous and x.flags.aligned and x.size
            and isinstance(algorithm, str) and algorithm in ALGORITHMS):
        # contiguous rows along the last axis: no axis moves, no views to check
        y = _empty_like(x) if out is None else out
        if y is x or (y.__class__ is _NDARRAY and y.dtype is _FLOAT32 and y.shape == x.shape
                      and y.flags.c_contiguous and y.flags.writeable and y.flags.aligned
                      and not np.shares_memory(y, x)):
            isa = resolve_isa(isa)
            n = x.shape[-1]
            x2d, y2d = x.reshape(-1, n), y.reshape(-1, n)
            _log_softmax_rows(x2d, y2d, _choose(algorithm, n), isa, 1)
            return y
    if tensors.is_tensor(x) or tensors.is_tensor(out):
        return tensors.through_tensors("log_softmax", x, out, lambda xa, oa: log_softmax(
            xa, axis, algorithm=algorithm, isa=isa, out=oa, threads=threads, dtype=dtype))
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
    isa = _check_common(isa, threads, "log_softmax")
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
    _log_softmax_rows(src, dst, _choose(algorithm, src.shape[1]), isa, threads)
    if not direct:
        om[...] = dst.reshape(om.shape)
    return out


def _log_softmax_rows(src: np.ndarray, dst: np.ndarray, algorithm: str, isa: str,
                      threads: int) -> None:
    """dst = log_softmax of the rows of src ((rows, n) views, unit element stride)."""
    _, states = _row_constants(src, algorithm, isa, threads)
    nontemporal = dst.size * dst.itemsize >= NONTEMPORAL_MIN_BYTES and algorithm == "two-pass"
    module = _module(algorithm, isa, nontemporal, element_of(dst.dtype).name)
    if threads <= 1 or src.shape[0] <= 1:
        module.apply(src, dst, states)
    else:
        _in_pieces(src.shape[0], threads,
                   lambda a, b: module.apply(src[a:b], dst[a:b], states[a:b]))


_NDARRAY = np.ndarray
_FLOAT32 = np.dtype(np.float32)
_empty_like = np.empty_like


def logsumexp(x, axis=-1, *, keepdims: bool = False, isa: str = "auto", out=None,
              threads: int = 1, dtype=None):
    """ln(sum(exp(x))) along `axis` of a float32 array, float32 results (a float32 scalar array
    of shape () when every axis is reduced and keepdims is False, as numpy reductions give).

    One read of x per row (the two-pass reduction). -inf for rows of only -inf (and empty rows),
    +inf when a row holds +inf, NaN when it holds a NaN; relative error at most 1e-6.

    dtype: None (float32 results), numpy.float32 (other input dtypes computed in float32) or
    numpy.float64: float32 input, float64 results computed from the same row sums without
    rounding through float32 (absolute error about 1e-6 whatever |result| is).
    """
    if tensors.is_tensor(x) or tensors.is_tensor(out):
        return tensors.through_tensors("logsumexp", x, out, lambda xa, oa: logsumexp(
            xa, axis, keepdims=keepdims, isa=isa, out=oa, threads=threads, dtype=dtype))
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
        src = _as_rows(xm, k)
        c, _ = _row_constants(src, "two-pass", isa, threads)
    # a 16-bit result is the float32 result rounded once more (to nearest even)
    result = c.astype(np.float32 if result_dtype.itemsize < 4 else result_dtype).astype(
        result_dtype, copy=False).reshape(shape)
    if out is None:
        return result
    out[...] = result
    return out
