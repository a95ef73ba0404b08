"""What scale= costs: softjit.softmax, log_softmax and logsumexp with scale=s against the same
call without it and against the composition on the host (a numpy product s * x: one more pass
over x and a temporary array), and the scaled row drivers against the unscaled ones called
directly (kernel time, no Python argument handling), timed with bench/timing.py's rules
(interleaved rounds, medians, cold caches out of cache).

    taskset -c 1 python -m softjit.bench.scale_cost [--sizes 1e3,1e5,67108864] [--rows 1]
        [--functions softmax,log_softmax,logsumexp] [--repeats 15] [--isa auto]

For log_softmax and logsumexp, "host products" is the path their scale= took before the scaled
kernels existed: the float32 products s * x made by numpy, the unscaled call on them, the scan
for products of finite x that overflowed (|s| > 1), and (log_softmax) the copy into out.

Prints one line per size, function and clock: the median time of each candidate and its ratio
to the unscaled call (the kernels' lines: to the unscaled driver), by the wall clock and by the
thread's CPU time (steadier on a shared machine: it stops while another process has the core).
"""
from __future__ import annotations

import argparse

import numpy as np

import softjit
from softjit.bench.peers import LoopTimed
from softjit.bench.timing import Flusher, last_level_cache_bytes, measure
from softjit.runtime import bindings, log_softmax as log_softmax_runtime
from softjit.runtime.api import resolve_isa

SCALE = np.float32(1 / 0.7)
FUNCTIONS = ("softmax", "log_softmax", "logsumexp")


