"""SiLU (swish), y = x * sigmoid(x) = x / (1 + exp(-x)), float32, built on the Exp stage.

    python examples/silu.py

Exp is the same exp approximation as softjit.exp (within 2 ULP); the division is correctly
rounded, so y is within about 3 ULP of x / (1 + exp(-x)) computed in float64. For x below -89
exp(-x) is +inf and y is -0; NaN stays NaN.
"""
import numpy as np

import softjit
from softjit import In, Out, Size
from softjit.codegen import Exp, for_each_vector


def silu(f, unroll=None):
    """y[i] = x[i] / (1 + exp(-x[i])) for i < n."""
    x, y, n = f.args
    # exp needs three registers a vector: 2 vectors a step fit AVX2's 16 registers, 4 AVX-512's 32
    unroll = unroll or (4 if f.target.vector_registers > 16 else 2)
    exp = Exp(f)
    one = f.constant_register("one", 1.0)

    def step(tile):
        xs, ts = f.vecs("x", tile.count), f.vecs("t", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        for t, v in zip(ts, xs):
            f.vxorps(t, v, f.constant("sign", -0.0))  # t = -x (the sign bit flipped)
        es = exp(ts)
        for e in es:
            f.vaddps(e, e, one)  # 1 + exp(-x)
        for v, e in zip(xs, es):
            f.vdivps(v, v, e)
        for i, v in enumerate(xs):
            tile.store(y, i, v)

    for_each_vector(f, n, [x, y], unroll, step, "silu")
    f.ret()


kernel = softjit.jit(silu, args=[In("x", "float32", "n"), Out("y", "float32", "n"), Size("n")])


def reference(x):
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return x64 / (1.0 + np.exp(-x64))


def check(sizes=(0, 1, 5, 16, 37, 300), emulate=("avx2", "avx512f"), native=True):
    """Within 4 ULP of float64 SiLU where the result is a normal float32 (and exact specials)."""
    rng = np.random.default_rng(1)
    for n in sizes:
        x = (rng.standard_normal(n) * 6).astype(np.float32)
        x[:min(n, 4)] = np.array([0.0, -100.0, 100.0, np.nan], np.float32)[:min(n, 4)]
        ref = reference(x)
        runs = [("emulated " + isa, kernel.emulate(x, isa=isa)) for isa in emulate]
        if native and softjit.host_isas():
            runs.append(("native", kernel(x)))
        for how, got in runs:
            nan = np.isnan(x)
            assert np.isnan(got[nan]).all(), (n, how)
            normal = ~nan & (np.abs(ref) >= 2.0 ** -126)
            ulp = 2.0 ** (np.floor(np.log2(np.abs(ref[normal]))) - 23)
            err = np.abs(got[normal] - ref[normal]) / ulp
            assert err.size == 0 or err.max() <= 4, (n, how, err.max())
            tiny = ~nan & ~normal  # exp(-x) overflows below x = -89: y is -0, exact y is tiny
            assert (np.abs(got[tiny] - ref[tiny]) <= 2.0 ** -126).all(), (n, how)
    return len(sizes)


if __name__ == "__main__":
    print(f"silu: {check()} sizes agree with numpy (native and emulated)")
