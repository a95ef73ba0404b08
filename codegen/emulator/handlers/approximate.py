"""Approximate reciprocals and reciprocal square roots: vrcpps, vrsqrtps (relative error at
most 1.5 * 2^-12) and vrcp14ps, vrsqrt14ps (at most 2^-14).

The architecture fixes only that bound: the bits are each CPU's own (AMD Zen 4 returns
0x3F7FF000 for vrcpps(1.0), 1 - 2^-12, where the exact answer is 1.0). The emulator does not
model one vendor's tables. It computes the exact function in float64 rounded once to float32,
which is deterministic, within every bound, and what a kernel's accuracy argument should
assume anyway; so an emulated result differs from the hardware's by at most the bound (plus
half an ulp). What the SDM does fix is reproduced bit for bit and checked against the CPU
(tests/codegen/test_instruction_forms.py): +-0 -> +-inf, +-inf -> +-0 (vrsqrt: -inf and any
negative non-zero source -> the default NaN, -0 -> -inf), NaN sources quieted, and the legacy
forms' treatment of subnormals: vrcpps and vrsqrtps read a subnormal source as zero (+-inf out)
and vrcpps flushes a result below 2^-126 to zero; the AVX-512 forms read subnormals as they
are and return subnormal results.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import DEFAULT_NAN, count, nanfix

#: The architectural relative-error bounds, by mnemonic.
RELATIVE_ERROR_BOUND = {"vrcpps": 1.5 * 2.0 ** -12, "vrsqrtps": 1.5 * 2.0 ** -12,
                        "vrcp14ps": 2.0 ** -14, "vrsqrt14ps": 2.0 ** -14}

_MIN_NORMAL = 2.0 ** -126
_SIGN = np.uint32(0x8000_0000)
_INF = np.uint32(0x7F80_0000)


def _subnormal(x):
    return (x != 0) & (np.abs(x) < _MIN_NORMAL)


def reciprocal(legacy: bool):
    def compute(a):
        x = a.view(np.float32).astype(np.float64)
        with np.errstate(all="ignore"):
            r = (1.0 / x).astype(np.float32).view(np.uint32)
        if legacy:
            sign = a & _SIGN
            tiny = np.abs(r.view(np.float32)) < _MIN_NORMAL
            r = np.where(tiny & np.isfinite(x), sign, r)       # tiny results flush to +-0
            r = np.where(_subnormal(x), sign | _INF, r)         # subnormal sources read as 0
        return nanfix(np.array(r, np.uint32), (a,), 32)
    return compute


def reciprocal_sqrt(legacy: bool):
    def compute(a):
        x = a.view(np.float32).astype(np.float64)
        with np.errstate(all="ignore"):
            r = (1.0 / np.sqrt(x)).astype(np.float32).view(np.uint32)
        r = np.where(x == 0, (a & _SIGN) | _INF, r)             # +-0 -> +-inf
        r = np.where(x < 0, DEFAULT_NAN[32], r)                 # -inf and negatives: invalid
        if legacy:
            sub = _subnormal(x)
            if count(sub):
                r = np.where(sub, (a & _SIGN) | _INF, r)        # subnormal sources read as 0
        return nanfix(np.array(r, np.uint32), (a,), 32)
    return compute


handles("vrcpps")(lambda dec, ins: dec.elementwise(ins, 32, 1, reciprocal(True), vex_only=True))
handles("vrsqrtps")(lambda dec, ins: dec.elementwise(ins, 32, 1, reciprocal_sqrt(True),
                                                     vex_only=True))
handles("vrcp14ps")(lambda dec, ins: dec.elementwise(ins, 32, 1, reciprocal(False)))
handles("vrsqrt14ps")(lambda dec, ins: dec.elementwise(ins, 32, 1, reciprocal_sqrt(False)))