def _products(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return x * SCALE


def _overflow_scan(x: np.ndarray, p: np.ndarray) -> bool:
    """The host path's scan for products of finite x that overflowed (|s| > 1)."""
    return bool((np.isinf(p) & np.isfinite(x)).any())


def host_products_log_softmax(x: np.ndarray, y: np.ndarray, isa: str) -> np.ndarray:
    p = _products(x)
    result = softjit.log_softmax(p, isa=isa)
    _overflow_scan(x, p)
    y[...] = result
    return y


def host_products_logsumexp(x: np.ndarray, isa: str) -> np.ndarray:
    p = _products(x)
    c = softjit.logsumexp(p, isa=isa)
    _overflow_scan(x, p)
    return c


def kernel_calls(function: str, x: np.ndarray, y: np.ndarray, isa: str) -> dict:
    """The row drivers the call runs, called directly with pointers made once: unscaled and
    scaled (which also stores the input scale into the first row's state, where its driver
    reads it: the one store a scaled call adds; the driver overwrites it with c)."""
    rows, n = x.shape
    states = np.empty(rows, log_softmax_runtime.STATE_DTYPE)
    floats = states.view(np.float32)
    at = log_softmax_runtime.input_scale_float()
    status = np.empty(rows, np.int32)
    p = bindings.pointer
    xp, yp, sp, tp = p(x), p(y), p(states), p(status)
    if function == "logsumexp":
        algorithm = ("three-pass" if n <= log_softmax_runtime.LOGSUMEXP_THREE_PASS_MAX_ROW
                     else "two-pass")
        plain = log_softmax_runtime._module(algorithm, isa).reduce_function
        scaled = log_softmax_runtime._module(algorithm, isa, scaled=True).reduce_function
        stride = x.strides[0]

        def scaled_call():
            floats[at] = SCALE
            return scaled(xp, n, rows, stride, sp, tp)
        return {"kernel": LoopTimed(lambda: plain(xp, n, rows, stride, sp, tp)),
                "kernel scaled": LoopTimed(scaled_call)}
    algorithm = log_softmax_runtime._choose("auto", n, isa)
    plain = log_softmax_runtime._rows_module(algorithm, isa, y.nbytes, n * 4).rows_function
    scaled = log_softmax_runtime._rows_module(algorithm, isa, y.nbytes, n * 4,
                                              scaled=True).rows_function
    strides = log_softmax_runtime._stride_pair(x.strides[0], y.strides[0])

    def scaled_rows():
        floats[at] = SCALE
        return scaled(xp, yp, n, rows, strides, sp)
    return {"kernel": LoopTimed(lambda: plain(xp, yp, n, rows, strides, sp)),
            "kernel scaled": LoopTimed(scaled_rows)}


def candidates(function: str, x: np.ndarray, y: np.ndarray, isa: str) -> dict:
    if function == "softmax":
        softmax = softjit.softmax
        return {
            "softmax(x)": LoopTimed(lambda: softmax(x, isa=isa, out=y)),
            "softmax(x, scale=s)": LoopTimed(lambda: softmax(x, isa=isa, out=y, scale=SCALE)),
            "softmax(x * s)": LoopTimed(lambda: softmax(x * SCALE, isa=isa, out=y)),
        }
    if function == "log_softmax":
        log_softmax = softjit.log_softmax
        timed = {
            "log_softmax(x)": LoopTimed(lambda: log_softmax(x, isa=isa, out=y)),
            "log_softmax(x, scale=s)": LoopTimed(lambda: log_softmax(x, isa=isa, out=y,
                                                                     scale=SCALE)),
            "host products": LoopTimed(lambda: host_products_log_softmax(x, y, isa)),
        }
    else:
        logsumexp = softjit.logsumexp
        timed = {
            "logsumexp(x)": LoopTimed(lambda: logsumexp(x, isa=isa)),
            "logsumexp(x, scale=s)": LoopTimed(lambda: logsumexp(x, isa=isa, scale=SCALE)),
            "host products": LoopTimed(lambda: host_products_logsumexp(x, isa)),
        }
    return {**timed, **kernel_calls(function, x, y, isa)}


def _check(function: str, x: np.ndarray, isa: str) -> None:
    """The scaled call gives the bits of the call on the products (what every figure times)."""
    call = getattr(softjit, function)
    assert np.array_equal(call(x, isa=isa, scale=SCALE), call(_products(x), isa=isa),
                          equal_nan=True), function


def run(sizes, rows: int, repeats: int, isa: str, functions=FUNCTIONS) -> list:
    """[(n, function, {candidate: (median wall ns, median CPU ns)}, rounds, out of cache)] for
    each row length n and function."""
    isa = resolve_isa(isa)
    llc = last_level_cache_bytes()
    flush = Flusher(llc)
    results = []
    rng = np.random.default_rng(0)
    for n in sizes:
        x = rng.standard_normal((rows, n)).astype(np.float32)
        y = np.empty_like(x)
        for function in functions:
            timed = candidates(function, x, y, isa)
            for t in timed.values():
                t.run(1)  # load the kernels before timing
            _check(function, x, isa)
            out_of_cache = 2 * x.nbytes > llc
            samples, rounds = measure(timed, out_of_cache=out_of_cache, flush=flush,
                                      repeats=repeats, budget_s=90.0, sample_ms=2.0)
            results.append((n, function, {key: (s.median, s.median_cpu)
                                          for key, s in samples.items()}, rounds, out_of_cache))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softjit.bench.scale_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e3,1e5,67108864",
                        help="row lengths, comma-separated (default: 1e3,1e5,67108864)")
    parser.add_argument("--rows", type=int, default=1, help="rows per call (default 1)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS),
                        help=f"comma-separated, of {', '.join(FUNCTIONS)} (default: all)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--isa", default="auto")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    functions = tuple(args.functions.split(","))
    unknown = [f for f in functions if f not in FUNCTIONS]
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; valid: {', '.join(FUNCTIONS)}")
    for n, function, medians, rounds, cold in run(sizes, args.rows, args.repeats, args.isa,
                                                  functions):
        where = "out of cache" if cold else "in cache"
        for clock, index in (("wall", 0), ("cpu", 1)):
            base = next(iter(medians.values()))[index]
            kernel = medians.get("kernel", (None, None))[index]
            parts = ", ".join(
                f"{key} {ns[index] / 1e3:.2f} us "
                f"({ns[index] / (kernel if key.startswith('kernel') else base):.3f}x)"
                for key, ns in medians.items())
            print(f"{function} {args.rows} x {n} ({where}, {clock} median of {rounds}): {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
