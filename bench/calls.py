"""`softjit bench --calls`: what one call costs, end to end from Python, at the sizes where the
call and not the kernel decides (attention rows, per-token calls).

Every call form softjit documents is timed beside the bare kernel and beside what users would
call instead. The bare kernel is the row driver the public call picks (same algorithm, same
stores, on the same x and y arrays as the out= call), run again and again inside one native
call with no Python in between: the time of the work alone. Each call is timed as a loop
statement compiled with its names as locals (peers.StatementTimed, as timeit does), so a
candidate pays what the call costs in a user's loop and nothing for the harness; candidates
are timed in interleaved rounds on one pinned core and the median per call is reported
(bench/timing.py). Peers that are not installed are listed as such.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np

from softjit.bench.peers import LoopTimed, NOT_INSTALLED, StatementTimed
from softjit.bench.timing import measure, pin_to_one_cpu

# (label, rows, n): single rows are 1-D arrays (softmax over axis 0), the batch is (8, 1000).
SIZES = (("16", 1, 16), ("128", 1, 128), ("256", 1, 256), ("1,000", 1, 1000),
         ("10,000", 1, 10_000), ("100,000", 1, 100_000), ("8 x 1,000", 8, 1000))


@dataclass
class Row:
    key: str
    label: str
    status: str | None = None  # None when timed, else why not (per size: see Result.cells)


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def candidates(x: np.ndarray, isa: str) -> dict:
    """{key: (label, Timed or the reason it cannot run)} for one input array x."""
    import softjit
    from softjit.codegen import variants
    from softjit.runtime import dispatch

    from softjit.bench import peers
    from softjit.bench.candidates import softmax_driver_timed

    axis = x.ndim - 1
    rows, n = (1, x.shape[0]) if x.ndim == 1 else x.shape
    algorithm = dispatch.choose_algorithm(isa, n, rows)
    y, z, e = np.empty_like(x), x.copy(), np.empty_like(x)
    found = {}

    def add(key, label, make):
        try:
            found[key] = (label, make())
        except ImportError:
            found[key] = (label, NOT_INSTALLED)
        except Exception as error:  # a peer that fails on this input: say why, keep going
            found[key] = (label, f"failed: {type(error).__name__}: {error}")

    nontemporal = x.nbytes >= dispatch.NONTEMPORAL_MIN_BYTES
    variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal)
    # the same arrays as the out= call: alignment changes what a vector load costs
    x2d, y2d = x.reshape(rows, n), y.reshape(rows, n)
    add("kernel", f"bare kernel ({algorithm} row driver, no Python)",
        lambda: softmax_driver_timed(variant, x2d, y2d))
    from softjit.runtime import api

    names = {"softmax": softjit.softmax, "x": x, "y": y, "z": z, "e": e, "axis": axis,
             "algorithm": algorithm, "exp": softjit.exp, "np_exp": np.exp,
             "python_softmax": api._python_softmax, "float32": np.float32,
             "x64": x.astype(np.float64), "log_softmax": softjit.log_softmax,
             "logsumexp": softjit.logsumexp}

    def timed(expression):
        return lambda: StatementTimed(expression, names)

    add("out", "softjit.softmax(x, out=y)", timed("softmax(x, out=y)"))
    add("new", "softjit.softmax(x)", timed("softmax(x)"))
    add("named", f"softjit.softmax(x, algorithm={algorithm!r}, out=y)",
        timed("softmax(x, algorithm=algorithm, out=y)"))
    add("axis", f"softjit.softmax(x, {axis}, out=y)", timed("softmax(x, axis, out=y)"))
    add("in-place", "softjit.softmax(z, out=z)", timed("softmax(z, out=z)"))
    add("python", "softjit.softmax(x, out=y) without the builtin (the Python function)",
        timed("python_softmax(x, out=y)"))
    add("scale", "softjit.softmax(x, out=y, scale=2.0)", timed("softmax(x, out=y, scale=2.0)"))
    add("scale-one", "softjit.softmax(x, out=y, scale=1.0)", timed("softmax(x, out=y, scale=1.0)"))
    add("dtype", "softjit.softmax(x, out=y, dtype=numpy.float32)",
        timed("softmax(x, out=y, dtype=float32)"))
    add("dtype-float64", "softjit.softmax(x64, out=y, dtype=numpy.float32) (x64 float64: converted)",
        timed("softmax(x64, out=y, dtype=float32)"))
    add("log-softmax", "softjit.log_softmax(x, out=y)", timed("log_softmax(x, out=y)"))
    add("log-softmax-new", "softjit.log_softmax(x)", timed("log_softmax(x)"))
    add("logsumexp", "softjit.logsumexp(x)", timed("logsumexp(x)"))
    add("exp", "softjit.exp(x, out=y)", timed("exp(x, out=e)"))
    add("np-exp", "numpy.exp(x, out=y)", timed("np_exp(x, out=e)"))

    def numpy_softmax():
        m = x.max(axis=-1, keepdims=True)
        t = np.exp(x - m)
        return t / t.sum(axis=-1, keepdims=True)

    add("numpy", "numpy exp(x - max) / sum", lambda: LoopTimed(numpy_softmax))

    def scipy_softmax():
        from scipy.special import softmax
        return LoopTimed(lambda: softmax(x, axis=-1))

    add("scipy", "scipy.special.softmax(x)", scipy_softmax)

    def torch_out():
        torch = _torch()
        xt, yt = torch.from_numpy(x), torch.empty(x.shape)
        return StatementTimed("softmax(xt, axis, out=yt)", {"softmax": torch.softmax, "xt": xt,
                              "axis": axis, "yt": yt}, convert=lambda r: r.numpy())

    def torch_new():
        torch = _torch()
        xt = torch.from_numpy(x)
        return StatementTimed("softmax(xt, axis)", {"softmax": torch.softmax, "xt": xt,
                              "axis": axis}, convert=lambda r: r.numpy())

    add("torch-out", f"torch.softmax(xt, {axis}, out=yt)", torch_out)
    add("torch", f"torch.softmax(xt, {axis})", torch_new)
    add("onnxruntime", "onnxruntime Softmax, I/O binding", lambda: peers._onnxruntime(x2d))
    add("litert", "LiteRT (XNNPACK) SOFTMAX invoke", lambda: peers._litert(x2d))
    return found


def run(repeats: int = 21, cpu_index: int | None = None, budget_s: float = 20.0,
        sample_ms: float = 2.0, clock: str = "wall", with_startup: bool = True) -> dict:
    """{"host": ..., "sizes": [labels], "rows": {key: label}, "cells": {key: {size: us or str}}}

    clock "cpu" reports medians of the thread's CPU time (steadier on a shared machine)."""
    pinned = pin_to_one_cpu(cpu_index)
    import softjit
    from softjit.runtime import cpu

    isa = softjit.host_isas()[0]
    rng = np.random.default_rng(0)
    labels, cells = {}, {}
    for size_label, rows, n in SIZES:
        shape = (n,) if rows == 1 else (rows, n)
        x = (rng.standard_normal(shape) * 4).astype(np.float32)
        found = candidates(x, isa)
        timed = {key: t for key, (_, t) in found.items() if not isinstance(t, str)}
        for key, t in timed.items():  # warm up: load kernels, build entries, fill caches
            t.run(3)
        samples, _ = measure(timed, out_of_cache=False, flush=None, repeats=repeats,
                             budget_s=budget_s, sample_ms=sample_ms)
        for key, (label, t) in found.items():
            labels.setdefault(key, label)
            if not isinstance(t, str):
                t = (samples[key].median_cpu if clock == "cpu" else samples[key].median) / 1000.0
            cells.setdefault(key, {})[size_label] = t
    return {
        "host": f"{cpu.cpu_model() or platform.processor() or 'unknown CPU'} "
                f"({', '.join(cpu.host_isas())}; softjit runs {isa}); pinned to CPU {pinned}; "
                f"Python {platform.python_version()}",
        "sizes": [label for label, _, _ in SIZES],
        "rows": labels,
        "cells": cells,
        "repeats": repeats,
        "clock": clock,
        "startup": startup() if with_startup else None,
    }


