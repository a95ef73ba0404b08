"""How softjit's benchmarks measure: one pinned core, interleaved rounds, medians, cold caches
where the paper's rows are cold.

- The process is pinned to one CPU (os.sched_setaffinity) before any peer library starts its
  thread pools, so every candidate runs single-threaded on the same core.
- Candidates are timed in interleaved rounds: each round runs every candidate once, starting
  one place further along the list each round, so that slow drifts of the machine (other jobs,
  clock changes) spread over all candidates instead of landing on one.
- A sample runs a candidate `number` times (calibrated so that a sample lasts about a
  millisecond) and records the time per run; the median over rounds is reported. The thread's
  CPU time is recorded beside the wall time: on a shared machine a sample that lost the CPU to
  another process shows as CPU time well below wall time (Samples.preempted), and
  `--clock cpu` reports CPU-time medians instead (they ignore time-slicing, though not the
  cache and memory-bandwidth interference of the other processes).
- Out of cache (the row and its output exceed the last-level cache), every timed run starts from
  cold caches: a read of twice the LLC through the read probe evicts the previous run's lines.
  In cache, the row stays warm between runs, as in the paper's benchmark loop.
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_LLC_BYTES = 32 << 20


def last_level_cache_bytes() -> int:
    """The size of the largest CPU cache Linux reports for cpu0 (DEFAULT_LLC_BYTES if none)."""
    best = 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        scale = units.get(text[-1:].upper(), 1)
        digits = text[:-1] if text[-1:].upper() in units else text
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or DEFAULT_LLC_BYTES


def pin_to_one_cpu(cpu: int | None = None) -> int | None:
    """Pin this process (and threads it starts later) to one CPU; returns which, or None where
    affinity cannot be set. Default: the highest-numbered CPU we may run on (cpu0 usually takes
    more of the machine's interrupts)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, "1")  # read by libraries that start pools later
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    if chosen not in allowed:
        raise ValueError(f"cannot pin to CPU {chosen}: this process may run on CPUs {allowed}")
    os.sched_setaffinity(0, {chosen})
    return chosen


class Flusher:
    """Evicts the caches: reads a buffer of `factor` x the LLC with the generated read probe (or
    numpy where no probe can run), so the next timed run starts from memory."""

    def __init__(self, llc_bytes: int, read_rows=None, factor: int = 2):
        self.buffer = np.ones(factor * llc_bytes // 4, np.float32)
        self.read_rows = read_rows  # callable(x, out) or None
        self.sink = np.zeros(1, np.float32)

    def __call__(self) -> None:
        if self.read_rows is not None:
            self.read_rows(self.buffer, self.sink)
        else:
            self.sink[0] = self.buffer.sum()


# A sample whose thread CPU time is below this share of its wall time lost the CPU to another
# process for part of it (the machine is shared): counted, so reports can say how noisy a row is.
PREEMPTED_BELOW = 0.95


@dataclass
class Samples:
    """Per-run times (ns) of one candidate, one entry per round: wall clock, and the thread's
    CPU time over the same span (user + system; it stops while another process has the CPU)."""

    per_run_ns: list = field(default_factory=list)
    per_run_cpu_ns: list = field(default_factory=list)
    number: int = 1  # runs per sample

    @property
    def median(self) -> float:
        return float(np.median(self.per_run_ns)) if self.per_run_ns else float("nan")

    @property
    def median_cpu(self) -> float:
        return float(np.median(self.per_run_cpu_ns)) if self.per_run_cpu_ns else float("nan")

    @property
    def preempted(self) -> int:
        return sum(c < PREEMPTED_BELOW * w for w, c in zip(self.per_run_ns, self.per_run_cpu_ns))


class Timed:
    """A ready-to-time candidate: run(number) performs `number` runs and returns the elapsed ns
    of all of them (the candidate decides how: a loop in Python, or rows of a native driver)."""

    def run(self, number: int) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def output(self):
        """The result of the latest run (for checking it), or None."""
        return None


def calibrate(timed: Timed, target_ns: float, limit: int = 1 << 20) -> int:
    """The number of runs per sample that makes a sample last about target_ns."""
    number = 1
    while True:
        elapsed = timed.run(number)
        if elapsed >= target_ns or number >= limit:
            return number
        grow = target_ns / max(elapsed, 1.0)
        number = min(limit, max(number * 2, int(number * grow * 1.1)))


def measure_interleaved(timed: dict, rounds: int, numbers: dict, flush=None, tick=None) -> dict:
    """{key: Samples} over `rounds` interleaved rounds of the Timed candidates in `timed`.

    numbers[key] is the runs per sample; flush, if given, runs before every sample (untimed);
    tick(key) is called after each sample (progress)."""
    keys = list(timed)
    samples = {key: Samples(number=numbers[key]) for key in keys}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            start = r % len(keys) if keys else 0
            for key in keys[start:] + keys[:start]:
                if flush is not None:
                    flush()
                cpu_start = time.thread_time_ns()
                elapsed = timed[key].run(numbers[key])
                cpu = time.thread_time_ns() - cpu_start
                samples[key].per_run_ns.append(elapsed / numbers[key])
                samples[key].per_run_cpu_ns.append(cpu / numbers[key])
                if tick is not None:
                    tick(key)
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def now_ns() -> int:
    return time.perf_counter_ns()


def measure(timed: dict, *, out_of_cache: bool, flush, repeats: int, budget_s: float,
            sample_ms: float, tick=None, on_rounds=None) -> tuple:
    """Calibrate, choose the number of rounds, time: returns ({key: Samples}, rounds).

    In cache, each candidate's runs per sample are calibrated to about sample_ms. Out of cache,
    a sample is one run after a flush. Rounds: `repeats`, fewer when a round would make the
    whole measurement exceed budget_s, but never fewer than min(3, repeats).
    on_rounds(rounds) is called once they are chosen (before timing)."""
    numbers, estimate = {}, 0.0
    flush_ns = 0.0
    if out_of_cache and flush is not None:
        start = now_ns()
        flush()
        flush_ns = now_ns() - start
    for key, t in timed.items():
        if out_of_cache:
            if flush is not None:
                flush()
            start = now_ns()
            t.run(1)
            numbers[key] = 1
            estimate += now_ns() - start + flush_ns
        else:
            numbers[key] = calibrate(t, sample_ms * 1e6)
            estimate += sample_ms * 1e6
    rounds = repeats
    if estimate > 0:
        affordable = int(budget_s * 1e9 / estimate)
        rounds = max(min(3, repeats), min(repeats, affordable))
    if on_rounds is not None:
        on_rounds(rounds)
    samples = measure_interleaved(timed, rounds, numbers, flush if out_of_cache else None, tick)
    return samples, rounds
