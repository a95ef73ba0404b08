"""softjit.softmax: rows of any float32 array through the generated row drivers.

One native call runs a whole batch of rows (the driver loops over them with a row stride). Rows
the two-pass kernels mark (NaN, +inf, all -inf, or magnitudes past the two-pass clamp) are redone
by the three-pass-reload kernels, which handle every float32 input. Calls release the GIL (cffi
does around every foreign call), so threads=k splits the rows over k threads.
"""
from __future__ import annotations

import concurrent.futures
import math
import threading

import numpy as np

from softjit.codegen import variants
from softjit.runtime import entry_tables, kernels, tuning
from softjit.runtime.api import _ISA_KEY, _environ_get, _isa_setting, resolve_isa
from softjit.runtime.arrays import as_float32_array, check_out, is_integer

ALGORITHMS = ("auto",) + variants.ALGORITHMS

_pool_lock = threading.Lock()
_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _threads_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < threads:
            _pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                          thread_name_prefix="softjit")
        return _pool


def choose_algorithm(isa: str, n: int, rows: int) -> str:
    """What "auto" runs for rows of n elements: the host's tuned table (`python -m softjit
    tune`) if there is one for this softjit, CPU and kernel set, else AUTO_TABLE. Only n
    matters: a row goes through all its passes before the next row starts, so whether the
    passes find it in cache depends on the row, not on the batch."""
    table = tuning.cached_table(isa) or AUTO_TABLE[isa]
    for limit, algorithm in table:
        if n <= limit:
            return algorithm
    return table[-1][1]


# (largest row length, algorithm) per ISA, first match wins. AVX2, measured with
# `python -m softjit bench` and `tune` on the development host (AMD EPYC, AVX2, 2 cores): in
# cache three-pass-reload is 1.4-1.8x faster than two-pass up to 3e6 elements (the extended-
# exponent sums cost more arithmetic than the extra read), and two-pass wins from 1e7 on, where
# the third read of x goes to memory. AVX-512 was not measurable on that host: its table takes
# the same shape, as the paper reports for Skylake-X (three-pass in cache, two-pass out of it).
AUTO_TABLE = {
    "avx2": ((1 << 22, "three-pass-reload"), (float("inf"), "two-pass")),
    "avx512f": ((1 << 22, "three-pass-reload"), (float("inf"), "two-pass")),
}


class _Driver:
    """A loaded row driver: call(x2d, y2d) -> number of rows marked for recomputation."""

    def __init__(self, variant):
        self.variant = variant
        self.function = kernels.function(variant, variant.driver_symbol)
        self.buffer = kernels.buffer_function()
        self.from_buffer = kernels.contiguous_buffer_function()

    def __call__(self, x2d: np.ndarray, y2d: np.ndarray, status: np.ndarray, strides: np.ndarray):
        b = self.buffer
        return self.function(b(x2d), b(y2d), x2d.shape[1], x2d.shape[0], b(strides), b(status))

    def single_row(self, n: int):
        """call(x, y) -> 1 if the row was marked, for one C-contiguous row of n elements, with
        every other argument bound once."""
        function, from_buffer = self.function, self.from_buffer
        strides, status = _scratch.strides_for(4 * n), _scratch.status_pointer

        def call(x: np.ndarray, y: np.ndarray) -> int:
            return function(from_buffer(x), from_buffer(y), n, 1, strides, status)

        return call

    def contiguous(self, x: np.ndarray, y: np.ndarray, rows: int, n: int):
        """Rows packed back to back in x and y (C-contiguous): (marked rows, status array)."""
        b = self.from_buffer
        strides = _scratch.strides_for(4 * n)
        if rows == 1:
            marked = self.function(b(x), b(y), n, 1, strides, _scratch.status_pointer)
            return marked, _SINGLE_ROW_MARKED
        status = np.empty(rows, np.int32)
        return self.function(b(x), b(y), n, rows, strides, b(status)), status


class _Scratch:
    """Ready pointers for the contiguous fast path (building them per call costs more than a
    1000-element kernel): row-stride pairs per row length, and one status word for single rows.

    Both are shared by all threads. The strides are only read. The status word is written by
    every single-row call and never read: for one row the driver's return value (0 or 1) says
    all there is to know. Batches get a status array of their own."""

    def __init__(self):
        self.strides: dict = {}
        self.status_word = np.zeros(1, np.int32)
        self._status_pointer = None

    @property
    def status_pointer(self):
        """The status word as a cffi pointer (made on first use: `import softjit` loads no cffi)."""
        if self._status_pointer is None:
            self._status_pointer = kernels.buffer_function()(self.status_word)
        return self._status_pointer

    def strides_for(self, row_bytes: int):
        found = self.strides.get(row_bytes)
        if found is None:
            if len(self.strides) >= _STRIDES_KEPT:
                self.strides.clear()  # bounded: a process calling with many row lengths
            array = np.array([row_bytes, row_bytes], np.int64)
            found = self.strides.setdefault(row_bytes, (array, kernels.buffer_function()(array)))
        return found[1]


