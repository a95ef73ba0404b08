"""Building blocks for kernels written with softjit.codegen: the exp of whole registers, and
reductions (accumulators into one register, lanes into lane 0).

They emit instructions into a Function and allocate nothing but virtual registers; the loop
and tail come from for_each_vector (codegen/kernels/loops.py).
"""
from __future__ import annotations

from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.exp import ExpP5
from softjit.codegen.kernels.reduce import horizontal, tree
from softjit.codegen.operands import Register
from softjit.codegen.stream import Function


class Exp:
    """exp(x) for float32 vectors, as the built-in vexp kernel computes it: within 2 ULP where
    the result is a normal float, +inf above 88.7228, +0 below -103.97, NaN stays NaN.

    Create it once per Function, before the loop (it loads its two clamping constants into
    registers), then call it on a list of registers inside the loop body:

        exp = Exp(f)
        def step(tile):
            xs = f.vecs("x", tile.count)
            ...                         # load xs
            ys = exp(xs)                # ys[i] = exp(xs[i]); xs are clobbered
            ...                         # store ys

    The vectors of one call are independent chains: each stage is emitted for all of them before
    the next, so the CPU overlaps them (unroll by passing several).
    """

    def __init__(self, f: Function):
        self.f = f
        self._stages = ExpP5(f)
        f.comment("exp: x is clamped to [-104, 89] (exp rounds to 0 below, to +inf above)")
        self._x_min = f.constant_register("exp_x_min", K.EXP_X_MIN)
        self._x_max = f.constant_register("exp_x_max", K.EXP_X_MAX)

    def __call__(self, xs: list) -> list:
        """Registers holding exp(xs[i]); the registers of xs are used as scratch."""
        f = self.f
        ns, ps = f.vecs("exp_n", len(xs)), f.vecs("exp_p", len(xs))
        for v in xs:
            f.vmaxps(v, self._x_min, v)  # the constant first: VMAXPS returns its second source on NaN
        for v in xs:
            f.vminps(v, self._x_max, v)
        self._stages.round_and_reduce(xs, ns)
        self._stages.polynomial(xs, ps)
        if f.target.has_scalef:
            f.comment("exp = p * 2^n (VSCALEFPS rounds subnormal results once)")
            for p, n in zip(ps, ns):
                f.vscalefps(p, p, n)
        else:
            # 2^n built in the exponent field, in two factors so that subnormal results round
            # once: a = clamp(n, -100, 127), b = n - a (the same steps as the vexp kernel; a test
            # checks the two agree bit for bit)
            f.comment("exp = (p * 2^a) * 2^b with a = clamp(n, -100, 127), b = n - a")
            for a, n in zip(xs, ns):
                f.vmaxps(a, n, f.constant("minus_100", -100.0))
            for a in xs:
                f.vminps(a, a, f.constant("plus_127", 127.0))
            for n, a in zip(ns, xs):
                f.vsubps(n, n, a)
            for s in xs + ns:
                f.vaddps(s, s, f.constant("magic_bias", K.MAGIC_BIAS))
            for s in xs + ns:
                f.vpslld(s, s, 23)
            for p, a in zip(ps, xs):
                f.vmulps(p, p, a)
            for p, n in zip(ps, ns):
                f.vmulps(p, p, n)
        return ps


def combine(f: Function, accumulators: list, mnemonic: str = "vaddps") -> Register:
    """Fold accumulators pairwise with `mnemonic` (vaddps, vmaxps, vminps, ...) into one of
    them, which is returned: acc0 = op(acc0, acc1), acc2 = op(acc2, acc3), ... until one is
    left (a tree: log2(K) dependent steps)."""
    return tree(f, accumulators, lambda d, a, b: f.emit(mnemonic, d, a, b))


def reduce_lanes(f: Function, v: Register, mnemonic: str = "vaddps") -> None:
    """Fold the lanes of v with `mnemonic` into lane 0 of v.xmm (read it with vmovss).

    Lanes combine in a fixed tree (halves, then quarters, ...), so a sum's rounding is
    deterministic but not the left-to-right order of numpy.sum."""
    horizontal(f, v, lambda d, a, b: f.emit(mnemonic, d, a, b))
