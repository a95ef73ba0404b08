"""softjit.softmax: rows of any float32 array through the generated row drivers.

One native call runs a whole batch of rows (the driver loops over them with a row stride). Rows
the two-pass kernels mark (NaN, +inf, all -inf, or magnitudes past the two-pass clamp) are redone
by the three-pass-reload kernels, which handle every float32 input. Calls release the GIL (cffi
does around every foreign call), so threads=k splits the rows over k threads.
"""
from __future__ import annotations

import concurrent.futures
import os
import threading

import numpy as np

from ..codegen import variants
from . import kernels
from .api import resolve_isa
from .arrays import as_float32_array, check_out, writes_directly

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
    """What "auto" runs: see AUTO_TABLE."""
    for limit, algorithm in AUTO_TABLE[isa]:
        if n <= limit:
            return algorithm
    return AUTO_TABLE[isa][-1][1]


# (largest row length, algorithm) per ISA, first match wins; measured on AMD EPYC (Zen 5) with
# `python -m softjit bench` (see the README): the two-pass kernels read x twice and write y once,
# the three-pass ones read it three times, which decides out of cache.
AUTO_TABLE = {
    "avx2": ((float("inf"), "two-pass"),),
    "avx512f": ((float("inf"), "two-pass"),),
}


class _Driver:
    """A loaded row driver: call(x2d, y2d) -> number of rows marked for recomputation."""

    def __init__(self, variant):
        self.variant = variant
        self.function = kernels.function(variant, variant.driver_symbol)
        self.buffer = kernels.buffer_function()

    def __call__(self, x2d: np.ndarray, y2d: np.ndarray, status: np.ndarray, strides: np.ndarray):
        b = self.buffer
        return self.function(b(x2d), b(y2d), x2d.shape[1], x2d.shape[0], b(strides), b(status))


_drivers: dict = {}


def driver(algorithm: str, isa: str) -> _Driver:
    key = (algorithm, isa)
    d = _drivers.get(key)
    if d is None:
        d = _drivers[key] = _Driver(variants.softmax_variant(algorithm, isa))
    return d


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


def _run_rows(x2d, y2d, algorithm, isa, threads):
    rows = x2d.shape[0]
    strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
    status = np.empty(rows, np.int32)
    run = driver(algorithm, isa)
    if threads > 1 and rows > 1:
        chunks = np.array_split(np.arange(rows), min(threads, rows))
        pool = _threads_pool(threads)
        futures = [pool.submit(run, x2d[c[0]:c[-1] + 1], y2d[c[0]:c[-1] + 1],
                               status[c[0]:c[-1] + 1], strides) for c in chunks if len(c)]
        marked = sum(f.result() for f in futures)
    else:
        marked = run(x2d, y2d, status, strides)
    if marked:
        fallback = driver("three-pass-reload", isa)
        for r in np.flatnonzero(status):
            fallback(x2d[r:r + 1], y2d[r:r + 1], status[r:r + 1], strides)


def softmax(x, axis: int = -1, *, algorithm: str = "auto", isa: str = "auto", out=None,
            threads: int = 1) -> np.ndarray:
    """softmax along `axis` of a float32 array: exp(x - max) / sum(exp(x - max)).

    algorithm: "auto" (the fastest for the row length on this host), "two-pass",
    "three-pass-reload" or "three-pass-recompute"; isa: "auto", "avx2" or "avx512f".
    out may be x itself (in place) or any float32 array of x's shape. Rows holding NaN or +inf,
    or only -inf, come out all NaN; -inf entries give exactly 0.
    """
    x = as_float32_array(x, "softmax")
    if x.ndim == 0:
        raise ValueError("softjit.softmax needs an array with at least one dimension; got a 0-d array")
    if not isinstance(axis, (int, np.integer)) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softjit.softmax: axis {axis!r} is out of range for an array of "
                         f"{x.ndim} dimension(s)")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"softjit.softmax: unknown algorithm {algorithm!r}; "
                         f"valid: {', '.join(ALGORITHMS)}")
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"softjit.softmax: threads must be a positive integer, not {threads!r}")
    isa = resolve_isa(isa)
    out = np.empty(x.shape, np.float32) if out is None else check_out(out, x.shape, "softmax")
    if x.size == 0:
        return out
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
    if dst is None or not _safe_overlap(dst, src):
        tmp = np.empty(src.shape, np.float32)
        _run_rows(src, tmp, algorithm, isa, threads)
        om[...] = tmp.reshape(xm.shape)
    else:
        _run_rows(src, dst, algorithm, isa, threads)
    return out


def _safe_overlap(dst: np.ndarray, src: np.ndarray) -> bool:
    """dst rows may be written while src rows are read: no shared memory, or exactly in place."""
    if not np.shares_memory(dst, src):
        return True
    return (dst.ctypes.data == src.ctypes.data and dst.strides == src.strides)


def assembly(algorithm: str, isa: str = "auto") -> str:
    """The emitted assembly of every pass kernel (and the row driver) that `algorithm` uses."""
    if algorithm == "auto":
        raise ValueError("softjit.assembly: name an algorithm: "
                         + ", ".join(variants.ALGORITHMS))
    if algorithm not in variants.ALGORITHMS:
        raise ValueError(f"softjit.assembly: unknown algorithm {algorithm!r}; "
                         f"valid: {', '.join(variants.ALGORITHMS)}")
    if isa == "auto":
        isa = resolve_isa("auto")
    elif isa not in ("avx2", "avx512f"):
        raise ValueError(f"softjit.assembly: unknown isa {isa!r}; valid: auto, avx2, avx512f")
    return kernels.assembly(variants.softmax_variant(algorithm, isa))