_STRIDES_KEPT = 64  # row lengths whose stride pairs are kept ready
_scratch = _Scratch()
_SINGLE_ROW_MARKED = np.ones(1, np.int32)  # what a single row's status is when it was marked


_drivers: dict = {}


def driver(algorithm: str, isa: str, nontemporal: bool = False) -> _Driver:
    """The row driver of an algorithm; nontemporal asks for the variant with non-temporal output
    stores and gets the plain one where none is registered."""
    key = (algorithm, isa, nontemporal)
    d = _drivers.get(key)
    if d is None:
        variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal)
        d = _drivers[key] = _Driver(variant)
    return d


# Outputs at least this large are written with non-temporal stores: they would not stay in the
# caches anyway, and write-allocate would read every output line first.
NONTEMPORAL_MIN_BYTES = 16 << 20


def _rows_view(a: np.ndarray):
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


# A single row of at least this many elements is split over the threads (smaller rows gain
# less than the hand-off costs).
SPLIT_ROW_MIN = 1 << 16


def _run_rows(x2d, y2d, algorithm, isa, threads):
    rows = x2d.shape[0]
    if threads > 1 and rows < threads and x2d.shape[1] >= SPLIT_ROW_MIN:
        for r in range(rows):
            _split_row(x2d[r], y2d[r], algorithm, isa, threads)
        return
    strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
    status = np.empty(rows, np.int32)
    run = driver(algorithm, isa, x2d.size * 4 >= NONTEMPORAL_MIN_BYTES)
    if threads > 1 and rows > 1:
        (a0, b0), *others = _pieces(rows, min(threads, rows))
        pool = _threads_pool(threads)
        futures = [pool.submit(run, x2d[a:b], y2d[a:b], status[a:b], strides) for a, b in others]
        marked = run(x2d[a0:b0], y2d[a0:b0], status[a0:b0], strides)  # this thread takes one
        marked += sum(f.result() for f in futures)
    else:
        marked = run(x2d, y2d, status, strides)
    if marked:
        _recompute_rows(x2d, y2d, status, isa)


def softmax(x, axis: int = -1, *, algorithm: str = "auto", isa: str = "auto", out=None,
            threads: int = 1) -> np.ndarray:
    """softmax along `axis` of a float32 array: exp(x - max) / sum(exp(x - max)).

    algorithm: "auto" (the fastest for the row length on this host), "two-pass",
    "three-pass-reload" or "three-pass-recompute"; isa: "auto", "avx2" or "avx512f".
    out may be x itself (in place) or any float32 array of x's shape. Rows holding NaN or +inf,
    or only -inf, come out all NaN; -inf entries give exactly 0.
    """
    # First path: the generated entry of this (algorithm, isa), for a contiguous last axis. The
    # entry is registered only after the general path validated the same algorithm and isa, and
    # only an int axis and threads == 1 (ints, not bools or floats) come here, so whatever
    # this path accepts the general path accepts too; anything the entry refuses goes there.
    # `threads is _ONE`: the int 1 (CPython keeps one object for each small int), not True, 1.0
    # or numpy.int64(1), which the general path validates first.
    if threads is _ONE and (axis is _LAST or (axis.__class__ is int and x.__class__ is _NDARRAY
                                              and axis == x.ndim - 1)):
        try:
            entry = _entries.get((algorithm, isa, _environ_get(_ISA_KEY)))
        except TypeError:  # an unhashable algorithm or isa: the general path says what is wrong
            entry = None
        if entry is not None:
            if out is not None:
                if entry(x, out) is not NotImplemented:
                    return out
            elif x.__class__ is _NDARRAY:
                y = _empty(x.shape, _FLOAT32)
                if entry(x, y) is not NotImplemented:
                    return y
    return _softmax_general(x, axis, algorithm, isa, out, threads)


_NDARRAY = np.ndarray
_ONE, _LAST = 1, -1
_empty = np.empty
_entries: dict = {}  # (algorithm, isa argument, SOFTJIT_ISA) -> entry, for validated arguments


