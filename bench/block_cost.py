"""What the float64 block folds cost: each softmax algorithm as registered (float32 sums over
blocks of ~2048 elements folded into float64 lane sums, accurate at any n) against the same
kernels with a single block (plain float32 lane sums, folded once at the end: what XNNPACK-style
kernels do, and what loses accuracy at 10^6 elements and beyond), timed interleaved on one
pinned core, in cache and out of cache. Both are exact variants of one generator, so the
difference is the folds and nothing else.

`python -m softjit bench --block-cost`
"""
from __future__ import annotations

import dataclasses

import numpy as np

from softjit.codegen import variants
from softjit.runtime import cpu
from softjit.bench.candidates import read_rows_function, softmax_driver_timed
from softjit.bench.timing import Flusher, last_level_cache_bytes, measure, pin_to_one_cpu

SIZES = (100_000, 16 * 2**20)
ONE_BLOCK = 1 << 40  # elements: more than any row, so the folds happen once, at the end


def run(repeats: int = 21, cpu_index: int | None = None, sizes=SIZES) -> dict:
    pinned = pin_to_one_cpu(cpu_index)
    isa = cpu.host_isas()[0]
    llc = last_level_cache_bytes()
    flusher = Flusher(llc, read_rows_function(isa))
    rng = np.random.default_rng(0)
    results = {"isa": isa, "pinned_cpu": pinned, "sizes": {}}
    for n in sizes:
        out_of_cache = 8 * n > llc
        x = rng.uniform(-1000.0, 1000.0, (1, n)).astype(np.float32)
        timed, errors = {}, {}
        for algorithm in variants.ALGORITHMS:
            registered = variants.REGISTRY.softmax(algorithm, isa, out_of_cache and algorithm
                                                  != "three-pass-reload")
            single = dataclasses.replace(registered, block_elements=ONE_BLOCK)
            for label, variant in (("blocks + float64", registered), ("one float32 block", single)):
                y = np.empty_like(x)
                timed[(algorithm, label)] = softmax_driver_timed(variant, x, y)
        samples, _ = measure(timed, out_of_cache=out_of_cache, flush=flusher, repeats=repeats,
                             budget_s=30.0, sample_ms=2.0)
        reference = np.exp(x[0].astype(np.float64) - x.max())
        reference /= reference.sum()
        keep = reference >= np.finfo(np.float32).tiny
        for key, t in timed.items():
            y = t.output()[0]
            errors[key] = float(np.max(np.abs(y[keep] - reference[keep]) / reference[keep]))
        results["sizes"][n] = {
            "out_of_cache": out_of_cache,
            "ns_per_element": {key: s.median / n for key, s in samples.items()},
            "max_relative_error": errors,
        }
    return results


def format_results(results: dict) -> str:
    lines = [f"float64 block folds: cost and accuracy ({results['isa']}, pinned to CPU "
             f"{results['pinned_cpu']}; medians of interleaved rounds)"]
    for n, r in results["sizes"].items():
        where = "out of cache" if r["out_of_cache"] else "in cache"
        lines.append(f"n = {n:,} ({where})")
        for algorithm in variants.ALGORITHMS:
            blocked = r["ns_per_element"][(algorithm, "blocks + float64")]
            plain = r["ns_per_element"][(algorithm, "one float32 block")]
            lines.append(
                f"  {algorithm:<22} blocks+float64 {blocked:7.4f} ns/el (max rel err "
                f"{r['max_relative_error'][(algorithm, 'blocks + float64')]:.1e})   one float32 "
                f"block {plain:7.4f} ns/el (max rel err "
                f"{r['max_relative_error'][(algorithm, 'one float32 block')]:.1e})   "
                f"cost {blocked / plain - 1:+.1%}")
    return "\n".join(lines) + "\n"
