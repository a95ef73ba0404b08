"""softjit.dask: softmax, log_softmax and logsumexp of Dask arrays, with softjit's kernels
running inside the workers.

    import dask.array as da, softjit.dask
    y = softjit.dask.softmax(x, axis=-1)      # x: a float32 (or 16-bit) dask array, any chunks
    c = softjit.dask.logsumexp(x, axis=-1)    # x's shape without the axis

Needs the optional extra `softjit[dask]` (dask[array], distributed). Everything runs through
Dask's own array API, so any Dask scheduler runs it: threads, processes, a distributed cluster.
`axis` is an int, a tuple of ints or None (every axis), as for softjit.softmax. x may be float32,
float16 or bfloat16 (ml_dtypes): 16-bit chunks go to softjit's 16-bit kernels as they are
(converted in the kernels' registers, no float32 copy), and the results have x's dtype.

How a row split across chunks is computed (the two-pass algorithm, docs/algorithms.md):
1. every chunk runs the two-pass first pass (raddextexp) on its pieces of the rows, one native
   call for all the rows of a piece, which gives each piece's sum of exp(x) as v * 2^e: a
   PIECE record per row and piece;
2. the records of a row meet in a tree reduction of the graph (`da.reduction`) and combine by
   softjit's own rule for long rows (runtime/rows.py two_pass_totals: the pieces' v * 2^e
   rescaled to the largest exponent and added with math.fsum, the scale 1/sum rounded up). That
   rule rounds the exact sum once, so it is free of order and grouping: the tree only gathers
   the records (a few dozen bytes per row and piece) and the last step applies it;
3. every chunk runs the second pass (vscaleextexp) with the row's combined (e, 1/v).
Two reads and one write per element, no temporary. Where a row is at least rows.SPLIT_ROW_MIN
long and a chunk's bounds along the axis fall on the bounds softjit.softmax reduces such a row
in (rows.chunk_bounds), the chunk yields one record per such piece: the pieces, kernels and rule
are then softjit.softmax's own, and the result is bitwise its result (for any threads=).

A piece the first pass marks (NaN, +inf, only -inf, or magnitudes past the two-pass clamp)
also reports its own maximum m and sum of exp(x - m) (in float64). A row holding NaN or +inf
anywhere comes out all NaN, a piece of only -inf adds nothing, and a row whose magnitudes defeat
the two-pass exponent range takes a max-then-sum combination across its pieces (float64) and
the three-pass output kernel. A row that fits in one chunk goes through softjit.softmax itself.

logsumexp is the same reduction (first pass: log_softmax's reduction kernel, with its shorter
float32 blocks) with ln(v * 2^e) per row at the end; log_softmax follows it with softjit's
log_softmax output pass, y = (x - a) - b with a + b = logsumexp (no exp).
"""
from __future__ import annotations

import math

import numpy as np

try:
    import dask.array as da
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError("softjit.dask needs Dask: pip install 'softjit[dask]' "
                      "(dask[array] and distributed)") from error

import softjit
from softjit.codegen import abi, variants
from softjit.runtime import bindings, rows as row_runtime
from softjit.runtime.api import check_threads
from softjit.runtime.dispatch import nontemporal_for, resolve_isa
from softjit.runtime.elements import accepted_dtypes, element_of
from softjit.runtime.log_softmax import _axes

__all__ = ["softmax", "log_softmax", "logsumexp"]

STATE = abi.PASS_STATE.numpy_dtype()

# Per row and piece: the first pass's state (e, 1/v, v) with the piece's sum = v * 2^e; whether
# the first pass marked the piece, and then what it holds: nan, posinf (softmax: the whole row
# is NaN; logsumexp: NaN, else +inf) and the piece's max and sum of exp(x - max) (max = -inf:
# nothing, or only -inf entries).
PIECE = np.dtype([("state", STATE), ("marked", "?"), ("nan", "?"), ("posinf", "?"),
                  ("max", "f8"), ("max_sum", "f8")])

