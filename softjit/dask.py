"""softjit.dask: softmax, log_softmax and logsumexp of Dask arrays, with softjit's kernels
running inside the workers.

    import dask.array as da, softjit.dask
    y = softjit.dask.softmax(x, axis=-1)      # x: a float32 dask array, any chunking
    c = softjit.dask.logsumexp(x, axis=-1)    # x's shape without the axis

Needs the optional extra `softjit[dask]` (dask[array], distributed). Everything runs through
Dask's own array API, so any Dask scheduler runs it: threads, processes, a distributed cluster.

How a row split across chunks is computed (the two-pass algorithm, docs/algorithms.md):
1. every chunk runs the two-pass first pass (raddextexp) on its piece of each row, which gives
   the piece's sum of exp(x) as v * 2^e;
2. the pieces' partial sums meet in a tree reduction of the graph (`da.reduction`): pairs combine
   exactly by rescaling to the larger exponent, one small record per row per chunk travels;
3. every chunk runs the second pass (vscaleextexp) with the row's combined (e, 1/v).
Two reads and one write per element, no temporary. A piece the first pass marks (NaN, +inf, only
-inf, or magnitudes past the two-pass clamp) reports its own maximum m and sum of exp(x - m)
instead (computed in float64); a row holding NaN or +inf anywhere comes out all NaN, a piece of
only -inf adds nothing, and a row whose magnitudes defeat the two-pass exponent range takes the
max-then-sum (three-pass) combination across its chunks and the three-pass output kernel.
A row that fits in one chunk goes through softjit.softmax itself.

logsumexp is the same reduction with ln(v * 2^e) per row at the end; log_softmax follows it
with softjit's log_softmax output pass, y = (x - a) - b with a + b = logsumexp (no exp).
"""
from __future__ import annotations

import concurrent.futures
import math
import threading

import numpy as np

try:
    import dask.array as da
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError("softjit.dask needs Dask: pip install 'softjit[dask]' "
                      "(dask[array] and distributed)") from error

import softjit
from softjit.codegen import abi, variants
from softjit.runtime import bindings
from softjit.runtime.api import is_integer
from softjit.runtime.dispatch import nontemporal_for, resolve_isa

__all__ = ["softmax", "log_softmax", "logsumexp"]

# Per row and chunk (and per group of chunks, after combining): what the pieces of a row add
# up to, in two exact forms side by side.
# - ext_sum * 2^exponent: pieces the two-pass first pass accepted (exponent = -inf: none);
# - max_sum * exp(max): pieces it marked, summed relative to their maximum (max = -inf: none,
#   or only -inf entries);
# - nan, posinf: some piece holds NaN, +inf (softmax: the whole row is NaN; logsumexp: NaN,
#   else +inf).
PARTIAL = np.dtype([("exponent", "f8"), ("ext_sum", "f8"), ("max", "f8"), ("max_sum", "f8"),
                    ("nan", "?"), ("posinf", "?")])

# Per row, what every chunk's second pass needs: the pass state (abi.PASS_STATE) and which
# output kernel reads it.
STATE = abi.PASS_STATE.numpy_dtype()
MODE_TWO_PASS, MODE_MAX, MODE_NAN = 0, 1, 2
ROW_PLAN = np.dtype([("state", STATE), ("mode", "i1")])

# A marked piece whose maximum lies this many binary orders of magnitude below the accepted
# pieces' exponent adds less than 2^-150 of the sum: the row stays two-pass, and the second
# pass turns that piece into exact zeros (vscaleextexp gives +0 below 2^(e - 127)).
NEGLIGIBLE_ORDERS = 160.0
LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)

# ---------------------------------------------------------------------------- native passes
class _Pass:
    """One pass kernel of one algorithm: call(x_row, y_row, state_row) -> its return code."""

    def __init__(self, algorithm: str, index: int, isa: str, nontemporal: bool):
        variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal)
        self.function = bindings.function(variant, variant.passes[index].symbol)
        self.pointer = bindings.contiguous_pointer

    def __call__(self, x: np.ndarray, y: np.ndarray, state: np.ndarray) -> int:
        p = self.pointer
        return self.function(p(x), p(y), x.shape[0], p(state))


_passes: dict = {}
_passes_lock = threading.Lock()


def _pass(algorithm: str, index: int, isa: str, nontemporal: bool = False) -> _Pass:
    key = (algorithm, index, isa, nontemporal)
    found = _passes.get(key)
    if found is None:
        with _passes_lock:
            found = _passes.get(key) or _Pass(algorithm, index, isa, nontemporal)
            _passes[key] = found
    return found