def _softmax_general(x, axis, algorithm, isa, out, threads) -> np.ndarray:
    isa_argument = isa
    x = as_float32_array(x, "softmax")
    if x.ndim == 0:
        raise ValueError("softjit.softmax needs an array with at least one dimension; got a 0-d array")
    if not is_integer(axis):
        raise TypeError(f"softjit.softmax: axis must be an integer, not {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softjit.softmax: axis {axis!r} is out of range for an array of "
                         f"{x.ndim} dimension(s)")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"softjit.softmax: unknown algorithm {algorithm!r}; "
                         f"valid: {', '.join(ALGORITHMS)}")
    if not is_integer(threads) or threads < 1:
        raise ValueError(f"softjit.softmax: threads must be a positive integer, not {threads!r}")
    isa = resolve_isa(isa)
    entry = entry_tables.softmax_entry(algorithm, isa)
    if entry is not None and isinstance(isa_argument, str):
        _entries[(algorithm, isa_argument, _isa_setting())] = entry
    out = np.empty(x.shape, np.float32) if out is None else check_out(out, x.shape, "softmax")
    if x.size == 0:
        return out
    if (entry is not None and threads == 1 and int(axis) % x.ndim == x.ndim - 1
            and entry(x, out) is not NotImplemented):
        return out  # a call the first path did not take (first of its kind, numpy ints, lists)
    if (threads == 1 and x.flags.c_contiguous and x.flags.aligned and int(axis) % x.ndim == x.ndim - 1
            and (out is x or _fresh_output(out, x))):
        return _softmax_contiguous(x, isa, algorithm, out)
    axis = int(axis) % x.ndim
    if axis == x.ndim - 1:
        xm, om = x, out
    else:
        xm, om = np.moveaxis(x, axis, -1), np.moveaxis(out, axis, -1)
    n = xm.shape[-1]
    if algorithm == "auto":
        algorithm = choose_algorithm(isa, n, xm.size // n)
    src = _rows_view(xm)
    if src is None:
        src = np.ascontiguousarray(xm).reshape(-1, n)
    dst = _rows_view(om)
    if dst is None or not dst.flags.aligned or not _safe_overlap(dst, src):
        tmp = np.empty(src.shape, np.float32)
        _run_rows(src, tmp, algorithm, isa, threads)
        om[...] = tmp.reshape(xm.shape)
    else:
        _run_rows(src, dst, algorithm, isa, threads)
    return out


_FLOAT32 = np.dtype(np.float32)


def _fresh_output(out, x: np.ndarray) -> bool:
    """out is a C-contiguous, aligned, writable float32 array of x's shape sharing no memory
    with x: the fast path may write it directly."""
    return (type(out) is np.ndarray and out.dtype is _FLOAT32 and out.shape == x.shape
            and out.flags.c_contiguous and out.flags.writeable and out.flags.aligned
            and not np.shares_memory(out, x))


def _softmax_contiguous(x: np.ndarray, isa: str, algorithm: str, out) -> np.ndarray:
    """softmax over the last axis of a C-contiguous array into a new array, into x itself, or
    into a separate C-contiguous out, through cffi: the contiguous calls where no entry is used
    (see runtime/entries.py), kept to the few operations they need."""
    n = x.shape[-1]
    rows = x.size // n
    y = np.empty_like(x) if out is None else out
    if algorithm == "auto":
        algorithm = choose_algorithm(isa, n, rows)
    if x.size * 4 >= NONTEMPORAL_MIN_BYTES:
        _run_rows(x.reshape(rows, n), y.reshape(rows, n), algorithm, isa, 1)
        return y
    marked, status = driver(algorithm, isa).contiguous(x, y, rows, n)
    if marked:
        _recompute_rows(x.reshape(rows, n), y.reshape(rows, n), status[:rows], isa)
    return y


def _recompute_rows(x2d: np.ndarray, y2d: np.ndarray, status: np.ndarray, isa: str) -> None:
    """Rows the two-pass driver marked, again with three-pass-reload (any float32 input)."""
    fallback = driver("three-pass-reload", isa)
    strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
    for r in np.flatnonzero(status):
        fallback(x2d[r:r + 1], y2d[r:r + 1], np.empty(1, np.int32), strides)


def _safe_overlap(dst: np.ndarray, src: np.ndarray) -> bool:
    """dst rows may be written while src rows are read: no shared memory, or exactly in place."""
    if not np.shares_memory(dst, src):
        return True
    return (dst.ctypes.data == src.ctypes.data and dst.strides == src.strides)


def assembly(algorithm: str, isa: str = "auto") -> str:
    """The emitted assembly of every pass kernel (and the row driver) that `algorithm` uses.

    Besides the softmax algorithms: "log_softmax" and "logsumexp" (the two-pass log_softmax
    module, whose reduce driver logsumexp runs) and "log_softmax-three-pass"."""
    functions = {"log_softmax": "two-pass", "logsumexp": "two-pass",
                 "log_softmax-three-pass": "three-pass"}
    if isinstance(algorithm, str) and algorithm in functions:
        isa = resolve_isa("auto") if isa == "auto" else isa
        if isa not in ("avx2", "avx512f"):
            raise ValueError(f"softjit.assembly: unknown isa {isa!r}; valid: auto, avx2, avx512f")
        return kernels.assembly(variants.REGISTRY.log_softmax(functions[algorithm], isa))
    if algorithm == "auto":
        raise ValueError("softjit.assembly: name an algorithm: "
                         + ", ".join(variants.ALGORITHMS))
    if algorithm not in variants.ALGORITHMS:
        raise ValueError(f"softjit.assembly: unknown algorithm {algorithm!r}; valid: "
                         f"{', '.join(variants.ALGORITHMS + tuple(functions))}")
    if isa == "auto":
        isa = resolve_isa("auto")
    elif isa not in ("avx2", "avx512f"):
        raise ValueError(f"softjit.assembly: unknown isa {isa!r}; valid: auto, avx2, avx512f")
    return kernels.assembly(variants.REGISTRY.softmax(algorithm, isa))


class _Passes:
    """The pass kernels of one algorithm on one ISA, callable on pieces of a row."""

    def __init__(self, algorithm: str, isa: str, nontemporal: bool = False):
        variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal)
        self.functions = [kernels.function(variant, p.symbol) for p in variant.passes]
        self.buffer = kernels.buffer_function()

    def run(self, index: int, x: np.ndarray, y: np.ndarray, state: np.ndarray) -> int:
        b = self.buffer
        return self.functions[index](b(x), b(y), x.shape[0], b(state))


