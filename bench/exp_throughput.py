"""Throughput of the exp kernels against numpy.exp on float32, in cache, one pinned core.

`python -m softjit bench --exp`: every vexp variant this host runs (called natively, without the
Python layer) and numpy.exp(x, out=y), timed in interleaved rounds on the same warm arrays,
median elements per nanosecond of the thread's CPU time (steady on a shared machine) for each
array size; and each kernel's port floor (port_floor.py) with the measured time over it.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen import variants
from softjit.runtime import bindings, cpu
from softjit.bench import port_floor
from softjit.bench.peers import LoopTimed
from softjit.bench.timing import measure, pin_to_one_cpu

SIZES = (1024, 16384, 262144)  # 4 KiB (L1), 64 KiB (L2), 1 MiB (L2/L3) per array


def candidates(x: np.ndarray, y: np.ndarray) -> dict:
    pointer = bindings.contiguous_pointer
    px, py, n = pointer(x), pointer(y), x.size
    found = {}
    for v in variants.REGISTRY:
        if v.op == "vexp" and v.isa in cpu.host_isas():
            function = bindings.function(v)
            found[f"softjit {v.name}"] = LoopTimed(lambda f=function: f(px, py, n))
    found["numpy.exp(x, out=y)"] = LoopTimed(lambda: np.exp(x, out=y))
    return found


def run(repeats: int = 21, cpu_index: int | None = None) -> dict:
    """{size: {candidate: elements per ns (median)}}."""
    pinned = pin_to_one_cpu(cpu_index)
    host = cpu.host_isas()
    floors = port_floor.host_floors(host[0] if host else None)
    results = {"pinned_cpu": pinned, "sizes": {}, "port_floor": floors.describe(),
               "floor_elements_per_ns": {}}
    for v in variants.REGISTRY:
        if v.op == "vexp" and v.isa in host:
            floor = floors.floor_ns(v)
            if floor:
                results["floor_elements_per_ns"][f"softjit {v.name}"] = 1.0 / floor
    rng = np.random.default_rng(0)
    for n in SIZES:
        x = rng.uniform(-80.0, 80.0, n).astype(np.float32)
        y = np.empty_like(x)
        timed = candidates(x, y)
        samples, _ = measure(timed, out_of_cache=False, flush=None, repeats=repeats,
                             budget_s=20.0, sample_ms=2.0)
        results["sizes"][n] = {key: n / s.median_cpu for key, s in samples.items()}
    return results


WIDTH = 64  # the candidate column


def format_results(results: dict) -> str:
    sizes = list(results["sizes"])
    names = list(results["sizes"][sizes[0]])
    lines = [f"exp throughput, elements per ns (median CPU time of interleaved rounds, pinned to "
             f"CPU {results['pinned_cpu']})",
             f"{'candidate':<{WIDTH}}" + "".join(f"{n:>12}" for n in sizes)]
    for name in names:
        lines.append(f"{name:<{WIDTH}}" + "".join(f"{results['sizes'][n][name]:12.3f}"
                                                  for n in sizes))
    floors = results.get("floor_elements_per_ns", {})
    for name in names:
        if name in floors:
            ratios = [floors[name] / results["sizes"][n][name] for n in sizes]
            lines.append(f"{name + ' time / floor':<{WIDTH}}" + "".join(f"{r:11.2f}x" for r in ratios)
                         + f"   (floor {floors[name]:.3f} elements/ns)")
    if results.get("port_floor"):
        lines.append(results["port_floor"])
    numpy_key = "numpy.exp(x, out=y)"
    for name in names:
        if name != numpy_key:
            ratios = [results["sizes"][n][name] / results["sizes"][n][numpy_key] for n in sizes]
            lines.append(f"{name + ' / numpy':<{WIDTH}}" + "".join(f"{r:11.2f}x" for r in ratios))
    return "\n".join(lines) + "\n"
