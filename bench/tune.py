"""`python -m softjit tune`: measure which softmax algorithm is fastest at each row length on this
host, and store the choice table "auto" reads (runtime/tuning.py).

Each algorithm runs with the store kind softjit.softmax would give it at that length (ordinary
stores below runtime.dispatch.NONTEMPORAL_MIN_BYTES of output, non-temporal from there), timed in
interleaved rounds on one pinned core like the benchmark suite. The medians are of the thread's
CPU time by default: a choice table should not depend on which other jobs shared the machine
while it was measured (on an idle machine CPU and wall time agree). A winner that beats the
previous length's winner by less than HYSTERESIS keeps the previous one, so noise does not split
the table into slivers.
"""
from __future__ import annotations

import datetime

import numpy as np

from softjit.codegen import variants
from softjit.runtime import cpu, dispatch, tuning
from softjit.bench import candidates as cand
from softjit.bench.progress import progress_bar
from softjit.bench.suite import make_input, parse_sizes
from softjit.bench.timing import Flusher, last_level_cache_bytes, measure, pin_to_one_cpu

LADDER = "1e3,3e3,1e4,3e4,1e5,3e5,1e6,3e6,1e7,16M"
HYSTERESIS = 0.03


def pick_winners(times: dict, hysteresis: float = HYSTERESIS) -> list:
    """{n: {algorithm: median_ns}} -> [(n, winning algorithm)] in increasing n."""
    winners, previous = [], None
    for n in sorted(times):
        medians = {a: t for a, t in times[n].items() if t == t}  # NaN: not measured
        if not medians:
            continue
        best = min(medians, key=medians.get)
        if (previous in medians
                and medians[previous] <= medians[best] * (1 + hysteresis)):
            best = previous
        winners.append((n, best))
        previous = best
    return winners


def measure_isa(isa: str, lengths: list, *, repeats: int, budget_s: float, sample_ms: float,
                flusher, llc: int, rng, bar, clock: str = "cpu") -> dict:
    """{n: {algorithm: median ns per row}} for every algorithm on `isa`."""
    times = {}
    for n in lengths:
        x = make_input(parse_sizes(str(n))[0], rng)
        y = np.empty_like(x)
        nontemporal = n * 4 >= dispatch.NONTEMPORAL_MIN_BYTES
        timed = {}
        for algorithm in variants.ALGORITHMS:
            # the variant softjit.softmax runs for this output size: where an algorithm has no
            # non-temporal variant (three-pass-reload re-reads y), its plain one
            variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal)
            timed[algorithm] = cand.softmax_driver_timed(variant, x, y)
            timed[algorithm].run(1)
        bar.set_postfix_str(f"{isa} n={n}")
        samples, _ = measure(timed, out_of_cache=n * 8 > llc, flush=flusher, repeats=repeats,
                             budget_s=budget_s, sample_ms=sample_ms)
        times[n] = {a: s.median_cpu if clock == "cpu" else s.median for a, s in samples.items()}
        bar.update(1)
    return times


def run_tune(isas=None, sizes: str = LADDER, repeats: int = 21, budget_s: float = 10.0,
             sample_ms: float = 5.0, cpu_index: int | None = None, progress: bool = True,
             save: bool = True, seed: int = 1, clock: str = "cpu") -> dict:
    """Measure, build the tables, store them (unless save=False); returns a summary dict with
    "tables", "measurements" and "path"."""
    pinned = pin_to_one_cpu(cpu_index)
    host = cpu.host_isas()
    isas = tuple(isas) if isas else host
    not_here = [isa for isa in isas if isa not in host]
    if not_here:
        raise ValueError(f"cannot tune {', '.join(not_here)}: not runnable on this host "
                         f"(host ISAs: {', '.join(host) or 'none'})")
    lengths = sorted({c.n for c in parse_sizes(sizes) if c.rows == 1})
    llc = last_level_cache_bytes()
    flusher = Flusher(llc, cand.read_rows_function(host[0]))
    rng = np.random.default_rng(seed)
    bar = progress_bar(len(isas) * len(lengths), "tune", progress)
    measurements, tables = {}, {}
    try:
        for isa in isas:
            times = measure_isa(isa, lengths, repeats=repeats, budget_s=budget_s,
                                sample_ms=sample_ms, flusher=flusher, llc=llc, rng=rng, bar=bar,
                                clock=clock)
            measurements[isa] = {str(n): t for n, t in times.items()}
            tables[isa] = tuning.compress(pick_winners(times))
    finally:
        bar.close()
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    path = tuning.save_tables(tables, {"median_ns_per_row": measurements, "pinned_cpu": pinned,
                                       "repeats": repeats, "clock": clock}, created) if save else None
    return {"tables": tables, "measurements": measurements, "path": path}


def format_tables(summary: dict) -> str:
    lines = []
    for isa, table in summary["tables"].items():
        lines.append(f"{isa}:")
        measured = summary["measurements"][isa]
        for n, medians in measured.items():
            best = min(medians.values())
            cells = "  ".join(f"{a} {t / int(n):.3f} ns/el{' *' if t == best else ''}"
                              for a, t in medians.items())
            lines.append(f"  n={int(n):>10,}  {cells}")
        choice = ", ".join(f"n <= {'inf' if limit == float('inf') else f'{int(limit):,}'}: "
                           f"{algorithm}" for limit, algorithm in table)
        lines.append(f"  table: {choice}")
    if summary.get("path"):
        lines.append(f"stored in {summary['path']}")
    return "\n".join(lines)
