"""`python -m softjit bench --sweep`: which kernel parameters are fastest on this host.

For each algorithm on the host ISA, Softmax variants are built over a grid of reduce_unroll,
reduce_accumulators, output_unroll and interleave (and, out of cache, nontemporal); variants the
register allocator cannot fit (RegisterBudgetError) are skipped. Two size classes are scored:
in cache (rows of 1e3, 1e4, 1e5) and out of cache (16M). A variant's score in a class is the
geometric mean over the class's sizes of (its median / the best median at that size): 1.0 is
the best everywhere.

Two stages keep it affordable and honest: every variant is timed in a few interleaved rounds,
then the best few (and the registered default) are timed again, interleaved, in more rounds,
and those numbers are reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from softjit.codegen import variants
from softjit.codegen.errors import RegisterBudgetError
from softjit.runtime import bindings, cpu
from softjit.bench import candidates as cand
from softjit.bench.progress import progress_bar
from softjit.bench.suite import Case, make_input
from softjit.bench.timing import Flusher, last_level_cache_bytes, measure, pin_to_one_cpu

IN_CACHE = (1_000, 10_000, 100_000)
OUT_OF_CACHE = (16_000_000,)

GRIDS = {
    # reduce_unroll, reduce_accumulators, output_unroll, interleave (vectors per main-loop step)
    "quick": {"avx2": ((1, 2, 4), (1, 2), (2, 4), (0, 2)),
              "avx512f": ((2, 4, 8), (1, 2), (2, 4, 8), (0, 2))},
    "full": {"avx2": ((1, 2, 3, 4, 6, 8), (1, 2, 3, 4), (1, 2, 4, 8), (0, 1, 2)),
             "avx512f": ((2, 4, 6, 8, 12, 16), (1, 2, 3, 4), (2, 4, 8, 16), (0, 1, 2, 4))},
    # many independent vectors per step (8-16), kept within the register file by interleaving
    # tiles of 2-4 vectors: the out-of-order core overlaps the tiles
    "wide": {"avx2": ((4, 8, 12), (1, 2, 4), (4, 8, 12), (0, 2, 4)),
             "avx512f": ((8, 12, 16), (2, 4), (4, 8, 16), (0, 2, 4))},
}


@dataclass(frozen=True)
class SizeClass:
    name: str
    lengths: tuple
    nontemporal: tuple  # store kinds to try


def size_classes(in_cache=IN_CACHE, out_of_cache=OUT_OF_CACHE) -> tuple:
    classes = []
    if in_cache:
        classes.append(SizeClass("in cache", tuple(in_cache), (False,)))
    if out_of_cache:
        classes.append(SizeClass("out of cache", tuple(out_of_cache), (False, True)))
    return tuple(classes)


def params(v) -> str:
    return (f"reduce_unroll={v.reduce_unroll} reduce_accumulators={v.reduce_accumulators} "
            f"output_unroll={v.output_unroll} interleave={v.interleave} "
            f"nontemporal={v.nontemporal}")


def grid(algorithm: str, isa: str, nontemporal: tuple, grid_name: str = "full") -> list:
    """Distinct Softmax variants (by name) of the grid; interleave values that leave every pass
    unchanged (>= the unrolls) give the same kernels and are dropped."""
    reduce_unrolls, accumulators, output_unrolls, interleaves = GRIDS[grid_name][isa]
    found = {}
    for ru in reduce_unrolls:
        for acc in accumulators:
            if acc > ru:
                continue
            for ou in output_unrolls:
                for g in interleaves:
                    for nt in nontemporal:
                        v = variants.Softmax(algorithm, isa, ru, acc, ou, interleave=g,
                                             nontemporal=nt)
                        found.setdefault(v.name, v)
    return list(found.values())


def buildable(candidates: list, bar=None) -> tuple:
    """(variants that assemble and load, names skipped for the register budget)."""
    ok, skipped = [], []
    for v in candidates:
        try:
            bindings.function(v, v.driver_symbol)
            ok.append(v)
        except RegisterBudgetError:
            skipped.append(v.name)
        if bar is not None:
            bar.update(1)
    return ok, skipped


def registered(algorithm: str, isa: str, nontemporal: tuple) -> list:
    found = []
    for nt in nontemporal:
        try:
            found.append(variants.REGISTRY.softmax(algorithm, isa, nt))
        except ValueError:
            pass
    return found


def score(times: dict) -> dict:
    """{length: {name: ns}} -> {name: geometric mean of ns / best ns over lengths}."""
    logs: dict = {}
    for medians in times.values():
        best = min(medians.values())
        for name, t in medians.items():
            logs.setdefault(name, []).append(math.log(t / best))
    return {name: math.exp(sum(v) / len(v)) for name, v in logs.items()
            if len(v) == len(times)}


def time_variants(vs: list, lengths: tuple, rounds: int, *, llc, flusher, rng, sample_ms,
                  tick=None, clock: str = "cpu") -> dict:
    """{length: {name: median ns per row}}, all variants interleaved at each length; medians of
    the thread's CPU time by default (see tune.py: the machine may be shared)."""
    times = {}
    for n in lengths:
        x = make_input(Case(1, n), rng)
        y = np.empty_like(x)
        timed = {}
        for v in vs:
            timed[v.name] = cand.softmax_driver_timed(v, x, y)
            timed[v.name].run(1)
        samples, _ = measure(timed, out_of_cache=n * 8 > llc, flush=flusher, repeats=rounds,
                             budget_s=1e9, sample_ms=sample_ms, tick=tick)
        times[n] = {name: s.median_cpu if clock == "cpu" else s.median
                    for name, s in samples.items()}
    return times


