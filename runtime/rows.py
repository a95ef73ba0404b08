"""Rows: running a softmax over the rows of 2-D (rows, n) views, with threads.

One native call runs a whole batch of rows (the row driver loops over them with a row stride).
Rows the two-pass kernels mark (NaN, +inf, all -inf, or magnitudes past the two-pass clamp) are
redone by the three-pass-reload kernels, which handle every float32 input. Calls release the GIL
(cffi does around every foreign call), so threads=k splits the rows over k threads, and a single
long row into k pieces whose partial results combine exactly.

The native functions come from bindings.driver and bindings.passes (looked up through the module
at each call, so that tests can put emulated kernels in their place).
"""
from __future__ import annotations

import concurrent.futures
import math
import os
import threading

import numpy as np

from softjit.runtime import bindings
from softjit.runtime.bindings import PASS_STATE_DTYPE, ROW_STRIDES_DTYPE, STATUS_DTYPE
from softjit.runtime.dispatch import nontemporal_for

# A single row of at least this many elements is split over the threads (smaller rows gain
# less than the hand-off costs).
SPLIT_ROW_MIN = 1 << 16

_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _forget_pool_in_child() -> None:
    """After fork the child has only the forking thread: the pool's workers do not exist there
    (work handed to them would wait for ever) and a lock another thread held stays held. The
    child starts a pool of its own when it needs one."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity mask, as taskset or a cpuset leaves
    it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def threads_for(threads: int) -> int:
    """The threads that can help: at most `threads` and the CPUs this process may run on (the
    callers also use no more threads than they have pieces of work)."""
    return 1 if threads <= 1 else max(1, min(threads, usable_cpus()))


def _threads_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """One pool for the process with at most a worker per CPU of the machine; workers start
    only as work asks for them."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < threads:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(threads, os.cpu_count() or 1), thread_name_prefix="softjit")
        return _pool


def rows_view(a: np.ndarray):
    """a (last axis = the softmax axis) as a 2-D (rows, n) view with unit element stride, or None
    when its rows cannot be addressed with one row stride."""
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.strides[-1] != 4:
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


def run_rows(x2d: np.ndarray, y2d: np.ndarray, algorithm: str, isa: str, threads: int) -> None:
    """y2d = softmax of every row of x2d (both (rows, n) with unit element stride)."""
    threads = threads_for(threads)
    rows = x2d.shape[0]
    if threads > 1 and rows < threads and x2d.shape[1] >= SPLIT_ROW_MIN:
        for r in range(rows):
            split_row(x2d[r], y2d[r], algorithm, isa, threads)
        return
    strides = np.array([x2d.strides[0], y2d.strides[0]], ROW_STRIDES_DTYPE)
    status = np.empty(rows, STATUS_DTYPE)
    run = bindings.driver(algorithm, isa, nontemporal_for(x2d.size * 4))
    if threads > 1 and rows > 1:
        (a0, b0), *others = pieces(rows, min(threads, rows))
        pool = _threads_pool(threads)
        futures = [pool.submit(run, x2d[a:b], y2d[a:b], status[a:b], strides) for a, b in others]
        marked = run(x2d[a0:b0], y2d[a0:b0], status[a0:b0], strides)  # this thread takes one
        marked += sum(f.result() for f in futures)
    else:
        marked = run(x2d, y2d, status, strides)
    if marked:
        recompute_rows(x2d, y2d, status, isa)


def recompute_rows(x2d: np.ndarray, y2d: np.ndarray, status: np.ndarray, isa: str) -> None:
    """Rows the two-pass driver marked, again with three-pass-reload (any float32 input)."""
    fallback = bindings.driver("three-pass-reload", isa)
    strides = np.array([x2d.strides[0], y2d.strides[0]], ROW_STRIDES_DTYPE)
    for r in np.flatnonzero(status):
        fallback(x2d[r:r + 1], y2d[r:r + 1], np.empty(1, STATUS_DTYPE), strides)


def split_row(x: np.ndarray, y: np.ndarray, algorithm: str, isa: str, threads: int) -> None:
    """One long row over `threads` threads: each pass runs on pieces, and the pieces' partial
    results (abi.PASS_STATE) combine exactly: maxima by max; two-pass sums v*2^e by rescaling to
    the largest e; three-pass sums by adding, in float64."""
    bounds = pieces(x.shape[0], threads, align=64)
    states = np.zeros(len(bounds), PASS_STATE_DTYPE)  # one state per piece
    kernels = bindings.passes(algorithm, isa, nontemporal_for(x.shape[0] * 4))
    pool = _threads_pool(threads)

    def each(index, state_of):
        """Pass `index` on every piece, piece k with the state state_of(k)."""
        futures = [pool.submit(kernels.run, index, x[a:b], y[a:b], state_of(k))
                   for k, (a, b) in enumerate(bounds) if k]
        a, b = bounds[0]
        first = kernels.run(index, x[a:b], y[a:b], state_of(0))  # this thread takes one piece
        return [first] + [f.result() for f in futures]

    def piece_state(k):
        return states[k:k + 1]

    if algorithm == "two-pass":
        if any(each(0, piece_state)):
            return run_rows(x.reshape(1, -1), y.reshape(1, -1), "three-pass-reload", isa, 1)
        exponents, sums = states["max_or_exponent"], states["sum"]
        exponent = float(exponents.max())
        total = sum(math.ldexp(float(v), int(e - exponent)) for e, v in zip(exponents, sums))
        final = np.zeros(1, PASS_STATE_DTYPE)
        final["max_or_exponent"], final["scale"], final["sum"] = exponent, 1.0 / total, total
        each(1, lambda k: final)
        return None
    each(0, piece_state)  # every piece's maximum
    row_max = states["max_or_exponent"].max()
    states["max_or_exponent"] = row_max  # every piece sums exp(x - the row's maximum)
    each(1, piece_state)
    total = float(np.sum(states["sum"], dtype=np.float64))
    shared = np.zeros(1, PASS_STATE_DTYPE)
    shared["max_or_exponent"] = row_max
    with np.errstate(divide="ignore", invalid="ignore"):
        shared["scale"] = np.float32(1.0) / np.float32(total) if total == total else np.nan
    each(2, lambda k: shared)
    return None
