"""IEEE-754 lane arithmetic as x86 computes it with the default MXCSR (round to nearest even,
no FTZ/DAZ, exceptions masked), on unsigned bit-pattern arrays (uint32 for float32 lanes,
uint64 for float64 lanes).

float32/float64 add, sub, mul and div are numpy's (correctly rounded); what numpy does not
know is x86's NaN results, rewritten here: the first NaN source in operand order, quieted,
or the "real indefinite" default NaN for an invalid operation. Max/min return the second
source on NaN and on equal operands (+0 vs -0 included). VSCALEFPS is a float64 ldexp
(exact for float32 inputs with the exponent clamped to +-400) rounded once to float32, with
the SDM's special cases for infinite and NaN operands. Fused multiply-add is in fma.py.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.errors import EmulationError

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF

UINT = {16: np.uint16, 32: np.uint32, 64: np.uint64}
FLOAT = {32: np.float32, 64: np.float64}
INT = {32: np.int32, 64: np.int64}
QUIET_BIT = {32: np.uint32(0x0040_0000), 64: np.uint64(0x0008_0000_0000_0000)}
DEFAULT_NAN = {32: np.uint32(0xFFC0_0000), 64: np.uint64(0xFFF8_0000_0000_0000)}
ALL_ONES = {32: np.uint32(M32), 64: np.uint64(M64)}
ZERO = {16: np.uint16(0), 32: np.uint32(0), 64: np.uint64(0)}
INF_BITS = {32: np.uint32(0x7F80_0000), 64: np.uint64(0x7FF0_0000_0000_0000)}

count = np.count_nonzero  # much cheaper than ndarray.any() on 16 lanes


def check_float_environment() -> None:
    """The emulator's float32 arithmetic is numpy's: it must not flush subnormals (MXCSR
    FTZ/DAZ set in this process by some other library)."""
    tiny = np.array([1e-38], np.float32)
    if (tiny * np.float32(0.01))[0] == 0 or (np.array([1e-45], np.float32) + 0)[0] == 0:
        raise EmulationError("this process flushes subnormal floats (MXCSR FTZ/DAZ set): the "
                             "emulator's IEEE arithmetic would be wrong")


def nanfix(r, srcs, eb):
    """x86 NaN results: the first NaN among srcs (operand order), quieted; else the default
    NaN (real indefinite) for an invalid operation. r is a fresh, writable result."""
    f = FLOAT[eb]
    bad = np.isnan(r.view(f))
    if not count(bad):
        return r
    out = np.full(r.shape, DEFAULT_NAN[eb], dtype=r.dtype)
    q = QUIET_BIT[eb]
    for s in reversed(srcs):
        np.copyto(out, s | q, where=np.isnan(s.view(f)))
    np.copyto(r, out, where=bad)
    return r


def quiet_nans(r, src, eb):
    """NaN lanes of src come out as src quieted (rounding, conversions to the same width)."""
    nan = np.isnan(src.view(FLOAT[eb]))
    if count(nan):
        r = np.array(r, copy=True)
        np.copyto(r, src | QUIET_BIT[eb], where=nan)
    return r


def binary(ufunc, eb):
    """vaddps and friends: ufunc on eb-bit float lanes, x86 NaN rules."""
    f = FLOAT[eb]

    def compute(a, b):
        r = ufunc(a.view(f), b.view(f)).view(a.dtype)
        return nanfix(r, (a, b), eb)
    return compute


def maximum(eb):
    f = FLOAT[eb]

    def compute(a, b):  # (a > b) ? a : b; NaN or equal (incl. +-0): b
        return np.where(a.view(f) > b.view(f), a, b)
    return compute


def minimum(eb):
    f = FLOAT[eb]

    def compute(a, b):
        return np.where(a.view(f) < b.view(f), a, b)
    return compute


def scalef(eb):
    """vscalefps/pd: a * 2^floor(b), one rounding."""
    f = FLOAT[eb]
    limit = 400.0 if eb == 32 else 2200.0

    def compute(a, b):
        af, bf = a.view(f), b.view(f)
        # floor(b) clamped (NaN becomes the limit: fmin/fmax skip NaN; fixed below)
        k = np.fmax(np.fmin(np.floor(bf), limit), -limit).astype(np.int32)
        # a * 2^k is exact in float64 for float32 a (|k| <= 400); then one rounding to the width
        if eb == 32:
            r = np.ldexp(af.astype(np.float64), k).astype(f).view(a.dtype)
        else:
            r = np.ldexp(af, k).view(a.dtype)
        if not count(~np.isfinite(bf)):
            return nanfix(r, (a, b), eb)
        # b = +-inf: 0*inf, inf*0 are invalid; NaN in b or a
        invalid = ((af == 0) & (bf == np.inf)) | (np.isinf(af) & (bf == -np.inf))
        invalid |= np.isnan(af) | np.isnan(bf)
        np.copyto(r, DEFAULT_NAN[eb], where=invalid)
        r = nanfix(r, (a, b), eb)
        # the SDM's table: a quiet NaN scaled by +inf is +inf, by -inf +0 (a signalling NaN
        # stays QNaN(a)); measured on hardware, see test_single_evex_instructions_match_the_cpu
        quiet_a = np.isnan(af) & ((a & QUIET_BIT[eb]) != 0) & np.isinf(bf)
        if count(quiet_a):
            np.copyto(r, np.where(bf > 0, INF_BITS[eb], ZERO[eb]), where=quiet_a)
        return r
    return compute


_ROUNDERS = {0: np.rint, 1: np.floor, 2: np.ceil, 3: np.trunc}


def round_imm(eb, imm, scaled):
    """vrndscaleps (scaled: imm[7:4] = M) and vroundps: imm[1:0] mode unless imm[2] (MXCSR:
    nearest even); imm[3] only suppresses the precision exception."""
    f = FLOAT[eb]
    mode = 0 if imm & 4 else imm & 3
    rounder = _ROUNDERS[mode]
    m = (imm >> 4) & 15 if scaled else 0

    def compute(a):
        x = a.view(f).astype(np.float64)
        if m:
            x = rounder(x * 2.0 ** m) / 2.0 ** m  # exact scalings
        else:
            x = rounder(x)
        r = x.astype(f).view(a.dtype)
        return quiet_nans(r, a, eb)
    return compute


# vcmpps predicates 0..15 (16..31 differ only in signalling, which is masked)
COMPARE = {
    0: lambda a, b: a == b,
    1: lambda a, b: a < b,
    2: lambda a, b: a <= b,
    3: lambda a, b: np.isnan(a) | np.isnan(b),
    4: lambda a, b: a != b,
    5: lambda a, b: ~(a < b),
    6: lambda a, b: ~(a <= b),
    7: lambda a, b: ~(np.isnan(a) | np.isnan(b)),
    8: lambda a, b: (a == b) | np.isnan(a) | np.isnan(b),
    9: lambda a, b: ~(a >= b),
    10: lambda a, b: ~(a > b),
    11: lambda a, b: np.zeros(np.broadcast_shapes(a.shape, b.shape), bool),
    12: lambda a, b: (a != b) & ~(np.isnan(a) | np.isnan(b)),
    13: lambda a, b: a >= b,
    14: lambda a, b: a > b,
    15: lambda a, b: np.ones(np.broadcast_shapes(a.shape, b.shape), bool),
}


def cvtps2pd(a):
    """float32 -> float64, exact; a NaN keeps its sign and payload, quieted."""
    d = a.view(np.float32).astype(np.float64).view(np.uint64)
    nan = np.isnan(a.view(np.float32))
    if count(nan):
        w = a.astype(np.uint64)
        q = ((w & np.uint64(0x8000_0000)) << np.uint64(32)) | np.uint64(0x7FF8_0000_0000_0000) \
            | ((w & np.uint64(0x3F_FFFF)) << np.uint64(29))
        d = np.where(nan, q, d)
    return d


def cvtpd2ps(a):
    """float64 -> float32 rounded to nearest even; a NaN keeps its sign and top payload bits,
    quieted."""
    r = a.view(np.float64).astype(np.float32).view(np.uint32)
    nan = np.isnan(a.view(np.float64))
    if count(nan):
        q = (((a >> np.uint64(32)) & np.uint64(0x8000_0000)) | np.uint64(0x7FC0_0000)
             | ((a >> np.uint64(29)) & np.uint64(0x3F_FFFF))).astype(np.uint32)
        r = np.where(nan, q, r)
    return r


def cvtps2dq(a):
    """float32 -> int32 rounded to nearest even; out of range and NaN give 0x80000000 (the
    integer indefinite)."""
    x = np.rint(a.view(np.float32).astype(np.float64))
    ok = (x >= -2147483648.0) & (x <= 2147483647.0)
    return np.where(ok, x, -2147483648.0).astype(np.int64).astype(np.int32).view(np.uint32)


def cvtdq2ps(a):
    return a.view(np.int32).astype(np.float32).view(np.uint32)


def bits_to_int(bools) -> int:
    """A bool lane array as an integer bit mask (lane i is bit i)."""
    v = 0
    for i in np.flatnonzero(bools):
        v |= 1 << int(i)
    return v


def cvttps2dq(a):
    """float32 -> int32 truncated toward zero; out of range and NaN give 0x80000000."""
    x = np.trunc(a.view(np.float32).astype(np.float64))
    ok = (x >= -2147483648.0) & (x <= 2147483647.0)
    return np.where(ok, x, -2147483648.0).astype(np.int64).astype(np.int32).view(np.uint32)


def sqrt(a):
    """vsqrtps: correctly rounded (numpy's); a negative non-zero source is invalid (the
    default NaN), -0 gives -0, a NaN source comes out quieted."""
    r = np.sqrt(a.view(np.float32)).view(np.uint32)
    return nanfix(np.array(r), (a,), 32)


# float16 lanes (vcvtph2ps / vcvtps2ph): 1 sign, 5 exponent, 10 fraction bits.
_HALF_NAN_QUIET = np.uint32(0x0200)


def half_to_single(h):
    """uint16 float16 patterns -> uint32 float32 patterns, exactly; a NaN keeps its sign and
    payload (shifted into the top of the float32 fraction) and is quieted."""
    h = np.asarray(h, np.uint16)
    r = h.view(np.float16).astype(np.float32).view(np.uint32)
    nan = (h & 0x7C00) == 0x7C00
    nan &= (h & 0x03FF) != 0
    if count(nan):
        w = h.astype(np.uint32)
        q = ((w & 0x8000) << 16) | np.uint32(0x7FC0_0000) | ((w & 0x03FF) << 13)
        r = np.where(nan, q, r)
    return r


def single_to_half(imm):
    """vcvtps2ph with immediate imm: float32 lanes -> float16 patterns (uint16), rounded per
    imm[1:0] (0 nearest even, 1 down, 2 up, 3 toward zero) unless imm[2] (MXCSR: nearest
    even). Overflow and tiny results round by the same mode (to inf or the largest finite,
    to a subnormal or zero); a NaN keeps its sign and top payload bits, quieted."""
    mode = 0 if imm & 4 else imm & 3

    def compute(a):
        x = a.view(np.float32)
        with np.errstate(all="ignore"):
            r = x.astype(np.float16)  # numpy rounds float32 -> float16 to nearest even
            if mode:
                r64, x64 = r.astype(np.float64), x.astype(np.float64)
                if mode == 1:
                    step = r64 > x64
                    toward = -np.inf
                elif mode == 2:
                    step = r64 < x64
                    toward = np.inf
                else:
                    step = np.abs(r64) > np.abs(x64)
                    toward = np.float16(0)
                step &= ~np.isnan(x)
                if count(step):
                    r = np.where(step, np.nextafter(r, np.float16(toward)).astype(np.float16), r)
        h = r.view(np.uint16)
        nan = np.isnan(x)
        if count(nan):
            q = (((a >> 16) & 0x8000) | 0x7C00 | _HALF_NAN_QUIET | ((a >> 13) & 0x03FF))
            h = np.where(nan, q.astype(np.uint16), h)
        return h
    return compute