def run_sweep(isa: str | None = None, algorithms=variants.ALGORITHMS, grid_name: str = "full",
              classes=None, first_rounds: int = 3, final_rounds: int = 11, finalists: int = 6,
              sample_ms: float = 1.0, cpu_index: int | None = None, progress: bool = True,
              seed: int = 7, clock: str = "cpu") -> dict:
    pinned = pin_to_one_cpu(cpu_index)
    host = cpu.host_isas()
    isa = isa or host[0]
    if isa not in host:
        raise ValueError(f"cannot sweep {isa}: not runnable on this host "
                         f"(host ISAs: {', '.join(host) or 'none'})")
    classes = classes or size_classes()
    llc = last_level_cache_bytes()
    flusher = Flusher(llc, cand.read_rows_function(host[0]))
    rng = np.random.default_rng(seed)
    result = {"isa": isa, "pinned_cpu": pinned, "grid": grid_name, "clock": clock,
              "classes": []}
    plans = [(c, a, grid(a, isa, c.nontemporal, grid_name)) for c in classes for a in algorithms]
    bar = progress_bar(sum(len(g) for _, _, g in plans), "sweep: build", progress)
    built = {}
    try:
        for size_class, algorithm, candidates in plans:
            built[(size_class.name, algorithm)] = buildable(candidates, bar)
    finally:
        bar.close()
    for size_class in classes:
        entry = {"class": size_class.name, "lengths": list(size_class.lengths), "algorithms": []}
        for algorithm in algorithms:
            ok, skipped = built[(size_class.name, algorithm)]
            defaults = registered(algorithm, isa, size_class.nontemporal)
            bar = progress_bar(len(ok) * first_rounds * len(size_class.lengths),
                               f"sweep: {size_class.name}, {algorithm}", progress)
            try:
                first = score(time_variants(ok, size_class.lengths, first_rounds, llc=llc,
                                            flusher=flusher, rng=rng, sample_ms=sample_ms,
                                            tick=lambda key: bar.update(1), clock=clock))
            finally:
                bar.close()
            ranked = sorted(first, key=first.get)[:finalists]
            by_name = {v.name: v for v in ok + defaults}
            final_set = [by_name[name] for name in ranked]
            final_set += [d for d in defaults if d.name not in ranked]
            times = time_variants(final_set, size_class.lengths, final_rounds, llc=llc,
                                  flusher=flusher, rng=rng, sample_ms=sample_ms, clock=clock)
            final = score(times)
            order = sorted(final, key=final.get)
            entry["algorithms"].append({
                "algorithm": algorithm,
                "tried": len(ok), "skipped_register_budget": len(skipped),
                "ranking": [{"name": name, "params": params(by_name[name]),
                             "score": final[name],
                             "registered": name in {d.name for d in defaults},
                             "ns_per_element": {str(n): times[n][name] / n for n in times}}
                            for name in order],
                "first_stage_scores": first,
            })
        result["classes"].append(entry)
    return result


def format_sweep(result: dict) -> str:
    lines = [f"parameter sweep on {result['isa']} (grid {result['grid']}, pinned to cpu "
             f"{result['pinned_cpu']}, {result.get('clock', 'wall')}-clock medians); score = "
             "geometric mean of time / best time over the class's lengths (1.000 = best); "
             "algorithms were timed one after another, so compare variants within an algorithm"]
    for entry in result["classes"]:
        lengths = ", ".join(f"{n:,}" for n in entry["lengths"])
        lines.append(f"\n== {entry['class']} (n = {lengths}) ==")
        for a in entry["algorithms"]:
            lines.append(f"{a['algorithm']}: {a['tried']} variants timed, "
                         f"{a['skipped_register_budget']} skipped (register budget)")
            for rank in a["ranking"]:
                per_n = "  ".join(f"{float(ns):.4f}" for ns in rank["ns_per_element"].values())
                mark = "  <- registered" if rank["registered"] else ""
                lines.append(f"  {rank['score']:.3f}  {per_n} ns/el  {rank['params']}{mark}")
    return "\n".join(lines) + "\n"