# The state of a piece with no elements (a chunk of length 0 along a reduced axis): v = 0 at an
# exponent below any the first pass gives (x is clamped at -2^20, so e > -2^21 * log2(e)).
EMPTY_EXPONENT = -2.0 ** 23

# Per row, what every chunk's softmax output pass needs: the pass state and which kernel.
MODE_TWO_PASS, MODE_MAX, MODE_NAN = 0, 1, 2
ROW_PLAN = np.dtype([("state", STATE), ("mode", "i1")])

LN2 = math.log(2.0)


# ---------------------------------------------------------------------------- native kernels
class _Kernels:
    """The native calls one function makes in a worker (looked up once a process): the first
    pass's batch driver (abi.REDUCE_DRIVER_PARAMS) and the output pass's (abi.APPLY_DRIVER_PARAMS)
    of softmax's two-pass module (the kernels softjit.softmax runs) or of log_softmax's (shorter
    float32 blocks, as softjit.logsumexp), plain and with non-temporal stores, for x's element
    format; for softmax also the three-pass output pass, for the rows by maximum."""

    def __init__(self, function: str, isa: str, element: str):
        self.softmax = function == "softmax"
        self.isa, self.element = isa, element
        self.reduce = self._module_function(False, "reduce_symbol")
        self.apply = {nt: self._module_function(nt, "apply_symbol") for nt in (False, True)}
        self.scale_expminusmax = {
            nt: bindings.passes("three-pass-recompute", isa, nt, element).functions[2]
            for nt in (False, True)} if self.softmax else None

    def _module_function(self, nontemporal: bool, which: str):
        if self.softmax:
            variant = variants.REGISTRY.softmax_or_plain("two-pass", self.isa, nontemporal,
                                                         self.element)
        else:
            variant = variants.REGISTRY.log_softmax("two-pass", self.isa, nontemporal,
                                                    self.element)
        return bindings.function(variant, getattr(variant, which))

    def first_pass(self, x2d: np.ndarray, states: np.ndarray, status: np.ndarray) -> None:
        """Every row of x2d (unit element stride, any row stride): its first-pass state, and
        status[r] != 0 where the pass marked the row. One native call."""
        count, n = x2d.shape
        p = bindings.pointer
        self.reduce(p(x2d), n, count, x2d.strides[0], p(states), p(status))

    def output_pass(self, x2d: np.ndarray, y2d: np.ndarray, states: np.ndarray) -> None:
        """The output pass on every row of x2d into y2d, row r with states[r]. One native
        call."""
        count, n = x2d.shape
        p = bindings.pointer
        strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
        apply = self.apply[nontemporal_for(y2d.nbytes)]
        apply(p(x2d), p(y2d), n, count, p(strides), p(states))


_kernels: dict = {}


def _kernels_for(function: str, isa: str, dtype: np.dtype) -> _Kernels:
    element = element_of(dtype).name
    key = (function == "softmax", isa, element)
    found = _kernels.get(key)
    if found is None:
        found = _kernels.setdefault(key, _Kernels(function, isa, element))
    return found


def _on_rows(count: int, threads: int, work) -> None:
    """work(start, end) over range(count), on up to `threads` threads (softjit's pool)."""
    threads = row_runtime.threads_for(threads, count)
    if threads <= 1:
        work(0, count)
        return
    row_runtime.on_threads([(lambda a=a, b=b: work(a, b))
                            for a, b in row_runtime.pieces(count, threads)])


# ---------------------------------------------------------------------------- shapes
def _moved(block: np.ndarray, axes: tuple) -> np.ndarray:
    """block with `axes` moved to the end, in order."""
    k = len(axes)
    return np.moveaxis(block, axes, tuple(range(block.ndim - k, block.ndim)))


def _rows(block: np.ndarray, axes: tuple) -> np.ndarray:
    """The block's rows (its `axes` moved last and merged) as (rows, m), its own dtype, with unit
    element stride: a view where one row stride addresses them (a chunk of a larger array
    along the last axis, say), else a C-contiguous copy."""
    moved = _moved(block, axes)
    k = moved.ndim - len(axes)
    shape = (math.prod(moved.shape[:k]), math.prod(moved.shape[k:]))
    if moved.flags.aligned:
        view = moved.view()
        try:
            view.shape = shape  # raises instead of copying
        except AttributeError:
            pass
        else:
            if shape[1] <= 1 or view.strides[1] == moved.itemsize:
                return view
    return np.ascontiguousarray(moved).reshape(shape)


