"""python -m softjit bench --dask: softjit.dask.softmax against the plain Dask composition.

The input is a float32 array of 2^31 elements (8 GiB; rows of 2^24 split into chunks of 2^22,
16 MiB each) that is never held whole: each chunk is made inside a worker when a task needs it,
from a seeded source. Generating 2^31 fresh random numbers would cost more than either softmax
(numpy took 8 ns per uniform and 47 ns per normal float32 here), so every worker draws one
pool of 2^23 standard normal float32 values from the seed once and each row piece is a window
of that pool at a cache-line offset drawn from (seed, row, column): the same bits on every
worker, run after run. A chunk of one row piece is a read-only view of the pool, like a page
of a memory-mapped file already in the page cache: making it costs nothing, so the times are
the softmax's.

Both contenders run on the same Dask cluster (by default a LocalCluster on loopback: one
single-threaded worker process per core) and their results go to the same place: every block
of y is made and handed to a da.store target that drops it (no 8 GiB output is kept); that is
what is timed. The sampled rows are then computed again and checked inside the workers.
Reported per run: wall time, the CPU time the workers spent (user + system: less disturbed
than the wall time when other programs load the machine), each worker's peak resident memory
(VmHWM, reset after the workers are restarted and warmed up, so the peak is that run's), and
the largest relative error on the sampled rows against a float64 softmax of the same values
(computed in the workers, block by block, so only one number per block travels).
"""
from __future__ import annotations

import functools
import resource
import statistics
import time

import numpy as np

SEED = 20261201
POOL = 1 << 23  # float32 values per worker's pool (32 MiB)
SCALE = 4.0  # x = SCALE * standard normal: exp(x - max) spans about 2^-40 .. 1 in a row
FLT_MIN = float(np.finfo(np.float32).tiny)


@functools.lru_cache(maxsize=1)
def _pool() -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return rng.standard_normal(POOL, dtype=np.float32) * np.float32(SCALE)


def _row_piece(row: int, start: int, length: int) -> np.ndarray:
    """Elements [start, start + length) of row `row`: a window of the pool at a seeded offset."""
    lines = (POOL - length) // 16 + 1  # offsets on 64-byte lines, as numpy allocates
    offset = 16 * int(np.random.default_rng([SEED, row, start]).integers(0, lines))
    return _pool()[offset:offset + length]


def _block(block_info=None) -> np.ndarray:
    (r0, r1), (c0, c1) = block_info[None]["array-location"]
    if r1 - r0 == 1:
        return _row_piece(r0, c0, c1 - c0).reshape(1, -1)
    out = np.empty((r1 - r0, c1 - c0), np.float32)
    for r in range(r0, r1):
        out[r - r0] = _row_piece(r, c0, c1 - c0)
    return out


