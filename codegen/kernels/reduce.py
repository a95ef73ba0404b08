"""Reductions: combining accumulators (a tree) and then lanes (horizontal), for max and sums.

Lane reductions leave the result in every lane of an xmm view (lane 0 is what callers read).
On AVX-512 only EVEX-encodable shuffles are used, so any of the 32 registers may take part.
"""
from __future__ import annotations

from softjit.codegen.operands import Masked, Register
from softjit.codegen.stream import Function

UNORDERED = 3  # vcmpps predicate: true where either operand is NaN


def tree(f: Function, accumulators: list, combine) -> Register:
    """combine(dst, a, b) pairwise until one accumulator is left; returns it."""
    accs = list(accumulators)
    while len(accs) > 1:
        merged = []
        for i in range(0, len(accs) - 1, 2):
            combine(accs[i], accs[i], accs[i + 1])
            merged.append(accs[i])
        if len(accs) % 2:
            merged.append(accs[-1])
        accs = merged
    return accs[0]


def nan_sticky_max(f: Function, dst: Register, a: Register, b: Register, width: int | None = None) -> None:
    """dst = max(a, b), NaN where either lane is NaN (VMAXPS alone returns b for any NaN)."""
    bits = width or dst.bits
    d, av, bv = dst.view(bits), a.view(bits), b.view(bits)
    if f.target.has_masks:
        nan = f.mask("nan_lanes")
        f.vcmpps(nan, bv, bv, UNORDERED)
        f.vmaxps(d, bv, av)  # a NaN in a survives: VMAXPS returns its second source on NaN
        f.vmovaps(Masked(d, nan.view(16)), bv)
    else:
        nan = f.vec("nan_lanes")
        f.vcmpps(nan.view(bits), bv, bv, UNORDERED)
        f.vmaxps(d, bv, av)
        f.vorps(d, d, nan.view(bits))  # all-ones is a NaN


def horizontal(f: Function, v: Register, combine) -> None:
    """Reduce the lanes of v into lane 0 (of v.xmm): combine(dst_view, a_view, b_view)."""
    tmp = f.vec("hreduce")
    if v.bits == 512:  # zmm: fold its upper 256 bits first
        f.vextractf64x4(tmp.ymm, v.zmm, 1)
        combine(v.ymm, v.ymm, tmp.ymm)
        f.vextractf32x4(tmp.xmm, v.ymm, 1)
    else:
        f.vextractf128(tmp.xmm, v.ymm, 1)
    combine(v.xmm, v.xmm, tmp.xmm)
    f.vpermilps(tmp.xmm, v.xmm, 0x4E)  # swap the 64-bit halves
    combine(v.xmm, v.xmm, tmp.xmm)
    f.vpermilps(tmp.xmm, v.xmm, 0xB1)  # swap neighbouring lanes
    combine(v.xmm, v.xmm, tmp.xmm)


def view_combiner(f: Function, mnemonic: str):
    """combine(dst, a, b) for horizontal(): one instruction on views."""
    return lambda d, a, b: f.emit(mnemonic, d, a, b)


def nan_sticky_view_combiner(f: Function):
    def combine(d, a, b):
        nan_sticky_max(f, d.reg, a.reg, b.reg, width=d.bits)
    return combine
