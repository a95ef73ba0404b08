"""Named constants of the exp approximation and the softmax kernels (see docs/algorithms.md).

Written as float32 hex floats so that the value in the code is the value in the kernel, bit for bit.
"""
from __future__ import annotations

import struct


def f32(hex_float: str) -> float:
    """The float32 nearest a hex-float literal, checked to be exactly representable."""
    value = float.fromhex(hex_float)
    rounded = struct.unpack("<f", struct.pack("<f", value))[0]
    if rounded != value:
        raise ValueError(f"{hex_float} is not a float32")
    return rounded


LOG2E = f32("0x1.715476p+0")
MINUS_LN2_HI = f32("-0x1.62E43p-1")
MINUS_LN2_LO = f32("0x1.05C61p-29")
LN2 = f32("0x1.62E430p-1")  # ln 2 rounded to float32
C1 = f32("0x1.FFFFF6p-1")
C2 = f32("0x1.FFFDC6p-2")
C3 = f32("0x1.555A80p-3")
C4 = f32("0x1.573A1Ap-5")
C5 = f32("0x1.0F9F9Cp-7")
MAGIC_BIAS = f32("0x1.8000FEp23")  # 1.5*2^23 + 127: fma(x, log2e, bias) rounds n, bits<<23 = 2^n
# 1.5*2^23 + 254: the low bits hold m = n + 254, split into two float exponents (exp.py)
MAGIC_BIAS_SPLIT = f32("0x1.8001FCp23")

# vexp clamps its input to [EXP_X_MIN, EXP_X_MAX]: below, exp rounds to +0; above, to +inf.
# -104 < zero cutoff (-103.97) so p*2^-150 < 2^-150 rounds to 0; 89 > overflow cutoff (88.72).
EXP_X_MIN = -104.0
EXP_X_MAX = 89.0

# Two-pass softmax keeps exp(x) as m*2^n with n a float. The Cody-Waite reduction is exact only
# while n = round(x*log2e) is within a few units of the true value, so x is clamped into
# [-TWO_PASS_X_LIMIT, TWO_PASS_X_LIMIT]; a row whose extended-exponent sum lands near either
# clamp (or is NaN) is reported and recomputed by the three-pass algorithm, which handles every
# finite magnitude. Clamped elements of other rows are scaled by 2^-200 or less: exactly 0.
TWO_PASS_X_LIMIT = 2.0 ** 20
TWO_PASS_E_HIGH = float(int(TWO_PASS_X_LIMIT * LOG2E) - 2)
TWO_PASS_E_LOW = float(-int(TWO_PASS_X_LIMIT * LOG2E) + 200)
# Accumulator exponents start here: finite, so that rescaling never computes inf - inf.
EXPONENT_SENTINEL = -(2.0 ** 127)

NEG_INF = float("-inf")
