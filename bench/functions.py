"""`python -m softjit bench --functions`: log_softmax and logsumexp against softjit's own softmax
of the same rows and the libraries users would call instead (scipy.special, torch), in cache
(10^5 elements) and out of it (64M elements, a 256 MiB row) by default, --sizes takes row
lengths and ROWSxN batches (1e3,1e5,4096x1000), each function along the last axis; and softmax
of the same rows in bfloat16 and float16 (converted in the kernels' registers) against
softjit's float32 softmax and torch.softmax on bfloat16 / float16 tensors.

Each call is timed from Python per call (what a user pays), on one pinned core, in interleaved
rounds (bench/timing.py), and reported as medians with each candidate's ratio to softjit's.
Peers that are not installed are listed as skipped, with the reason.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from softjit.bench.peers import LoopTimed
from softjit.bench.timing import calibrate, measure_interleaved, pin_to_one_cpu

DEFAULT_SIZES = (100_000, 64 << 20)
IN_CACHE_SAMPLE_NS = 2e6


def _torch():
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    torch.set_num_threads(1)
    return torch


def candidates(function: str, x: np.ndarray, y: np.ndarray) -> tuple:
    """({label: Timed}, {label: why skipped}) for one function on x's rows (y: an output)."""
    import softjit

    found, skipped = {}, {}
    if function == "log_softmax":
        found["softjit.log_softmax"] = LoopTimed(lambda: softjit.log_softmax(x, out=y))
        for algorithm in ("two-pass", "three-pass"):
            found[f"softjit.log_softmax {algorithm}"] = LoopTimed(
                lambda a=algorithm: softjit.log_softmax(x, out=y, algorithm=a))
        found["softjit.log_softmax kernel"] = LoopTimed(_log_softmax_kernel(x, y))
    else:
        found["softjit.logsumexp"] = LoopTimed(lambda: softjit.logsumexp(x))
    found["softjit.softmax"] = LoopTimed(lambda: softjit.softmax(x, out=y))
    found["softjit.softmax two-pass"] = LoopTimed(lambda: softjit.softmax(x, out=y,
                                                                     algorithm="two-pass"))
    if function == "log_softmax":
        found["softjit.softmax kernel"] = LoopTimed(_softmax_kernel(x, y))
    if importlib.util.find_spec("scipy") is not None:
        import scipy.special

        scipy_function = getattr(scipy.special, function)
        found[f"scipy.special.{function}"] = LoopTimed(lambda: scipy_function(x, axis=-1))
    else:
        skipped[f"scipy.special.{function}"] = "scipy is not installed (pip install scipy)"
    torch = _torch()
    if torch is not None:
        t = torch.from_numpy(x)
        torch_function = getattr(torch, function)
        if function == "log_softmax":
            # out= as softjit's calls have it: a new 400 KB result each call would time the
            # allocator's page faults (which other candidates' temporaries vary), not the kernel
            t_out = torch.from_numpy(np.empty_like(x))
            found[f"torch.{function}"] = LoopTimed(lambda: torch_function(t, -1, out=t_out))
        else:
            found[f"torch.{function}"] = LoopTimed(lambda: torch_function(t, -1))
    else:
        skipped[f"torch.{function}"] = "torch is not installed (see the README)"
    return found, skipped


def _log_softmax_kernel(x: np.ndarray, y: np.ndarray):
    """A call of the row driver "auto" runs for x's rows, its pointers made once: the kernel's
    own time, without the Python path of softjit.log_softmax."""
    from softjit.runtime import bindings, log_softmax as runtime
    from softjit.runtime.dispatch import resolve_isa

    n = x.shape[-1]
    rows = x.size // n
    isa = resolve_isa("auto")
    module = runtime._rows_module(runtime._choose("auto", n, isa), isa, x.nbytes, 4 * n)
    states = np.empty(rows, runtime.STATE_DTYPE)
    arguments = (bindings.pointer(x), bindings.pointer(y), n, rows,
                 runtime._stride_pair(4 * n, 4 * n), bindings.pointer(states))
    return lambda: module.rows_function(*arguments)


def _softmax_kernel(x: np.ndarray, y: np.ndarray):
    """The same for the softmax row driver "auto" runs on x's rows."""
    from softjit.runtime import bindings, dispatch

    n = x.shape[-1]
    rows = x.size // n
    isa = dispatch.resolve_isa("auto")
    driver = bindings.driver(dispatch.choose_algorithm(isa, n, rows), isa,
                             dispatch.nontemporal_for(x.nbytes))
    status = np.empty(rows, bindings.STATUS_DTYPE)
    strides = bindings.row_strides(4 * n)
    arguments = (bindings.pointer(x), bindings.pointer(y), n, rows, strides,
                 bindings.pointer(status))
    return lambda: driver.function(*arguments)