def _unmoved(values: np.ndarray, block_shape: tuple, axes: tuple) -> np.ndarray:
    """(rows, m) values back in the block's own layout (the inverse of _rows)."""
    k = len(axes)
    moved_shape = tuple(s for i, s in enumerate(block_shape) if i not in axes) + \
        tuple(block_shape[a] for a in axes)
    back = np.moveaxis(values.reshape(moved_shape), tuple(range(len(block_shape) - k,
                                                                 len(block_shape))), axes)
    return np.ascontiguousarray(back)


def _piece_bounds(start: int, end: int, n: int) -> list:
    """The [a, b) pieces (offsets in the chunk) the chunk [start, end) of a row of n elements
    is reduced in: softjit.softmax's own chunks of a long row (rows.chunk_bounds) where the
    chunk starts and ends on their bounds, else the chunk whole."""
    if n >= row_runtime.SPLIT_ROW_MIN and end > start:
        grid = row_runtime.chunk_bounds(n)
        starts = {a for a, _ in grid}
        if start in starts and (end in starts or end == n):
            return [(a - start, b - start) for a, b in grid if start <= a < end]
    return [(0, end - start)]


# ---------------------------------------------------------------------------- pass 1 per chunk
def _first_pass(block: np.ndarray, *, axes: tuple, n: int, function: str, isa: str,
                threads: int, block_info=None) -> np.ndarray:
    """Per row of this chunk and piece of it: a PIECE record. Shape: the block's, with the
    reduced axis as long as the chunk has pieces (one axis), or 1 along each reduced axis."""
    if len(axes) == 1:
        start, end = block_info[0]["array-location"][axes[0]]
        bounds = _piece_bounds(start, end, n)
    else:
        bounds = [(0, math.prod(block.shape[a] for a in axes))]
    x2d = _rows(block, axes)
    count = x2d.shape[0]
    records = np.zeros((count, len(bounds)), PIECE)
    records["max"] = -np.inf
    kernels = _kernels_for(function, isa, block.dtype)
    for j, (a, b) in enumerate(bounds):
        column = records[:, j]
        if b == a:
            column["state"]["max_or_exponent"] = EMPTY_EXPONENT
            column["state"]["scale"] = 1.0
            continue
        piece = x2d[:, a:b]
        states = np.zeros(count, STATE)
        status = np.zeros(count, np.int32)
        _on_rows(count, threads, lambda r0, r1: kernels.first_pass(piece[r0:r1], states[r0:r1],
                                                                   status[r0:r1]))
        column["state"] = states
        for r in np.flatnonzero(status):
            _marked_piece(piece[r], column[r:r + 1])
    shape = tuple(s for i, s in enumerate(block.shape) if i not in axes)
    if len(axes) == 1:
        return np.moveaxis(records.reshape(shape + (len(bounds),)), -1, axes[0])
    k = len(axes)
    return np.moveaxis(records.reshape(shape + (1,) * k),
                       tuple(range(len(shape), len(shape) + k)), axes)


def _marked_piece(piece: np.ndarray, record: np.ndarray) -> None:
    """A piece the two-pass first pass marked: what it holds, its maximum and sum relative to
    it (float64)."""
    record["marked"] = True
    record["nan"], record["posinf"] = np.isnan(piece).any(), (piece == np.inf).any()
    if record["nan"][0] or record["posinf"][0]:
        return
    m = float(piece.max())
    if m == -np.inf:
        return  # only -inf: this piece adds nothing
    record["max"] = m
    record["max_sum"] = math.fsum(np.exp(piece.astype(np.float64) - m).tolist())