_passes: dict = {}


def _passes_of(algorithm: str, isa: str, nontemporal: bool = False) -> _Passes:
    key = (algorithm, isa, nontemporal)
    p = _passes.get(key)
    if p is None:
        p = _passes[key] = _Passes(algorithm, isa, nontemporal)
    return p


def _pieces(count: int, parts: int, align: int = 1) -> list:
    """[start, end) bounds of `parts` nearly equal pieces of range(count), the inner bounds
    multiples of `align` (64 floats: pieces of one row start on cache lines together)."""
    bounds = sorted({min(count, (count * k // parts) // align * align) for k in range(parts)}
                    | {count})
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _split_row(x: np.ndarray, y: np.ndarray, algorithm: str, isa: str, threads: int) -> None:
    """One long row over `threads` threads: each pass runs on pieces, and the pieces' partial
    results combine exactly (maxima by max; two-pass sums v*2^e by rescaling to the largest e;
    three-pass sums by adding), in float64."""
    bounds = _pieces(x.shape[0], threads, align=64)
    states = np.zeros((len(bounds), 4), np.float32)
    passes = _passes_of(algorithm, isa, x.shape[0] * 4 >= NONTEMPORAL_MIN_BYTES)
    pool = _threads_pool(threads)

    def each(index, state_of):
        futures = [pool.submit(passes.run, index, x[a:b], y[a:b], state_of(k))
                   for k, (a, b) in enumerate(bounds) if k]
        a, b = bounds[0]
        first = passes.run(index, x[a:b], y[a:b], state_of(0))  # this thread takes one piece
        return [first] + [f.result() for f in futures]

    if algorithm == "two-pass":
        if any(each(0, lambda k: states[k])):
            return _run_rows(x.reshape(1, -1), y.reshape(1, -1), "three-pass-reload", isa, 1)
        exponent = float(states[:, 0].max())
        total = sum(math.ldexp(float(v), int(e - exponent)) for e, v in states[:, [0, 2]])
        final = np.array([exponent, 1.0 / total, total, 0], np.float32)
        each(1, lambda k: final)
        return None
    each(0, lambda k: states[k])
    shared = np.array([states[:, 0].max(), 0, 0, 0], np.float32)
    sums = np.zeros((len(bounds), 4), np.float32)
    sums[:, 0] = shared[0]
    each(1, lambda k: sums[k])
    total = float(np.sum(sums[:, 2], dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        shared[1] = np.float32(1.0) / np.float32(total) if total == total else np.nan
    each(2, lambda k: shared)
    return None