# CPU time of the process (time.process_time): on a shared machine, wall time would count
# the other processes' turns too.
_STARTUP = """
import time
clock = time.process_time
start = clock()
import numpy
numpy_done = clock()
import softjit
softjit_done = clock()
x = numpy.ones(1000, numpy.float32)
call_start = clock()
softjit.softmax(x)
call_done = clock()
print(numpy_done - start, softjit_done - numpy_done, call_done - call_start)
"""


def startup(runs: int = 7) -> dict:
    """Medians over `runs` fresh processes (the first warms the cache and is not counted):
    import numpy, import softjit after it, and softjit's first call with a warm cache."""
    import os
    import subprocess
    import sys

    samples = []
    for run_index in range(runs + 1):
        result = subprocess.run([sys.executable, "-c", _STARTUP], capture_output=True, text=True,
                                env={**os.environ}, timeout=300, check=True)
        if run_index:
            samples.append([float(v) for v in result.stdout.split()])
    numpy_s, softjit_s, first_s = (float(np.median(column)) for column in zip(*samples))
    return {"import numpy ms": 1e3 * numpy_s, "import softjit after numpy ms": 1e3 * softjit_s,
            "first call ms": 1e3 * first_s, "runs": runs}


def _cell(value) -> str:
    if isinstance(value, str):
        return NOT_INSTALLED if value == NOT_INSTALLED else "failed"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _ratio(cells, a, b, size) -> str:
    va, vb = cells.get(a, {}).get(size), cells.get(b, {}).get(size)
    if isinstance(va, float) and isinstance(vb, float) and vb > 0:
        return f"{va / vb:.2f}"
    return "n/a"