def _piece_chunks(x, axes: tuple) -> tuple:
    """The chunks of _first_pass's output: pieces per chunk along the one reduced axis."""
    if len(axes) == 1:
        (axis,) = axes
        n = x.shape[axis]
        edges = np.cumsum((0,) + x.chunks[axis]).tolist()
        pieces = tuple(len(_piece_bounds(a, b, n)) for a, b in zip(edges, edges[1:]))
        return tuple(pieces if i == axis else c for i, c in enumerate(x.chunks))
    return tuple((1,) * len(c) if i in axes else c for i, c in enumerate(x.chunks))


# ---------------------------------------------------------------------------- the reduction
def _gathered(records: np.ndarray, axis, keepdims: bool = True) -> np.ndarray:
    """A level of the tree: the records Dask concatenated, passed on (the combination rule
    needs every piece's record; it is applied once, by the last step)."""
    return records


class _RowSums:
    """Every row's total from its PIECE records (rows, k): which rows are special (NaN or +inf
    somewhere, or nothing but -inf), two-pass (softjit's exact rule, rows.two_pass_totals) or
    by maximum; and the values each kind needs."""

    def __init__(self, records: np.ndarray):
        self.nan = records["nan"].any(axis=1)
        self.posinf = records["posinf"].any(axis=1)
        self.final, self.totals, ok = row_runtime.two_pass_totals(records["state"])
        self.two_pass = ok & ~self.nan & ~self.posinf
        self.ref = np.zeros(len(records))
        self.sums = np.zeros(len(records))
        rest = np.flatnonzero(~self.two_pass & ~self.nan & ~self.posinf)
        empty = np.zeros(len(records), bool)
        if len(rest):
            ref, sums = _by_maximum(records[rest])
            self.ref[rest], self.sums[rest] = ref, sums
            empty[rest] = ~(sums > 0)
        self.special = self.nan | self.posinf | empty
        self.by_max = ~self.two_pass & ~self.special

    def log_sums(self) -> np.ndarray:
        """ln(sum(exp(x))) per row, float64: NaN if the row holds a NaN, else +inf if it holds
        +inf, -inf if it holds only -inf."""
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(self.two_pass,
                         np.log(self.totals)
                         + self.final["max_or_exponent"].astype(np.float64) * LN2,
                         self.ref + np.log(self.sums))
        c = np.where(self.special, -np.inf, c)
        c = np.where(self.posinf, np.inf, c)
        return np.where(self.nan, np.nan, c)


