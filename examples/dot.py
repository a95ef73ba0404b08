"""A dot product: out[0] = sum(x[i] * y[i]), float32, with four accumulators.

    python examples/dot.py          # runs natively and in the emulator, compares with numpy

Each step of the loop multiplies and adds four vectors into four independent accumulators
(vfmadd231ps), so the CPU overlaps four FMA chains; the masked tail loads zeros, which add
nothing. The accumulators are then folded (combine) and their lanes summed (reduce_lanes).
"""
import numpy as np

import softjit
from softjit import In, Out, Size
from softjit.codegen import combine, for_each_vector, ptr, reduce_lanes


def dot(f, accumulators=4):
    """out[0] = sum of x[i] * y[i] for i < n (float32, accumulators lanes-wide partial sums)."""
    x, y, out, n = f.args
    accs = f.vecs("acc", accumulators)
    for a in accs:
        f.vxorps(a, a, a)

    def step(tile):
        xs, ys = f.vecs("x", tile.count), f.vecs("y", tile.count)
        for i in range(tile.count):
            tile.load(xs[i], x, i)
            tile.load(ys[i], y, i)
        for i in range(tile.count):
            f.vfmadd231ps(tile.accumulator(accs, i), xs[i], ys[i])

    for_each_vector(f, n, [x, y], accumulators, step, "dot")
    total = combine(f, accs, "vaddps")
    reduce_lanes(f, total, "vaddps")
    f.vmovss(ptr(out, bits=32), total.xmm)
    f.ret()


kernel = softjit.jit(dot, args=[In("x", "float32", "n"), In("y", "float32", "n"),
                                Out("out", "float32", 1), Size("n")])


def check(sizes=(0, 1, 7, 8, 33, 100, 1000), emulate=("avx2", "avx512f"), native=True):
    """Compare natively (when the host runs it) and emulated against a float64 numpy dot."""
    rng = np.random.default_rng(0)
    for n in sizes:
        x = rng.standard_normal(n).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        exact = np.dot(x.astype(np.float64), y.astype(np.float64))
        bound = 1e-6 * (np.abs(x.astype(np.float64) * y).sum() + 1)  # float32 summation error
        runs = [("emulated " + isa, kernel.emulate(x, y, isa=isa)) for isa in emulate]
        if native and softjit.host_isas():
            runs.append(("native", kernel(x, y)))
        for how, got in runs:
            assert abs(float(got[0]) - exact) <= bound, (n, how, got[0], exact)
    return len(sizes)


if __name__ == "__main__":
    print(f"dot: {check()} sizes agree with numpy (native and emulated)")
