"""Rows: running a softmax over the rows of 2-D (rows, n) views, with threads.

One native call runs a whole batch of rows (the row driver loops over them with a row stride).
Rows the two-pass kernels mark (NaN, +inf, all -inf, or magnitudes past the two-pass clamp) are
redone by the three-pass-reload kernels, which handle every float32 input. Calls release the GIL
(cffi does around every foreign call), so threads=k splits the work over k threads.

Results are bitwise identical for every threads=k. A row shorter than SPLIT_ROW_MIN is computed
whole by one driver call, whichever thread runs it. A longer row is always reduced chunk by chunk
(threads=1 included), over chunks whose bounds depend on n only (chunk_bounds): each chunk's
partial (a sum, or two-pass's v * 2^e) comes from the pass kernels, the partials combine in
Python by an exact, order-free rule (math.fsum of float64 values, two-pass pairs rescaled to the
largest exponent by exact powers of two), and the output scale is computed once from that sum.
Threads only decide which thread reduces which chunks; the passes that are not sums (the
maximum, and the elementwise final pass) give the same bits however the row is cut.

With input_scale (a numpy.float32, softmax(scale * x)) the scaled kernels run the same way; the
rows they flag with a non-finite maximum (a product that may have overflowed) are computed by
the host (runtime/scaled.py).

The native functions come from bindings.driver and bindings.passes (looked up through the module
at each call, so that tests can put emulated kernels in their place).
"""
from __future__ import annotations

import concurrent.futures
import math
import os
import threading

import numpy as np

from softjit.codegen.kernels import constants as kernel_constants
from softjit.runtime import bindings, scaled
from softjit.runtime.bindings import PASS_STATE_DTYPE, STATUS_DTYPE, strides_argument
from softjit.runtime.dispatch import SPLIT_ROW_MIN, nontemporal_for
from softjit.runtime.elements import element_of, recompute_algorithm

# SPLIT_ROW_MIN (dispatch.py): rows of at least that many elements are reduced chunk by chunk.
# A chunk holds at least CHUNK_MIN elements (1 MiB: its kernel call costs a few us beside tens
# of us of work), and a row has at most MAX_CHUNKS chunks (longer rows get longer chunks, so the
# per-chunk calls stay under ~0.1 ms a row); chunk lengths are multiples of CHUNK_ALIGN elements
# (whole pages, a whole number of the kernels' 2048-element float32 blocks).
CHUNK_MIN = 1 << 18
MAX_CHUNKS = 64
CHUNK_ALIGN = 4096
# Pieces of the passes that are not sums start on a cache line (64 floats) of the row.
PIECE_ALIGN = 64

_STATE = PASS_STATE_DTYPE