def _rows(block: np.ndarray, axis: int) -> np.ndarray:
    """The block with `axis` last, as C-contiguous (rows, n) float32 (a copy only if needed)."""
    moved = np.moveaxis(block, axis, -1)
    n = moved.shape[-1]
    return np.ascontiguousarray(moved, dtype=np.float32).reshape(-1, n)


def _over_rows(count: int, threads: int, work) -> None:
    """work(start, end) over range(count), in `threads` nearly equal pieces (the kernels release
    the GIL, so the pieces run in parallel)."""
    if threads <= 1 or count < 2:
        work(0, count)
        return
    parts = min(threads, count)
    bounds = [count * k // parts for k in range(parts + 1)]
    with concurrent.futures.ThreadPoolExecutor(parts - 1) as pool:
        futures = [pool.submit(work, a, b) for a, b in zip(bounds[1:-1], bounds[2:])]
        work(bounds[0], bounds[1])
        for f in futures:
            f.result()


# ---------------------------------------------------------------------------- pass 1 per chunk
def _moved_shape(shape, axis: int) -> tuple:
    """The shape with `axis` moved last (as np.moveaxis(a, axis, -1) would give it)."""
    return tuple(shape[:axis]) + tuple(shape[axis + 1:]) + (shape[axis],)


def _first_pass(block: np.ndarray, axis, keepdims: bool, isa: str, threads: int,
                computing_meta: bool = False) -> np.ndarray:
    """Per row of this chunk: its PARTIAL record (shape: block with `axis` of length 1)."""
    (axis,) = axis
    shape = list(block.shape)
    shape[axis] = 1
    if computing_meta:
        return np.empty(shape, PARTIAL)
    rows = _rows(block, axis)
    count, n = rows.shape
    partial = np.empty(count, PARTIAL)
    partial["exponent"], partial["ext_sum"] = -np.inf, 0.0
    partial["max"], partial["max_sum"] = -np.inf, 0.0
    partial["nan"], partial["posinf"] = False, False
    if n:
        states = np.zeros(count, STATE)
        raddextexp = _pass("two-pass", 0, isa)

        def work(a, b):
            for r in range(a, b):
                if raddextexp(rows[r], rows[r], states[r:r + 1]) != abi.PASS_OK:
                    _marked_piece(rows[r], partial[r:r + 1])
                else:
                    partial["exponent"][r] = states["max_or_exponent"][r]
                    partial["ext_sum"][r] = states["sum"][r]

        _over_rows(count, threads, work)
    return np.moveaxis(partial.reshape(_moved_shape(shape, axis)), -1, axis)


def _marked_piece(row: np.ndarray, record: np.ndarray) -> None:
    """A piece the two-pass first pass would not take: its maximum and sum relative to it."""
    record["nan"], record["posinf"] = np.isnan(row).any(), (row == np.inf).any()
    if record["nan"] or record["posinf"]:
        return
    m = float(row.max())
    if m == -np.inf:
        return  # only -inf: this piece adds nothing
    record["max"] = m
    record["max_sum"] = float(np.exp(row.astype(np.float64) - m).sum())


# ---------------------------------------------------------------------------- the reduction
def _combine(partials: np.ndarray, axis, keepdims: bool = True) -> np.ndarray:
    """The PARTIAL records along `axis` combined into one (exact rescaling, float64 sums in
    chunk order)."""
    (axis,) = axis
    parts = np.moveaxis(partials, axis, 0)
    out = np.empty(parts.shape[1:], PARTIAL)
    exponent = parts["exponent"].max(axis=0) if len(parts) else np.full(out.shape, -np.inf)
    maximum = parts["max"].max(axis=0) if len(parts) else np.full(out.shape, -np.inf)
    ext_sum = np.zeros(out.shape)
    max_sum = np.zeros(out.shape)
    has_ext = exponent > -np.inf
    has_max = maximum > -np.inf
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for part in parts:  # in chunk order
            shift = np.where(has_ext & (part["exponent"] > -np.inf),
                             part["exponent"] - np.where(has_ext, exponent, 0.0), -np.inf)
            ext_sum = ext_sum + np.ldexp(part["ext_sum"],
                                         np.maximum(shift, -2000.0).astype(np.int64))
            gap = np.where(has_max & (part["max"] > -np.inf),
                           part["max"] - np.where(has_max, maximum, 0.0), -np.inf)
            max_sum = max_sum + part["max_sum"] * np.exp(gap)
    out["exponent"], out["ext_sum"] = exponent, ext_sum
    out["max"], out["max_sum"] = maximum, max_sum
    out["nan"] = parts["nan"].any(axis=0) if len(parts) else False
    out["posinf"] = parts["posinf"].any(axis=0) if len(parts) else False
    if keepdims:
        out = np.expand_dims(out, axis)
    return out


def _modes(total: np.ndarray):
    """Per row of combined PARTIAL records: (special, two_pass, by_max) masks, and for the
    by_max rows (ref, sums): a float32 ref at least about the row's largest element and
    sums = sum of exp(x - ref) over the row, float64."""
    exponent, ext_sum = total["exponent"], total["ext_sum"]
    maximum, max_sum = total["max"], total["max_sum"]
    special = (total["nan"] | total["posinf"]
               | ((exponent == -np.inf) & (maximum == -np.inf)))
    two_pass = ~special & (exponent > -np.inf) & (maximum * LOG2E <= exponent - NEGLIGIBLE_ORDERS)
    by_max = ~special & ~two_pass
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        ext_log = np.where(exponent > -np.inf, np.log(ext_sum) + exponent * LN2, -np.inf)
        ref = np.maximum(maximum, ext_log).astype(np.float32).astype(np.float64)
        ref = np.where(by_max, ref, 0.0)
        sums = (np.where(maximum > -np.inf, max_sum * np.exp(maximum - ref), 0.0)
                + np.where(exponent > -np.inf, ext_sum * np.exp(exponent * LN2 - ref), 0.0))
    return special, two_pass, by_max, ref, sums


def _plan(total: np.ndarray) -> np.ndarray:
    """The combined PARTIAL record of every row -> its ROW_PLAN: which output kernel, with what
    state."""
    special, two_pass, by_max, ref, sums = _modes(total)
    exponent, ext_sum = total["exponent"], total["ext_sum"]
    plan = np.zeros(total.shape, ROW_PLAN)
    state = plan["state"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # two-pass rows: (e, 1/v, v) rounded to float32;
        # the others: y = exp(x - ref) * (1 / sums)
        state["max_or_exponent"] = np.where(two_pass, exponent, ref)
        state["scale"] = np.where(two_pass, 1.0 / ext_sum, np.where(by_max, 1.0 / sums, 0.0))
        state["sum"] = np.where(two_pass, ext_sum, np.where(by_max, sums, 0.0))
    plan["mode"] = np.where(special, MODE_NAN, np.where(two_pass, MODE_TWO_PASS, MODE_MAX))
    return plan


def _log_sums(total: np.ndarray) -> np.ndarray:
    """ln(sum(exp(x))) per row, float64: NaN if the row holds a NaN, else +inf if it holds
    +inf, -inf if it holds only -inf."""
    special, two_pass, by_max, ref, sums = _modes(total)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(two_pass, np.log(total["ext_sum"]) + total["exponent"] * LN2,
                     ref + np.log(sums))
    c = np.where(special, -np.inf, c)
    c = np.where(total["posinf"], np.inf, c)
    return np.where(total["nan"], np.nan, c)


def _logsumexp_of(total: np.ndarray) -> np.ndarray:
    return _log_sums(total).astype(np.float32)


def _apply_states(total: np.ndarray) -> np.ndarray:
    """Per row, the log_softmax output pass's state: y = (x - a) - b with a + b = ln(sum)
    (a the float32 nearest it, b the rest; a = ref exactly for the max-then-sum rows, so that
    x - a is exact near the maximum), a = NaN for the rows that come out NaN."""
    special, two_pass, by_max, ref, sums = _modes(total)
    c = _log_sums(total)
    states = np.zeros(total.shape, STATE)
    with np.errstate(divide="ignore", invalid="ignore"):
        high = np.where(by_max, ref, c.astype(np.float32))
        low = np.where(by_max, np.log(sums), c - high)
    states["max_or_exponent"] = np.where(special, np.nan, high)
    states["scale"] = np.where(special, 0.0, low)
    return states


# ---------------------------------------------------------------------------- pass 2 per chunk
def _second_pass(block: np.ndarray, plan: np.ndarray, axis: int, isa: str,
                 threads: int) -> np.ndarray:
    """softmax of this chunk's pieces of rows, each row scaled by its plan."""
    rows = _rows(block, axis)
    count, n = rows.shape
    out = np.empty_like(rows)
    plans = np.ascontiguousarray(plan).reshape(-1)
    states = np.ascontiguousarray(plans["state"])
    modes = plans["mode"]
    if n and count:
        nontemporal = nontemporal_for(rows.nbytes)
        scale_extexp = _pass("two-pass", 1, isa, nontemporal)
        scale_expminusmax = _pass("three-pass-recompute", 2, isa, nontemporal)

        def work(a, b):
            for r in range(a, b):
                mode = modes[r]
                if mode == MODE_TWO_PASS:
                    scale_extexp(rows[r], out[r], states[r:r + 1])
                elif mode == MODE_MAX:
                    scale_expminusmax(rows[r], out[r], states[r:r + 1])
                else:
                    out[r] = np.nan

        _over_rows(count, threads, work)
    return np.ascontiguousarray(np.moveaxis(out.reshape(_moved_shape(block.shape, axis)), -1, axis))


def _log_second_pass(block: np.ndarray, states: np.ndarray, axis: int, isa: str,
                     threads: int) -> np.ndarray:
    """log_softmax of this chunk's pieces of rows: y = (x - a) - b with each row's (a, b)."""
    rows = _rows(block, axis)
    count, n = rows.shape
    out = np.empty_like(rows)
    states = np.ascontiguousarray(states).reshape(-1)
    if n and count:
        apply = _apply_driver(isa, nontemporal_for(rows.nbytes))
        _over_rows(count, threads, lambda a, b: apply(rows[a:b], out[a:b], states[a:b]))
    return np.ascontiguousarray(np.moveaxis(out.reshape(_moved_shape(block.shape, axis)), -1, axis))


class _ApplyDriver:
    """The log_softmax apply driver: call(x2d, y2d, states), rows of x2d and y2d C-contiguous."""

    def __init__(self, isa: str, nontemporal: bool):
        variant = variants.REGISTRY.log_softmax("two-pass", isa, nontemporal)
        self.function = bindings.function(variant, variant.apply_symbol)
        self.pointer = bindings.contiguous_pointer

    def __call__(self, x2d: np.ndarray, y2d: np.ndarray, states: np.ndarray) -> None:
        p = self.pointer
        strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
        self.function(p(x2d), p(y2d), x2d.shape[1], x2d.shape[0], p(strides), p(states))


def _apply_driver(isa: str, nontemporal: bool) -> _ApplyDriver:
    key = ("apply", isa, nontemporal)
    found = _passes.get(key)
    if found is None:
        with _passes_lock:
            found = _passes.get(key) or _ApplyDriver(isa, nontemporal)
            _passes[key] = found
    return found


def _whole_rows(block: np.ndarray, axis: int, isa: str, threads: int) -> np.ndarray:
    return softjit.softmax(block, axis=axis, isa=isa, threads=threads)


def _whole_rows_log_softmax(block: np.ndarray, axis: int, isa: str, threads: int) -> np.ndarray:
    return softjit.log_softmax(block, axis=axis, isa=isa, threads=threads)


def _whole_rows_logsumexp(block: np.ndarray, axis: int, isa: str, threads: int) -> np.ndarray:
    return softjit.logsumexp(block, axis=axis, isa=isa, threads=threads)


# ---------------------------------------------------------------------------- the public calls
def _checked(x, axis, threads, function: str) -> int:
    """The axis as a non-negative int, after checking x, axis and threads."""
    if not isinstance(x, da.Array):
        raise TypeError(f"softjit.dask.{function} takes a dask array, not {type(x).__name__}; "
                        f"wrap numpy data with dask.array.from_array, or call softjit.{function}")
    if x.dtype != np.float32:
        raise TypeError(f"softjit.dask.{function} needs float32 data, got {x.dtype}; "
                        "convert it with x.astype(numpy.float32)")
    if x.ndim == 0:
        raise ValueError(f"softjit.dask.{function} needs an array with at least one dimension; "
                         "got a 0-d array")
    if not is_integer(axis):
        raise TypeError(f"softjit.dask.{function}: axis must be an integer, not {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softjit.dask.{function}: axis {axis!r} is out of range for an array "
                         f"of {x.ndim} dimension(s)")
    if not is_integer(threads) or threads < 1:
        raise ValueError(f"softjit.dask.{function}: threads must be a positive integer, "
                         f"not {threads!r}")
    return int(axis) % x.ndim


def _row_totals(x, axis: int, isa: str, threads: int, split_every):
    """Every row's combined PARTIAL record (x without `axis`): the first pass on each chunk,
    the records of a row combined in a tree reduction."""
    return da.reduction(
        x, _first_pass_of(isa, threads), _combine, axis=axis, keepdims=False,
        dtype=PARTIAL, split_every=split_every, combine=_combine, concatenate=True,
        meta=np.empty((0,) * (x.ndim - 1), PARTIAL), name="softjit-row-sums")


def _per_row(total, function, dtype):
    return total.map_blocks(function, dtype=dtype, meta=np.empty((0,) * total.ndim, dtype))


def _output_pass(x, per_row, function, axis: int, isa: str, threads: int, token: str):
    """function(block, its rows' per-row values, ...) on every chunk of x."""
    index = tuple(range(x.ndim))
    row_index = tuple(i for i in index if i != axis)
    return da.blockwise(function, index, x, index, per_row, row_index, axis=axis, isa=isa,
                        threads=threads, dtype=np.float32,
                        meta=np.empty((0,) * x.ndim, np.float32), token=token)


def softmax(x, axis: int = -1, *, isa: str = "auto", threads: int = 1,
            split_every: int | None = None):
    """softmax along `axis` of a float32 Dask array, lazily: a Dask array of the same shape and
    chunks (call .compute(), or .persist()/.store() for results larger than memory).

    Rows may be split across any number of chunks. isa: "auto", "avx2" or "avx512f", resolved
    where this is called (workers must run it too). threads: kernel threads per chunk inside a
    worker. split_every: how many partial records one reduction task combines (Dask's default
    when None). Same special values as softjit.softmax: rows holding NaN or +inf, or only -inf,
    come out all NaN; -inf entries give exactly 0.
    """
    axis = _checked(x, axis, threads, "softmax")
    isa, threads = resolve_isa(isa), int(threads)
    if len(x.chunks[axis]) == 1:
        return x.map_blocks(_whole_rows, axis=axis, isa=isa, threads=threads,
                            dtype=np.float32, meta=np.empty((0,) * x.ndim, np.float32))
    plan = _per_row(_row_totals(x, axis, isa, threads, split_every), _plan, ROW_PLAN)
    return _output_pass(x, plan, _second_pass, axis, isa, threads, "softjit-softmax")


def logsumexp(x, axis: int = -1, *, isa: str = "auto", threads: int = 1,
              split_every: int | None = None):
    """ln(sum(exp(x))) along `axis` of a float32 Dask array, lazily: float32, x's shape
    without `axis`. One read of x (the two-pass first pass per chunk, the chunks' sums combined
    exactly). As softjit.logsumexp: NaN for a row holding NaN, else +inf for one holding +inf,
    -inf for a row of only -inf."""
    axis = _checked(x, axis, threads, "logsumexp")
    isa, threads = resolve_isa(isa), int(threads)
    if len(x.chunks[axis]) == 1:
        return x.map_blocks(_whole_rows_logsumexp, axis=axis, isa=isa, threads=threads,
                            drop_axis=axis, dtype=np.float32,
                            meta=np.empty((0,) * (x.ndim - 1), np.float32))
    return _per_row(_row_totals(x, axis, isa, threads, split_every), _logsumexp_of, np.float32)


def log_softmax(x, axis: int = -1, *, isa: str = "auto", threads: int = 1,
                split_every: int | None = None):
    """log_softmax along `axis` of a float32 Dask array, lazily: x - logsumexp(x), x's shape
    and chunks. Two reads of x and one write (the output pass has no exp). As
    softjit.log_softmax: -inf entries give -inf; rows holding NaN or +inf, or only -inf, come
    out all NaN."""
    axis = _checked(x, axis, threads, "log_softmax")
    isa, threads = resolve_isa(isa), int(threads)
    if len(x.chunks[axis]) == 1:
        return x.map_blocks(_whole_rows_log_softmax, axis=axis, isa=isa, threads=threads,
                            dtype=np.float32, meta=np.empty((0,) * x.ndim, np.float32))
    states = _per_row(_row_totals(x, axis, isa, threads, split_every), _apply_states, STATE)
    return _output_pass(x, states, _log_second_pass, axis, isa, threads, "softjit-log-softmax")


class _first_pass_of:
    """The reduction's chunk function with the isa and thread count bound (picklable)."""

    def __init__(self, isa: str, threads: int):
        self.isa, self.threads = isa, threads

    def __call__(self, block, axis, keepdims=True, computing_meta=False):
        return _first_pass(block, axis, keepdims, self.isa, self.threads, computing_meta)
