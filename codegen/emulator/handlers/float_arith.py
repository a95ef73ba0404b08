"""Float arithmetic: packed add/sub/mul/div/max/min/sqrt, vscalefps/pd, the fused multiply-adds
and multiply-subtracts (one rounding, fma.py), vrndscaleps/vroundps, and the scalar ss/sd forms (the low element
computed, the rest of the xmm register from the first source, the upper bits zeroed)."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.fma import fma
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import (UINT, binary, maximum, minimum, round_imm, scalef,
                                          sqrt)


for _name, _uf in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                   ("div", np.divide)):
    for _sfx, _eb in (("ps", 32), ("pd", 64)):
        handles(f"v{_name}{_sfx}")(
            lambda dec, ins, _c=binary(_uf, _eb), _eb=_eb: dec.elementwise(ins, _eb, 2, _c))
for _sfx, _eb in (("ps", 32), ("pd", 64)):
    handles(f"vmax{_sfx}")(
        lambda dec, ins, _c=maximum(_eb), _eb=_eb: dec.elementwise(ins, _eb, 2, _c))
    handles(f"vmin{_sfx}")(
        lambda dec, ins, _c=minimum(_eb), _eb=_eb: dec.elementwise(ins, _eb, 2, _c))
    handles(f"vscalef{_sfx}")(
        lambda dec, ins, _c=scalef(_eb), _eb=_eb: dec.elementwise(ins, _eb, 2, _c))
    for _neg in (False, True):
        for _sub in (False, True):
            for _order in ("132", "213", "231"):
                handles(f"vf{'n' if _neg else ''}m{'sub' if _sub else 'add'}{_order}{_sfx}")(
                    lambda dec, ins, _c=fma(_eb, _order, _neg, _sub), _eb=_eb:
                    dec.elementwise(ins, _eb, 2, _c, rmw=True))
handles("vsqrtps")(lambda dec, ins: dec.elementwise(ins, 32, 1, sqrt))


@handles("vrndscaleps")
def _h_vrndscaleps(dec, ins):
    return dec.elementwise(ins, 32, 1, lambda imm: round_imm(32, imm, True), imm=True)


@handles("vroundps")
def _h_vroundps(dec, ins):
    return dec.elementwise(ins, 32, 1, lambda imm: round_imm(32, imm, False), imm=True,
                           vex_only=True)


def scalar_op(dec, ins, eb, compute, out_eb=None, src_eb=None):
    """d, s1, s2: the low element from compute(s1[0], s2[0]), the rest of 128 bits from s1."""
    dec.nops(ins, 3)
    d, s1, s2 = ins.ops
    out_eb = out_eb or eb
    src_eb = src_eb or eb
    if d.kind != "vec" or d.bits != 128 or d.mask is not None:
        raise DecodeError(f"{ins.mnemonic} writes an xmm register")
    if s1.kind != "vec" or s1.bits != 128:
        raise DecodeError(f"the first source of {ins.mnemonic} is an xmm register")
    rest = dec.vv[out_eb][s1.num, :128 // out_eb]
    if s2.kind == "vec":
        if s2.bits != 128:
            raise DecodeError(f"the second source of {ins.mnemonic} is an xmm register")
        v2 = dec.vv[src_eb][s2.num, :1]
        g2 = lambda: v2  # noqa: E731
    elif s2.kind == "mem" and s2.bits in (None, src_eb) and not s2.bcst:
        g2 = dec.mem_getter(s2, src_eb // 8, 1, UINT[src_eb])
    else:
        raise DecodeError(f"the second source of {ins.mnemonic} is xmm or m{src_eb}")
    first = dec.vv[out_eb][s1.num, :1]
    row = dec.vv[out_eb][d.num]
    full = dec.vu[d.num]

    def run():
        low = compute(first, g2()) if src_eb == out_eb else compute(g2())
        keep = rest.copy()
        full[...] = 0
        row[:128 // out_eb] = keep
        row[0] = low[0]
    return run


for _name, _c32, _c64 in (
        ("add", binary(np.add, 32), binary(np.add, 64)),
        ("sub", binary(np.subtract, 32), binary(np.subtract, 64)),
        ("mul", binary(np.multiply, 32), binary(np.multiply, 64)),
        ("div", binary(np.divide, 32), binary(np.divide, 64)),
        ("max", maximum(32), maximum(64)),
        ("min", minimum(32), minimum(64))):
    handles(f"v{_name}ss")(lambda dec, ins, _c=_c32: scalar_op(dec, ins, 32, _c))
    handles(f"v{_name}sd")(lambda dec, ins, _c=_c64: scalar_op(dec, ins, 64, _c))