def chunk_bounds(n: int) -> list:
    """[start, end) of the chunks a row of n elements is reduced in: a function of n only."""
    size = max(CHUNK_MIN, -(-n // MAX_CHUNKS))
    size = -(-size // CHUNK_ALIGN) * CHUNK_ALIGN
    return [(a, min(a + size, n)) for a in range(0, n, size)]


# ---------------------------------------------------------------------------- threads
def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask, as taskset or a container's
    cpuset leaves it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def threads_for(threads: int, pieces: int | None = None) -> int:
    """The threads that can help: at most `threads`, the CPUs this process may run on, and (when
    given) the pieces of work there are (rows of a batch, chunks of a long row)."""
    if threads <= 1 or (pieces is not None and pieces <= 1):
        return 1
    limit = usable_cpus() if pieces is None else min(pieces, usable_cpus())
    return max(1, min(threads, limit))


_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _threads_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One pool for the process, at most a worker per CPU of the machine (workers start only as
    work asks for them: a call with k threads hands k - 1 pieces to the pool and runs one
    itself, so the pool grows to the most threads - 1 any call could use)."""
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="softjit")
            pool = _pool
    return pool


def _forget_pool_in_child() -> None:
    """After fork the child has only the forking thread: the pool's workers do not exist there
    (work handed to them would wait forever) and a lock another thread held stays held. The
    child starts a pool of its own when it needs one."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def on_threads(calls: list) -> list:
    """Run the thunks in `calls`, the first on this thread and the others on the pool; their
    results in order."""
    if len(calls) == 1:
        return [calls[0]()]
    pool = _threads_pool()
    futures = [pool.submit(call) for call in calls[1:]]
    try:
        first = calls[0]()
    finally:
        others = [f.result() for f in futures]  # never leave a piece running behind
    return [first] + others


def rows_view(a: np.ndarray):
    """a (last axis = the softmax axis) as a 2-D (rows, n) view with unit element stride, or None
    when its rows cannot be addressed with one row stride."""
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.strides[-1] != a.itemsize:
        return None
    if a.ndim == 2:
        return a
    try:
        flat = a.view()
        flat.shape = (-1, a.shape[-1])  # raises instead of copying
        return flat
    except AttributeError:
        return None


def safe_overlap(dst: np.ndarray, src: np.ndarray) -> bool:
    """dst rows may be written while src rows are read: no shared memory, or exactly in place."""
    if not np.shares_memory(dst, src):
        return True
    return (dst.ctypes.data == src.ctypes.data and dst.strides == src.strides)


def pieces(count: int, parts: int, align: int = 1) -> list:
    """[start, end) bounds of `parts` nearly equal pieces of range(count), the inner bounds
    multiples of `align` (64 floats: pieces of one row start on cache lines together)."""
    bounds = sorted({min(count, (count * k // parts) // align * align) for k in range(parts)}
                    | {count})
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _driver(algorithm: str, isa: str, nontemporal: bool, element: str, input_scale):
    """The row driver (bindings.driver); a scaled one with input_scale (float32 x only)."""
    if input_scale is None:
        return bindings.driver(algorithm, isa, nontemporal, element)
    return bindings.driver(algorithm, isa, nontemporal, element, scaled=True)


def _passes(algorithm: str, isa: str, nontemporal: bool, element: str, input_scale):
    if input_scale is None:
        return bindings.passes(algorithm, isa, nontemporal, element)
    return bindings.passes(algorithm, isa, nontemporal, element, scaled=True)


def _states(count: int, input_scale) -> np.ndarray:
    """count zeroed pass states, holding the input scale of scaled kernels."""
    states = np.zeros(count, _STATE)
    if input_scale is not None:
        states["input_scale"] = input_scale
    return states


def run_rows(x2d: np.ndarray, y2d: np.ndarray, algorithm: str, isa: str, threads: int,
             input_scale=None) -> None:
    """y2d = softmax of every row of x2d (both (rows, n) with unit element stride, of one dtype:
    float32, float16 or bfloat16, whose kernels the driver runs); of input_scale * x2d with
    input_scale (a numpy.float32; float32 rows only)."""
    rows, n = x2d.shape
    if n >= SPLIT_ROW_MIN:
        return _run_long_rows(x2d, y2d, algorithm, isa, threads, input_scale)
    strides = strides_argument(x2d.strides[0], y2d.strides[0], input_scale)
    status = np.empty(rows, STATUS_DTYPE)
    run = _driver(algorithm, isa, nontemporal_for(x2d.nbytes), element_of(x2d.dtype).name,
                  input_scale)
    threads = threads_for(threads, rows)
    if threads > 1:
        marked = sum(on_threads([
            (lambda a=a, b=b: run(x2d[a:b], y2d[a:b], status[a:b], strides))
            for a, b in pieces(rows, threads)]))
    else:
        marked = run(x2d, y2d, status, strides)
    if marked:
        recompute_rows(x2d, y2d, status, isa, input_scale)
    return None


def recompute_rows(x2d: np.ndarray, y2d: np.ndarray, status: np.ndarray, isa: str,
                   input_scale=None) -> None:
    """Rows the two-pass driver marked, again with three passes (any input):
    three-pass-reload, or three-pass-recompute for 16-bit elements (elements.py). Scaled: also
    the rows the three-pass drivers mark (a maximum that is not finite), and the rows
    three-pass-reload marks in turn go to the host (runtime/scaled.py)."""
    element = element_of(x2d.dtype)
    fallback = _driver(recompute_algorithm(element), isa, False, element.name, input_scale)
    strides = strides_argument(x2d.strides[0], y2d.strides[0], input_scale)
    for r in np.flatnonzero(status):
        marked = fallback(x2d[r:r + 1], y2d[r:r + 1], np.empty(1, STATUS_DTYPE), strides)
        if marked and input_scale is not None:
            y2d[r] = scaled.softmax_row(x2d[r], input_scale)


def _run_long_rows(x2d, y2d, algorithm, isa, threads, input_scale) -> None:
    """Rows of SPLIT_ROW_MIN or more elements, each reduced chunk by chunk: a batch of at least
    as many rows as threads spreads whole rows over the threads, fewer rows spread each row's
    chunks; both compute every row the same way."""
    rows, n = x2d.shape
    threads = threads_for(threads, max(rows, len(chunk_bounds(n))))
    if threads > 1 and rows >= threads:
        def some_rows(a, b):
            for r in range(a, b):
                split_row(x2d[r], y2d[r], algorithm, isa, 1, input_scale)

        on_threads([(lambda a=a, b=b: some_rows(a, b)) for a, b in pieces(rows, threads)])
        return None
    for r in range(rows):
        split_row(x2d[r], y2d[r], algorithm, isa, threads, input_scale)
    return None


def split_row(x: np.ndarray, y: np.ndarray, algorithm: str, isa: str, threads: int,
              input_scale=None) -> None:
    """y = softmax(x) (of input_scale * x) for one row of SPLIT_ROW_MIN or more elements,
    reduced over the chunks of chunk_bounds(n) on up to `threads` threads, with the same bits
    for any `threads`."""
    n = x.shape[0]
    chunks = chunk_bounds(n)
    threads = threads_for(threads, len(chunks))
    element = element_of(x.dtype)
    kernels = _passes(algorithm, isa, nontemporal_for(x.nbytes), element.name, input_scale)
    row_pieces = pieces(n, threads, align=PIECE_ALIGN) if threads > 1 else None

    def over_pieces(index: int, state: np.ndarray) -> np.ndarray:
        """Pass `index` over the row in `threads` pieces, each with a copy of `state` (returned):
        for the passes whose bits do not depend on where the row is cut."""
        if threads == 1:
            kernels.run(index, x, y, state)
            return state
        states = np.repeat(state, len(row_pieces))
        on_threads([(lambda a=a, b=b, k=k: kernels.run(index, x[a:b], y[a:b], states[k:k + 1]))
                     for k, (a, b) in enumerate(row_pieces)])
        return states

    def over_chunks(index: int, states: np.ndarray) -> None:
        """Pass `index` over every chunk, chunk i with states[i]; threads take runs of chunks."""
        if threads == 1:
            kernels.run_pieces(index, x, y, states, chunks)
            return
        on_threads([(lambda a=a, b=b: kernels.run_pieces(index, x, y, states[a:b], chunks[a:b]))
                     for a, b in pieces(len(chunks), threads)])

    states = _states(len(chunks), input_scale)
    if algorithm == "two-pass":
        over_chunks(0, states)
        final = _two_pass_total(states, input_scale)
        if final is None:  # NaN, +inf, all -inf, or past the two-pass clamp: three passes
            return split_row(x, y, recompute_algorithm(element), isa, threads, input_scale)
        over_pieces(1, final)
        return None
    # three-pass: the maximum (exact however the row is cut), then the chunk sums
    maxima = over_pieces(0, _states(1, input_scale))
    row_max = maxima["max_or_exponent"].max()
    if input_scale is not None and not np.isfinite(row_max):  # a product may have overflowed
        y[...] = scaled.softmax_row(x, input_scale)
        return None
    if row_max == 0:
        row_max = np.float32(0.0)  # -0.0 and +0.0 give the same exp(x - m): one of them
    states["max_or_exponent"] = row_max
    over_chunks(1, states)
    total = math.fsum(states["sum"].astype(np.float64).tolist())
    if total != total:  # a NaN or +inf in the row, or only -inf: the row is NaN
        y[...] = np.nan
        return None
    final = _states(1, input_scale)
    final["max_or_exponent"], final["scale"], final["sum"] = row_max, scale_for(total), total
    over_pieces(2, final)
    return None


def scale_for(total, round_up: bool = False):
    """The output scale of a row whose sum is `total` (a float64, or an array of them) exactly as
    the sum passes store it for a whole row (store_reciprocal in codegen/kernels/pass_emitter.py):
    1 / total rounded once to float32, and for two-pass (round_up) the next float32 above that,
    so that a row's only finite entry comes out as exactly 1 (the final pass takes min(y, 1)).
    total >= 1 for three passes (the maximum's own term is exp(0) = 1) and above 0.5 for two
    (the largest exponent's term), so 1 / total is a normal float32."""
    scale = np.float32(1.0 / total) if np.ndim(total) == 0 else (1.0 / total).astype(np.float32)
    return np.nextafter(scale, np.float32(np.inf)) if round_up else scale


def two_pass_totals(states: np.ndarray):
    """The exact combination of two-pass partial sums, for a batch of rows: states (rows, k)
    PASS_STATE records, row r's sum being the sum over its k pieces of v_i * 2^e_i (the first
    pass's (e, 1/v, v) of each piece). Returns (final, totals, ok): final (rows,) the state the
    output pass takes, (top, scale_for(total, True), total) with top = max e_i and total =
    math.fsum of v_i * 2^(e_i - top) (float64, also returned as totals); ok[r] is False where
    the row needs three passes: a piece whose 1/v is NaN (a NaN or +inf in it), or a row
    exponent outside the two-pass range (only -inf, or magnitudes past the clamp). A piece that
    alone would be too small (only -inf in it, say) is fine in a row that is not. The rule is
    free of order (fsum rounds the exact sum once), so it gives the same bits whoever adds the
    pieces, in whatever grouping."""
    rows = states.shape[0]
    exponents = states["max_or_exponent"].astype(np.float64)
    final = np.zeros(rows, _STATE)
    totals = np.zeros(rows)
    if rows == 0 or states.shape[1] == 0:
        return final, totals, np.zeros(rows, bool)
    with np.errstate(invalid="ignore"):
        top = exponents.max(axis=1)
        ok = ~np.isnan(states["scale"]).any(axis=1) & ~np.isnan(top)
        ok &= (kernel_constants.TWO_PASS_E_LOW < top) & (top < kernel_constants.TWO_PASS_E_HIGH)
    good = np.flatnonzero(ok)
    if len(good):
        # v_i * 2^(e_i - top) as float64: exact except where it falls below 2^-1022 (C ldexp
        # rounds those once, the same in numpy and math)
        shifts = (exponents[good] - top[good, None]).astype(np.int64)
        terms = np.ldexp(states["sum"][good].astype(np.float64), shifts)
        if terms.shape[1] == 1:
            sums = terms[:, 0]
        else:
            sums = np.array([math.fsum(row) for row in terms.tolist()])
        totals[good] = sums
        final["max_or_exponent"][good] = top[good]
        final["scale"][good] = scale_for(sums, True)
        final["sum"][good] = sums
    return final, totals, ok


def _two_pass_total(states: np.ndarray, input_scale=None):
    """The row state (e, scale, v) of one row from its chunks' first-pass states (holding the
    input scale of scaled kernels), or None when the row needs three passes (two_pass_totals
    for one row)."""
    final, _, ok = two_pass_totals(states.reshape(1, -1))
    if input_scale is not None:
        final["input_scale"] = input_scale
    return final if ok[0] else None
