"""The p5 exp approximation with the two-constant (rr2) Cody-Waite reduction, for several vectors
at once: each stage is emitted for every vector before the next stage starts, so the unrolled
vectors are independent chains that the CPU overlaps.

    n = round(x * log2e)                   AVX-512: VRNDSCALEPS; AVX2: the magic-bias FMA
    t = x - n*ln2_hi - n*ln2_lo            two FMAs, exact reduction to [-ln2/2, ln2/2]
    p = 1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5))))   Horner, p ~ exp(t)
    exp(x) = p * 2^n                       AVX-512: VSCALEFPS; AVX2: 2^n built in the exponent field

Registers are passed in and reused in place; nothing here allocates memory or touches pointers.
"""
from __future__ import annotations

from softjit.codegen.operands import Mem
from softjit.codegen.stream import Function
from softjit.codegen.kernels import constants as K


class ExpP5:
    """The exp stages on one Function; their constants come from its pool (Function.constant)."""

    def __init__(self, f: Function):
        self.f = f
        self.scalef = f.target.has_scalef  # VRNDSCALEPS rounds n, VSCALEFPS builds p * 2^n

    def round_and_reduce(self, xs: list, ns: list, biased: list | None = None,
                         bias: Mem | None = None) -> None:
        """ns[i] = round(xs[i] * log2e) as floats; xs[i] becomes t = x - n*ln2 (in place).

        AVX2 only: with `biased`, biased[i] keeps n + magic bias, whose low bits hold n + 127,
        so that biased << 23 is 2^n. `bias` replaces the magic bias by another value of the
        same binade (magic - e folds a row exponent e into those bits: 2^(n - e)).
        """
        f = self.f
        f.comment("n = round(x * log2e)")
        if self.scalef:
            for x, n in zip(xs, ns):
                f.vmulps(n, x, f.constant("log2e", K.LOG2E))
            for n in ns:
                f.vrndscaleps(n, n, 0x08)  # round to nearest even, no precision exception
        else:
            held = biased if biased is not None else ns
            magic = bias if bias is not None else f.constant("magic_bias", K.MAGIC_BIAS)
            for x, b in zip(xs, held):
                if bias is None:
                    f.load_constant(b, "magic_bias", K.MAGIC_BIAS)
                else:
                    f.vmovups(b, bias)
                f.vfmadd231ps(b, x, f.constant("log2e", K.LOG2E))
            for n, b in zip(ns, held):
                f.vsubps(n, b, magic)
        f.comment("t = x - n*ln2_hi - n*ln2_lo")
        for x, n in zip(xs, ns):
            f.vfmadd231ps(x, n, f.constant("minus_ln2_hi", K.MINUS_LN2_HI))
        for x, n in zip(xs, ns):
            f.vfmadd231ps(x, n, f.constant("minus_ln2_lo", K.MINUS_LN2_LO))

    COEFFICIENTS = (("c5", K.C5), ("c4", K.C4), ("c3", K.C3), ("c2", K.C2), ("c1", K.C1),
                    ("one", 1.0))

    def polynomial(self, ts: list, ps: list, coefficients: list | None = None) -> None:
        """ps[i] = p(ts[i]) ~ exp(t) on [-ln2/2, ln2/2] (relative error ~9.2e-8).

        coefficients: vector operands holding c5..c0 scaled by a common factor s (then
        ps[i] = s * p(ts[i]) at no extra cost); the pool's constants by default.
        """
        f = self.f
        f.comment("p = 1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5))))"
                  + (", every coefficient pre-scaled" if coefficients else ""))
        if coefficients is None:
            coefficients = [f.constant(name, value) for name, value in self.COEFFICIENTS]
        first, rest = coefficients[0], coefficients[1:]
        for p in ps:
            f.fill_vector(p, first)
        for c in rest:
            for p, t in zip(ps, ts):
                f.vfmadd213ps(p, t, c)
