"""Attention's softmax with a scale and an additive bias row: y = softmax(x * scale + bias),
row by row, float32. x and y are (rows, n); bias is one row of n (a mask: 0 where a position
may be attended, -inf where not); scale is fixed when the kernel is built (1/sqrt(head_dim)).

    python examples/scaled_softmax.py

Three passes over each row, as softjit's three-pass-reload softmax:
    1. z = x * scale + bias (one FMA), stored into y; m = max(z)
    2. y = exp(y - m), s = sum(y)
    3. y = y * (1 / s)
Each pass is one for_each_vector loop; the masked tail loads -inf where pass 1 and 2 need a
neutral value (max ignores it, exp(-inf) adds 0). Rows are one count-down loop around them.
A row whose entries are all -inf (every position masked) gives NaN, as numpy does.
"""
import math

import numpy as np

import softjit
from softjit import In, Out, Size
from softjit.codegen import Exp, combine, for_each_vector, ptr, reduce_lanes


def scaled_softmax(f, scale=1.0, unroll=2, accumulators=2):
    """y[r] = softmax(x[r] * scale + bias) for every row r < rows (scale > 0)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive (the masked tail relies on -inf * scale = "
                         f"-inf), not {scale}")
    x, bias, y, rows, n = f.args
    exp = Exp(f)
    minus_inf = f.constant("minus_inf", -math.inf)
    scale_v = f.constant_register("scale", scale)
    one = f.constant_register("one", 1.0)
    maxes, sums = f.vecs("max", accumulators), f.vecs("sum", accumulators)
    count, xp, bp, yp = f.gp("count"), f.gp("xp"), f.gp("bp"), f.gp("yp")

    def pass1(tile):  # z = x * scale + bias -> y; max
        zs, bs = f.vecs("z", tile.count), f.vecs("b", tile.count)
        for i in range(tile.count):
            tile.load(zs[i], xp, i, fill=minus_inf)
            tile.load(bs[i], bp, i, fill=minus_inf)
        for z, b in zip(zs, bs):
            f.vfmadd213ps(z, scale_v, b)  # z = z * scale + b
        for i, z in enumerate(zs):
            acc = tile.accumulator(maxes, i)
            f.vmaxps(acc, acc, z)
            tile.store(yp, i, z)

    def pass2(tile):  # y = exp(y - m); sum
        zs = f.vecs("z", tile.count)
        for i, z in enumerate(zs):
            tile.load(z, yp, i, fill=minus_inf)
            f.vsubps(z, z, m)
        es = exp(zs)
        for i, e in enumerate(es):
            acc = tile.accumulator(sums, i)
            f.vaddps(acc, acc, e)
            tile.store(yp, i, e)

    def pass3(tile):  # y = y * r
        vs = f.vecs("v", tile.count)
        for i, v in enumerate(vs):
            tile.load(v, yp, i)
            f.vmulps(v, v, r)
            tile.store(yp, i, v)

    m, r = f.vec("m"), f.vec("r")
    with f.count_down_loop(rows, 1, "rows"):
        f.comment("pass 1: z = x * scale + bias into y, m = max(z)")
        for acc in maxes:
            f.fill_vector(acc, minus_inf)
        f.mov(count, n)
        f.mov(xp, x)
        f.mov(bp, bias)
        f.mov(yp, y)
        for_each_vector(f, count, [xp, bp, yp], unroll, pass1, "scale_bias")
        top = combine(f, maxes, "vmaxps")
        reduce_lanes(f, top, "vmaxps")
        f.vbroadcastss(m, top.xmm)
        f.comment("pass 2: y = exp(y - m), s = sum(y)")
        for acc in sums:
            f.vxorps(acc, acc, acc)
        f.mov(count, n)
        f.mov(yp, y)
        for_each_vector(f, count, [yp], unroll, pass2, "exp")
        total = combine(f, sums, "vaddps")
        reduce_lanes(f, total, "vaddps")
        f.vbroadcastss(r, total.xmm)
        f.vdivps(r, one, r)
        f.comment("pass 3: y = y / s")
        f.mov(count, n)
        f.mov(yp, y)
        for_each_vector(f, count, [yp], unroll, pass3, "normalise")
        f.comment("next row")
        f.lea(x, ptr(x, 0, n, 4))
        f.lea(y, ptr(y, 0, n, 4))
    f.ret()


def kernel_for(head_dim: int):
    """The kernel with scale = 1/sqrt(head_dim), built (and cached) on first call."""
    return softjit.jit(scaled_softmax, name=f"scaled_softmax_d{head_dim}",
                       args=[In("x", "float32", "rows", "n"), In("bias", "float32", "n"),
                             Out("y", "float32", "rows", "n"), Size("rows"), Size("n")],
                       scale=1.0 / math.sqrt(head_dim))


def reference(x, bias, scale):
    z = x.astype(np.float64) * scale + bias
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check(shapes=((1, 1), (3, 7), (2, 16), (4, 33), (2, 100), (1, 1000)), head_dim=64,
          emulate=("avx2", "avx512f"), native=True):
    """Relative error below 1e-5 against float64 numpy, masked positions exactly 0."""
    kernel = kernel_for(head_dim)
    scale = 1.0 / math.sqrt(head_dim)
    rng = np.random.default_rng(2)
    for rows, n in shapes:
        x = (rng.standard_normal((rows, n)) * 8).astype(np.float32)
        bias = np.where(rng.random(n) < 0.2, -np.inf, rng.standard_normal(n)).astype(np.float32)
        bias[0] = 0.0  # at least one position per row is attended
        ref = reference(x, bias, scale)
        runs = [("emulated " + isa, kernel.emulate(x, bias, isa=isa)) for isa in emulate]
        if native and softjit.host_isas():
            runs.append(("native", kernel(x, bias)))
        for how, y in runs:
            assert y.shape == (rows, n)
            assert np.all(y[:, bias == -np.inf] == 0), (rows, n, how)
            assert np.allclose(y, ref, rtol=1e-5, atol=1e-7), (rows, n, how,
                                                               np.abs(y - ref).max())
            assert np.allclose(y.sum(axis=1), 1, rtol=1e-5)
    return len(shapes)


if __name__ == "__main__":
    print(f"scaled softmax: {check()} shapes agree with numpy (native and emulated)")