def _bfloat16():
    if importlib.util.find_spec("ml_dtypes") is None:
        return None
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def half_candidates(x: np.ndarray) -> tuple:
    """({label: Timed}, {label: why skipped}): softmax of the float32 row x as softjit computes
    it in float32 (the label "softjit.softmax", the reference of the ratios), in bfloat16 and
    float16 (x rounded to them), each with algorithm="auto" and "two-pass", and torch.softmax
    on tensors of those dtypes."""
    import softjit

    found, skipped = {}, {}
    y = np.empty_like(x)
    found["softjit.softmax"] = LoopTimed(lambda: softjit.softmax(x, out=y))
    found["softjit.softmax two-pass"] = LoopTimed(lambda: softjit.softmax(
        x, out=y, algorithm="two-pass"))
    torch = _torch()
    bfloat16 = _bfloat16()
    halves = {"float16": np.dtype(np.float16)}
    if bfloat16 is not None:
        halves = {"bfloat16": bfloat16, **halves}
    else:
        skipped["softjit.softmax bfloat16"] = "ml_dtypes is not installed " \
                                              "(pip install softjit[bfloat16])"
    for name, dtype in halves.items():
        xh = x.astype(dtype)
        yh = np.empty_like(xh)
        found[f"softjit.softmax {name}"] = LoopTimed(lambda xh=xh, yh=yh: softjit.softmax(
            xh, out=yh))
        found[f"softjit.softmax {name} two-pass"] = LoopTimed(
            lambda xh=xh, yh=yh: softjit.softmax(xh, out=yh, algorithm="two-pass"))
        if torch is None:
            skipped[f"torch.softmax {name}"] = "torch is not installed (see the README)"
            continue
        t = torch.from_numpy(xh.view(np.int16)).view(getattr(torch, name))
        found[f"torch.softmax {name}"] = LoopTimed(lambda t=t: torch.softmax(t, -1))
    return found, skipped


def run(sizes=DEFAULT_SIZES, repeats: int = 9, cpu_index: int | None = None,
        clock: str = "wall") -> list:
    """[{function, n, rows, clock, medians_ns: {label: ns}, skipped: {label: why}}]; a size is
    a row length or a (rows, n) batch; clock: medians of wall time or of the thread's CPU time
    ("cpu": steadier where other jobs share the core)."""
    pinned = pin_to_one_cpu(cpu_index)
    rng = np.random.default_rng(0)
    results = []
    for size in sizes:
        rows, n = size if isinstance(size, tuple) else (1, size)
        shape = (rows, n) if isinstance(size, tuple) else (n,)
        x = rng.standard_normal(shape).astype(np.float32)
        y = np.empty_like(x)
        for function in ("log_softmax", "logsumexp", "softmax"):
            timed, skipped = (half_candidates(x) if function == "softmax"
                              else candidates(function, x, y))
            big = x.nbytes > (32 << 20)
            for t in timed.values():  # a first call loads (or builds) its kernels: calibrating
                t.run(1)  # on it would time one call per sample
            numbers = {k: 1 if big else calibrate(t, IN_CACHE_SAMPLE_NS) for k, t in timed.items()}
            samples = measure_interleaved(timed, repeats if not big else max(3, repeats // 2),
                                          numbers)
            results.append({"function": function, "n": n, "rows": rows, "cpu": pinned,
                            "clock": clock,
                            "medians_ns": {k: s.median if clock == "wall" else s.median_cpu
                                           for k, s in samples.items()},
                            "skipped": skipped})
    return results


def format_results(results: list) -> str:
    lines = []
    for r in results:
        medians = r["medians_ns"]
        own = medians.get(f"softjit.{r['function']}")
        batch = f"{r['rows']:,} rows of " if r.get("rows", 1) > 1 else ""
        clock = "thread CPU time" if r.get("clock") == "cpu" else "wall time"
        lines.append(f"{r['function']}, {batch}n = {r['n']:,} (pinned to CPU {r['cpu']}), "
                     f"medians of {clock}:")
        for label, ns in medians.items():
            ratio = f"{ns / own:6.2f}x softjit.{r['function']}'s time" if own else ""
            lines.append(f"  {label:<34} {ns / 1e3:12.1f} us  {ratio}")
        for label, why in r["skipped"].items():
            lines.append(f"  {label:<34} skipped: {why}")
    return "\n".join(lines) + "\n"
