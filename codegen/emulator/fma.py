"""Fused multiply-add with one rounding, on bit-pattern lanes.

float32: the exact product a*b (float64) is added to c in float64; RN64(p + c) rounds to the
same float32 as the exact sum unless it sits exactly on a float32 midpoint or below 2^-126.
Only then is the sum redone rounded to odd (the RN sum stepped one ulp toward the TwoSum error
term when inexact and even): rounding to odd at 53 >= 24 + 2 bits makes the second rounding,
to float32, innocuous.

float64 (used only in accumulation folds): exactly with fractions.Fraction per lane, rounded
once by CPython's correctly rounded int/int division; non-finite inputs and exact zero
results take numpy's a*b + c, which is exact in those cases.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from softjit.codegen.emulator.ieee import count, nanfix

_LOW29, _MID29 = np.uint64((1 << 29) - 1), np.uint64(1 << 28)
_EXP64 = np.uint64(0x7FF0_0000_0000_0000)
_TINY32 = np.uint64((1023 - 126) << 52)  # |s| < 2^-126 (zeros included)

# vfmadd{order}: operands (dst, src2, src3) -> a*b + c with (a, b, c) taken from them as
ORDERS = {"132": (0, 2, 1), "213": (1, 0, 2), "231": (1, 2, 0)}


def _round_to_odd_sum(p, c):
    """p + c (float64 arrays) rounded to odd: exact when representable, else the neighbour of
    the exact sum whose last significand bit is 1. Valid while the TwoSum error is exact (no
    overflow; the inputs here are far from the subnormal range)."""
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    fix = (err != 0) & ((s.view(np.uint64) & np.uint64(1)) == 0) & np.isfinite(s)
    if count(fix):
        s = np.where(fix, np.nextafter(s, np.copysign(np.inf, err)), s)
    return s


def fma32(x, y, z, negate):
    """round_float32(+-(x*y) + z) with one rounding; x, y, z uint32 bit arrays.

    The product is exact in float64. s = RN64(p + z) then rounds to the same float32 as the
    exact sum unless s is exactly a float32 rounding boundary (a midpoint: no float64 number
    lies strictly between the exact sum and s, and every float32 midpoint is one), or lies in
    the float32 subnormal range (other midpoints). Only then is the sum redone rounded to odd."""
    p = x.view(np.float32).astype(np.float64)
    p *= y.view(np.float32)
    if negate:
        np.negative(p, out=p)
    c = z.view(np.float32).astype(np.float64)
    s = p + c
    sb = s.view(np.uint64)
    suspect = (sb & _LOW29) == _MID29
    suspect |= (sb & _EXP64) < _TINY32
    if count(suspect):
        s = _round_to_odd_sum(p, c)
    return s.astype(np.float32).view(np.uint32)


def fma64(x, y, z, negate):
    """round_float64(+-(x*y) + z) exactly, lane by lane (Fraction, one correct rounding)."""
    xf, yf, zf = (np.broadcast_to(v.view(np.float64), np.broadcast_shapes(x.shape, y.shape,
                                                                           z.shape))
                  for v in (x, y, z))
    p = xf * yf
    out = np.array((-p if negate else p) + zf, dtype=np.float64)
    finite = np.isfinite(xf) & np.isfinite(yf) & np.isfinite(zf)
    for i in np.flatnonzero(finite):
        exact = Fraction(float(xf[i])) * Fraction(float(yf[i]))
        if negate:
            exact = -exact
        exact += Fraction(float(zf[i]))
        if exact == 0:
            continue  # numpy's value has the IEEE sign of an exact zero
        try:
            out[i] = float(exact)
        except OverflowError:
            out[i] = np.inf if exact > 0 else -np.inf
    return out.view(np.uint64)


_SIGN = {32: np.uint32(0x8000_0000), 64: np.uint64(0x8000_0000_0000_0000)}


def fma(eb, order, negate, subtract=False):
    """vf[n]madd{order} / vf[n]msub{order}: operands (dst, src2, src3) -> +-(a*b) +- c with,
    per order, 132: (dst, src3, src2), 213: (src2, dst, src3), 231: (src2, src3, dst).
    negate: -(a*b) (vfnm*); subtract: - c (vf*msub), computed as + (-c), which IEEE makes the
    same operation (signed zeros included). A NaN result is the first NaN of (a, b, c), quieted,
    sign kept (neither negation touches it): measured on hardware, see
    test_single_instructions_match_the_cpu and tests/codegen/test_instruction_forms.py."""
    core = fma32 if eb == 32 else fma64
    roles = ORDERS[order]
    sign = _SIGN[eb]

    def compute(d, s2, s3):
        ops = (d, s2, s3)
        a, b, c = (ops[i] for i in roles)
        addend = c ^ sign if subtract else c
        return nanfix(core(a, b, addend, negate), (a, b, c), eb)
    return compute