def _by_maximum(records: np.ndarray):
    """Rows the two-pass rule does not take (exponents past the clamp): (ref, sums) with ref a
    float32 at least every element's value and sums = the sum of exp(x - ref) over the row,
    float64, from the marked pieces' (max, max_sum) and the others' v * 2^e."""
    state = records["state"]
    accepted = ~records["marked"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        v = state["sum"].astype(np.float64)
        e = state["max_or_exponent"].astype(np.float64)
        ext_log = np.where(accepted & (v > 0), np.log(v) + e * LN2, -np.inf)
        peak = np.maximum(records["max"].max(axis=1), ext_log.max(axis=1))
        ref = peak.astype(np.float32)
        ref = np.where(ref < peak, np.nextafter(ref, np.float32(np.inf)), ref).astype(np.float64)
        ref = np.where(np.isfinite(ref), ref, 0.0)
        marked = np.where(records["max"] > -np.inf,
                          records["max_sum"] * np.exp(records["max"] - ref[:, None]), 0.0)
        rest = np.where(ext_log > -np.inf, np.exp(ext_log - ref[:, None]), 0.0)
        sums = (marked + rest).sum(axis=1)
    return ref, sums


def _row_records(records: np.ndarray, axes: tuple) -> np.ndarray:
    """Gathered records with the reduced axes last, as (rows, pieces)."""
    moved = _moved(records, axes)
    k = moved.ndim - len(axes)
    return moved.reshape(math.prod(moved.shape[:k]), math.prod(moved.shape[k:]))


def _kept_shape(records: np.ndarray, axes: tuple, keepdims: bool) -> tuple:
    return tuple(1 if i in axes else s for i, s in enumerate(records.shape)
                 if keepdims or i not in axes)


def _plan(records: np.ndarray, axis, keepdims: bool = False) -> np.ndarray:
    """The gathered PIECE records of every row -> its ROW_PLAN (which output kernel, with what
    state)."""
    sums = _RowSums(_row_records(records, axis))
    plan = np.zeros(len(sums.two_pass), ROW_PLAN)
    state = plan["state"]
    state[sums.two_pass] = sums.final[sums.two_pass]
    with np.errstate(divide="ignore"):
        # by maximum: y = min(exp(x - ref) * (1 / sums), 1)
        state["max_or_exponent"][sums.by_max] = sums.ref[sums.by_max]
        state["scale"][sums.by_max] = 1.0 / sums.sums[sums.by_max]
        state["sum"][sums.by_max] = sums.sums[sums.by_max]
    plan["mode"] = np.where(sums.special, MODE_NAN,
                            np.where(sums.two_pass, MODE_TWO_PASS, MODE_MAX))
    return plan.reshape(_kept_shape(records, axis, keepdims))


def _logsumexp_of(records: np.ndarray, axis, keepdims: bool = False) -> np.ndarray:
    c = _RowSums(_row_records(records, axis)).log_sums()
    return c.astype(np.float32).reshape(_kept_shape(records, axis, keepdims))


def _apply_states(records: np.ndarray, axis, keepdims: bool = False) -> np.ndarray:
    """Per row, the log_softmax output pass's state: y = (x - a) - b with a + b = ln(sum)
    (a the float32 nearest it, b the rest; a = ref exactly for the rows by maximum, so that
    x - a is exact near the maximum), a = NaN for the rows that come out NaN."""
    sums = _RowSums(_row_records(records, axis))
    c = sums.log_sums()
    states = np.zeros(len(c), STATE)
    with np.errstate(divide="ignore", invalid="ignore"):
        high = np.where(sums.by_max, sums.ref, c.astype(np.float32))
        low = np.where(sums.by_max, np.log(sums.sums), c - high)
    states["max_or_exponent"] = np.where(sums.special, np.nan, high)
    states["scale"] = np.where(sums.special, 0.0, low)
    return states.reshape(_kept_shape(records, axis, keepdims))


# ---------------------------------------------------------------------------- pass 2 per chunk
def _second_pass(block: np.ndarray, plan: np.ndarray, axes: tuple, isa: str,
                 threads: int) -> np.ndarray:
    """softmax of this chunk's pieces of rows, each row scaled by its plan: one native call for
    each run of two-pass rows (all of them, as a rule), the other rows one by one."""
    x2d = _rows(block, axes)
    count, m = x2d.shape
    out = np.empty((count, m), block.dtype)
    plans = np.ascontiguousarray(plan).reshape(-1)
    states = np.ascontiguousarray(plans["state"])
    modes = plans["mode"]
    if m and count:
        kernels = _kernels_for("softmax", isa, block.dtype)
        scale_expminusmax = kernels.scale_expminusmax[nontemporal_for(out.nbytes)]
        p = bindings.pointer

        def work(a, b):
            two_pass = modes[a:b] == MODE_TWO_PASS
            if two_pass.all():
                kernels.output_pass(x2d[a:b], out[a:b], states[a:b])
                return
            # runs of equal modes: [edges[i], edges[i + 1]) relative to a
            edges = np.concatenate(([0], np.flatnonzero(np.diff(two_pass)) + 1, [b - a]))
            for start, end in zip(edges[:-1].tolist(), edges[1:].tolist()):
                r0, r1 = a + start, a + end
                if two_pass[start]:
                    kernels.output_pass(x2d[r0:r1], out[r0:r1], states[r0:r1])
                    continue
                for r in range(r0, r1):
                    if modes[r] == MODE_MAX:
                        scale_expminusmax(p(x2d[r]), p(out[r]), m, p(states[r:r + 1]))
                        np.minimum(out[r], 1.0, out=out[r])  # never above 1, whatever ref was
                    else:
                        out[r] = np.nan

        _on_rows(count, threads, work)
    return _unmoved(out, block.shape, axes)


def _log_second_pass(block: np.ndarray, states: np.ndarray, axes: tuple, isa: str,
                     threads: int) -> np.ndarray:
    """log_softmax of this chunk's pieces of rows: y = (x - a) - b with each row's (a, b)."""
    x2d = _rows(block, axes)
    count, m = x2d.shape
    out = np.empty((count, m), block.dtype)
    states = np.ascontiguousarray(states).reshape(-1)
    if m and count:
        kernels = _kernels_for("log_softmax", isa, block.dtype)
        _on_rows(count, threads,
                 lambda a, b: kernels.output_pass(x2d[a:b], out[a:b], states[a:b]))
    return _unmoved(out, block.shape, axes)


# ---------------------------------------------------------------------------- whole rows
def _whole_rows(block: np.ndarray, axes: tuple, isa: str, threads: int) -> np.ndarray:
    return softjit.softmax(block, axis=axes, isa=isa, threads=threads)


def _whole_rows_log_softmax(block: np.ndarray, axes: tuple, isa: str, threads: int):
    return softjit.log_softmax(block, axis=axes, isa=isa, threads=threads)


def _whole_rows_logsumexp(block: np.ndarray, axes: tuple, keepdims: bool, isa: str,
                          threads: int) -> np.ndarray:
    return np.asarray(softjit.logsumexp(block, axis=axes, keepdims=keepdims, isa=isa,
                                        threads=threads))


# ---------------------------------------------------------------------------- the public calls
def _checked(x, axis, threads, function: str) -> tuple:
    """The axes as a sorted tuple, after checking x, axis and threads."""
    if not isinstance(x, da.Array):
        raise TypeError(f"softjit.dask.{function} takes a dask array, not {type(x).__name__}; "
                        f"wrap numpy data with dask.array.from_array, or call softjit.{function}")
    if element_of(x.dtype) is None:
        raise TypeError(f"softjit.dask.{function} takes {accepted_dtypes()} data, got "
                        f"{x.dtype}; convert it with x.astype(numpy.float32)")
    if x.ndim == 0:
        raise ValueError(f"softjit.dask.{function} needs an array with at least one dimension; "
                         "got a 0-d array")
    check_threads(threads, f"dask.{function}")
    return _axes(axis, x.ndim, f"dask.{function}")


def _whole(x, axes: tuple) -> bool:
    """Every row lies in one chunk."""
    return all(len(x.chunks[a]) == 1 for a in axes)


def _row_reduction(x, axes: tuple, function: str, aggregate, dtype, isa: str, threads: int,
                   split_every, keepdims: bool = False):
    """Per row, aggregate(every PIECE record of the row): the first pass on each chunk, the
    records gathered by a tree reduction."""
    partials = da.map_blocks(
        _first_pass, x, axes=axes, n=math.prod(x.shape[a] for a in axes), function=function,
        isa=isa, threads=threads, dtype=PIECE, chunks=_piece_chunks(x, axes),
        meta=np.empty((0,) * x.ndim, PIECE), name=f"softjit-{function}-pieces")
    shape = (0,) * (x.ndim - (0 if keepdims else len(axes)))
    # dtype: what the tree's tasks hand on (records); meta: what the last step gives
    return da.reduction(
        partials, _gathered, aggregate, axis=axes, keepdims=keepdims, dtype=PIECE,
        split_every=split_every, combine=_gathered, concatenate=True,
        meta=np.empty(shape, dtype), name=f"softjit-{function}-rows")


def _output_pass(x, per_row, function, axes: tuple, isa: str, threads: int, token: str):
    """function(block, its rows' per-row values, ...) on every chunk of x."""
    index = tuple(range(x.ndim))
    row_index = tuple(i for i in index if i not in axes)
    return da.blockwise(function, index, x, index, per_row, row_index, axes=axes, isa=isa,
                        threads=threads, dtype=x.dtype,
                        meta=np.empty((0,) * x.ndim, x.dtype), token=token)


def softmax(x, axis=-1, *, isa: str = "auto", threads: int = 1,
            split_every: int | None = None):
    """softmax along `axis` (an int, a tuple of ints or None: every axis) of a float32, float16
    or bfloat16 Dask array, lazily: a Dask array of the same shape, chunks and dtype (call
    .compute(), or .persist()/.store() for results larger than memory).

    Rows may be split across any number of chunks. isa: "auto", "avx2" or "avx512f", resolved
    where this is called (workers must run it too). threads: kernel threads per chunk inside a
    worker. split_every: how many chunks' records one reduction task gathers (Dask's default
    when None). Same special values as softjit.softmax: rows holding NaN or +inf, or only -inf,
    come out all NaN; -inf entries give exactly 0. Bitwise softjit.softmax's result where a row
    lies in one chunk, or where it is long enough for softjit to split it and the chunks' bounds
    fall on softjit's own (see the module's doc).
    """
    axes = _checked(x, axis, threads, "softmax")
    isa, threads = resolve_isa(isa), int(threads)
    if _whole(x, axes):
        return x.map_blocks(_whole_rows, axes=axes, isa=isa, threads=threads,
                            dtype=x.dtype, meta=np.empty((0,) * x.ndim, x.dtype))
    plan = _row_reduction(x, axes, "softmax", _plan, ROW_PLAN, isa, threads, split_every)
    return _output_pass(x, plan, _second_pass, axes, isa, threads, "softjit-softmax")


def logsumexp(x, axis=-1, *, keepdims: bool = False, isa: str = "auto", threads: int = 1,
              split_every: int | None = None):
    """ln(sum(exp(x))) along `axis` (an int, a tuple of ints or None) of a float32, float16 or
    bfloat16 Dask array, lazily: x's dtype (16-bit results rounded from the float32 result, as
    softjit.logsumexp gives them), x's shape without the reduced axes (kept as length 1 with
    keepdims). One read of x (the two-pass first pass per chunk, the pieces' sums combined
    exactly). As softjit.logsumexp: NaN for a row holding NaN, else +inf for one holding +inf,
    -inf for a row of only -inf."""
    axes = _checked(x, axis, threads, "logsumexp")
    isa, threads = resolve_isa(isa), int(threads)
    if _whole(x, axes):
        kept = () if keepdims else axes
        return x.map_blocks(_whole_rows_logsumexp, axes=axes, keepdims=bool(keepdims), isa=isa,
                            threads=threads, drop_axis=kept, dtype=x.dtype,
                            chunks=tuple((1,) if i in axes else c
                                         for i, c in enumerate(x.chunks) if i not in kept),
                            meta=np.empty((0,) * (x.ndim - len(kept)), x.dtype))
    c = _row_reduction(x, axes, "logsumexp", _logsumexp_of, np.float32, isa, threads,
                       split_every, keepdims=bool(keepdims))
    return c if x.dtype == np.float32 else c.astype(x.dtype)  # as softjit.logsumexp rounds it


def log_softmax(x, axis=-1, *, isa: str = "auto", threads: int = 1,
                split_every: int | None = None):
    """log_softmax along `axis` (an int, a tuple of ints or None) of a float32, float16 or
    bfloat16 Dask array, lazily: x - logsumexp(x), x's shape, chunks and dtype. Two reads of x
    and one write (the output pass has no exp). As softjit.log_softmax: -inf entries give -inf;
    rows holding NaN or +inf, or only -inf, come out all NaN."""
    axes = _checked(x, axis, threads, "log_softmax")
    isa, threads = resolve_isa(isa), int(threads)
    if _whole(x, axes):
        return x.map_blocks(_whole_rows_log_softmax, axes=axes, isa=isa, threads=threads,
                            dtype=x.dtype, meta=np.empty((0,) * x.ndim, x.dtype))
    states = _row_reduction(x, axes, "log_softmax", _apply_states, STATE, isa, threads,
                            split_every)
    return _output_pass(x, states, _log_second_pass, axes, isa, threads, "softjit-log-softmax")
