"""What scale= costs: softjit.softmax(x, scale=s) against softjit.softmax(x) and against the
composition it replaces, softjit.softmax(x * s) (a numpy product: one more pass over x and a
temporary array), timed with bench/timing.py's rules (interleaved rounds, medians, cold caches
out of cache).

    taskset -c 1 python -m softjit.bench.scale_cost [--sizes 1e3,1e5,16777216] [--rows 1]
                                                     [--repeats 15] [--isa auto]

Prints one line per size: the median time of each candidate and the ratios to the unscaled call,
by the wall clock and by the thread's CPU time (steadier on a shared machine: it stops while
another process has the core).
"""
from __future__ import annotations

import argparse

import numpy as np

import softjit
from softjit.bench.peers import LoopTimed
from softjit.bench.timing import Flusher, last_level_cache_bytes, measure

SCALE = np.float32(1 / 0.7)


def candidates(x: np.ndarray, y: np.ndarray, isa: str) -> dict:
    softmax = softjit.softmax
    return {
        "softmax(x)": LoopTimed(lambda: softmax(x, isa=isa, out=y)),
        "softmax(x, scale=s)": LoopTimed(lambda: softmax(x, isa=isa, out=y, scale=SCALE)),
        "softmax(x * s)": LoopTimed(lambda: softmax(x * SCALE, isa=isa, out=y)),
    }


def run(sizes, rows: int, repeats: int, isa: str) -> list:
    """[(n, {candidate: (median wall ns, median CPU ns)}, rounds, out of cache)] for each row
    length n."""
    llc = last_level_cache_bytes()
    flush = Flusher(llc)
    results = []
    rng = np.random.default_rng(0)
    for n in sizes:
        x = rng.standard_normal((rows, n)).astype(np.float32)
        y = np.empty_like(x)
        timed = candidates(x, y, isa)
        for t in timed.values():
            t.run(1)  # load the kernels before timing
        assert np.array_equal(softjit.softmax(x, isa=isa, scale=SCALE),
                              softjit.softmax(x * SCALE, isa=isa))
        out_of_cache = 2 * x.nbytes > llc
        samples, rounds = measure(timed, out_of_cache=out_of_cache, flush=flush, repeats=repeats,
                                  budget_s=60.0, sample_ms=2.0)
        results.append((n, {key: (s.median, s.median_cpu) for key, s in samples.items()}, rounds,
                        out_of_cache))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m softjit.bench.scale_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e3,1e5,16777216",
                        help="row lengths, comma-separated (default: 1e3,1e5,16777216)")
    parser.add_argument("--rows", type=int, default=1, help="rows per call (default 1)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--isa", default="auto")
    args = parser.parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    for n, medians, rounds, cold in run(sizes, args.rows, args.repeats, args.isa):
        where = "out of cache" if cold else "in cache"
        for clock, index in (("wall", 0), ("cpu", 1)):
            base = medians["softmax(x)"][index]
            parts = ", ".join(f"{key} {ns[index] / 1e3:.2f} us ({ns[index] / base:.3f}x)"
                              for key, ns in medians.items())
            print(f"{args.rows} x {n} ({where}, {clock} median of {rounds}): {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