def make_input(rows: int, n: int, chunk: int):
    """The lazy (rows, n) float32 array, chunks of (1, chunk)."""
    import dask.array as da

    if n % chunk or chunk > POOL:
        raise ValueError(f"bench --dask: the row length {n} must be a multiple of the chunk "
                         f"{chunk}, and the chunk at most {POOL}")
    return da.map_blocks(_block, dtype=np.float32, chunks=((1,) * rows, (chunk,) * (n // chunk)),
                         meta=np.empty((0, 0), np.float32), name="bench-input")


def row_values(row: int, n: int, chunk: int) -> np.ndarray:
    """Row `row` of make_input's array, made here (for the float64 reference)."""
    return np.concatenate([_row_piece(row, c, chunk) for c in range(0, n, chunk)])


def plain_softmax(x, axis: int = -1):
    """The plain Dask composition: three reads of x, float32 sums."""
    import dask.array as da

    e = da.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softjit_softmax(x, axis: int = -1):
    import softjit.dask

    return softjit.dask.softmax(x, axis=axis)


CONTENDERS = {"softjit.dask.softmax": softjit_softmax, "plain dask composition": plain_softmax}


def _peak_rss_bytes() -> int:
    """This process's peak resident memory since the last _reset_peak (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu_seconds() -> float:
    """CPU time this worker process has used (user + system, all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> int:
    """Start a new peak from the present resident memory (Linux: 5 > /proc/self/clear_refs)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return _peak_rss_bytes()


def _warm() -> int:
    """In each worker after a restart: the pool and both contenders' kernels, loaded once."""
    import softjit
    import softjit.dask as sd  # noqa: F401  (loads dask.array and the kernels' module)

    _pool()
    x = np.random.default_rng(0).standard_normal((2, 4096)).astype(np.float32)
    softjit.softmax(x, algorithm="two-pass")
    softjit.softmax(x, algorithm="three-pass-recompute")
    np.exp(x)
    return _reset_peak()


def _row_reference(row: int, n: int, chunk: int) -> tuple:
    """(max, sum of exp(x - max)) of a row in float64: its softmax is exp(x - max) / sum."""
    x64 = row_values(row, n, chunk).astype(np.float64)
    top = float(x64.max())
    return top, float(np.exp(x64 - top).sum())


class _BlockError:
    """In the workers: the largest relative error of one block of a sampled row of y against
    the float64 softmax of the same values (the row's float64 max and sum given), as a 1 x 1
    block, so that only one number per block travels."""

    def __init__(self, samples, references):
        self.samples, self.references = list(samples), list(references)

    def __call__(self, y_block, block_info=None):
        (k, _), (c0, c1) = block_info[0]["array-location"]
        top, total = self.references[k]
        x64 = _row_piece(self.samples[k], c0, c1 - c0).astype(np.float64)
        ref = np.exp(x64 - top) / total
        normal = ref >= FLT_MIN
        error = np.abs(y_block[0, normal].astype(np.float64) - ref[normal]) / ref[normal]
        return np.array([[error.max() if error.size else 0.0]])


class NullTarget:
    """A da.store target that keeps nothing: the result blocks are made, then dropped."""

    def __setitem__(self, key, value) -> None:
        pass


def run_once(client, name: str, x, samples: np.ndarray, references: list) -> dict:
    import dask.array as da

    client.restart()
    warm = client.run(_warm)
    y = CONTENDERS[name](x)
    cpu_before = client.run(_cpu_seconds)
    start = time.perf_counter()
    da.store(y, NullTarget(), lock=False)
    wall = time.perf_counter() - start
    cpu_after = client.run(_cpu_seconds)
    peaks = client.run(_peak_rss_bytes)
    # untimed: the sampled rows again (their blocks recomputed), checked in the workers
    errors = y[samples].map_blocks(_BlockError(samples, references), dtype=np.float64,
                                   chunks=((1,) * len(samples), (1,) * len(y.chunks[1])),
                                   meta=np.empty((0, 0), np.float64))
    return {"name": name, "wall_s": wall,
            "worker_cpu_s": sum(cpu_after[w] - cpu_before.get(w, 0.0) for w in cpu_after),
            "peak_rss": sorted(peaks.values()),
            "baseline_rss": sorted(warm.values()),
            "max_rel_error": float(errors.max().compute())}


def run(elements: int = 1 << 31, n: int = 1 << 24, chunk: int = 1 << 22, repeats: int = 1,
        scheduler: str | None = None, workers: int | None = None, sampled_rows: int = 4) -> dict:
    """Interleaved runs of both contenders; returns the settings and every run."""
    import os

    import distributed

    rows = max(1, elements // n)
    x = make_input(rows, n, chunk)
    samples = np.sort(np.random.default_rng(SEED).choice(rows, min(sampled_rows, rows),
                                                         replace=False))
    references = [_row_reference(int(r), n, chunk) for r in samples]
    if scheduler:
        cluster = None
        client = distributed.Client(scheduler)
    else:
        workers = workers or os.cpu_count() or 1
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address="127.0.0.1:0")
        client = distributed.Client(cluster)
    runs = []
    try:
        for _ in range(repeats):
            for name in CONTENDERS:
                runs.append(run_once(client, name, x, samples, references))
        worker_count = len(client.scheduler_info()["workers"])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return {"shape": (rows, n), "chunk": (1, chunk), "elements": rows * n,
            "scheduler": scheduler or f"LocalCluster({worker_count} worker processes x 1 thread,"
                                       " 127.0.0.1)",
            "sampled_rows": [int(r) for r in samples], "runs": runs}


def format_results(result: dict) -> str:
    rows, n = result["shape"]
    gib = result["elements"] * 4 / 2**30
    lines = [f"softmax over a lazy float32 array {rows} x {n} ({result['elements']:,} elements, "
             f"{gib:.1f} GiB), chunks {result['chunk'][0]} x {result['chunk'][1]}, "
             f"{n // result['chunk'][1]} chunks per row",
             f"cluster: {result['scheduler']}",
             f"{'contender':<24} {'wall s':>8} {'worker CPU s':>13} {'peak worker RSS MiB':>22} "
             f"{'after warm-up':>14} {'max rel err':>12}"]
    for r in result["runs"]:
        peaks = "/".join(f"{p / 2**20:.0f}" for p in r["peak_rss"])
        warm = "/".join(f"{p / 2**20:.0f}" for p in r["baseline_rss"])
        lines.append(f"{r['name']:<24} {r['wall_s']:>8.2f} {r['worker_cpu_s']:>13.2f} "
                     f"{peaks:>22} {warm:>14} "
                     f"{r['max_rel_error']:>12.2e}")
    medians = {name: statistics.median(r["wall_s"] for r in result["runs"] if r["name"] == name)
               for name in CONTENDERS}
    cpu = {name: statistics.median(r["worker_cpu_s"] for r in result["runs"]
                                   if r["name"] == name) for name in CONTENDERS}
    peaks = {name: max(max(r["peak_rss"]) for r in result["runs"] if r["name"] == name)
             for name in CONTENDERS}
    mine, plain = "softjit.dask.softmax", "plain dask composition"
    lines.append(f"plain / softjit (medians): wall time {medians[plain] / medians[mine]:.2f}x, "
                 f"worker CPU time {cpu[plain] / cpu[mine]:.2f}x; largest worker peak: "
                 f"softjit {peaks[mine] / 2**20:.0f} MiB, plain {peaks[plain] / 2**20:.0f} MiB")
    lines.append(f"sampled rows {result['sampled_rows']}: errors against float64 softmax of the "
                 "same float32 values")
    return "\n".join(lines) + "\n"