def format_results(document: dict) -> str:
    sizes, cells = document["sizes"], document["cells"]
    clock = "thread CPU time" if document.get("clock") == "cpu" else "wall time"
    lines = [f"per-call time, median us of {clock} over {document['repeats']} interleaved rounds "
             f"on one pinned core: {document['host']}",
             "", "| call | " + " | ".join(f"n = {s}" for s in sizes) + " |",
             "| --- |" + " --- |" * len(sizes)]
    for key, label in document["rows"].items():
        lines.append(f"| {label} | " + " | ".join(_cell(cells[key].get(s, "n/a")) for s in sizes)
                     + " |")
    lines += ["", "ratios (> 1: softjit faster; for call forms: their time / the out= call):"]
    checks = (
        ("torch.softmax(out=) / softjit out=", "torch-out", "out"),
        ("torch.softmax() / softjit new output", "torch", "new"),
        ("new output / out=", "new", "out"),
        ("named algorithm / out=", "named", "out"),
        ("axis / out=", "axis", "out"),
        ("in place / out=", "in-place", "out"),
        ("scale=2.0 / out=", "scale", "out"),
        ("scale=1.0 / out=", "scale-one", "out"),
        ("dtype=float32 / out=", "dtype", "out"),
        ("float64 x, dtype=float32 / out=", "dtype-float64", "out"),
        ("log_softmax(out=) / softmax out=", "log-softmax", "out"),
        ("log_softmax() / softmax out=", "log-softmax-new", "out"),
        ("logsumexp() / softmax out=", "logsumexp", "out"),
        ("numpy.exp(out=) / softjit.exp(out=)", "np-exp", "exp"),
        ("softjit out= / bare kernel", "out", "kernel"),
        ("without the builtin / with it, out=", "python", "out"),
    )
    for name, a, b in checks:
        lines.append(f"  {name:40s} " + "  ".join(f"{s}: {_ratio(cells, a, b, s)}" for s in sizes))
    start = document.get("startup")
    if start:
        lines += ["", f"start-up, CPU time, medians of {start['runs']} fresh processes: import numpy "
                      f"{start['import numpy ms']:.1f} ms, then import softjit "
                      f"{start['import softjit after numpy ms']:.1f} ms; the first "
                      f"softjit.softmax(x) with a warm cache {start['first call ms']:.2f} ms"]
    failed = [f"  {document['rows'][k]}: {v}" for k, row in cells.items() for v in
              dict.fromkeys(x for x in row.values() if isinstance(x, str) and x != NOT_INSTALLED)]
    if failed:
        lines += ["", "failures:"] + failed
    return "\n".join(lines) + "\n"
