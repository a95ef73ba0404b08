"""Bitwise and integer lanes: and/or/xor/andn, 32- and 64-bit adds and subtracts, vpcmpgtd,
vpminud (the unsigned minimum of dwords),
immediate shifts (logical counts >= the width give 0; arithmetic ones saturate), vpternlogd."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import ALL_ONES, INT, UINT, ZERO


handles("vandps", "vpandd", "vpand")(lambda dec, ins: dec.elementwise(
    ins, 32, 2, np.bitwise_and, vex_only=ins.mnemonic == "vpand"))
handles("vorps", "vpord", "vpor")(lambda dec, ins: dec.elementwise(
    ins, 32, 2, np.bitwise_or, vex_only=ins.mnemonic == "vpor"))
handles("vxorps", "vpxord")(lambda dec, ins: dec.elementwise(ins, 32, 2, np.bitwise_xor))
handles("vandnps")(lambda dec, ins: dec.elementwise(ins, 32, 2, lambda a, b: ~a & b))
handles("vpaddd")(lambda dec, ins: dec.elementwise(ins, 32, 2, np.add))
handles("vpsubd")(lambda dec, ins: dec.elementwise(ins, 32, 2, np.subtract))
handles("vpminud")(lambda dec, ins: dec.elementwise(ins, 32, 2, np.minimum))
handles("vpaddq")(lambda dec, ins: dec.elementwise(ins, 64, 2, np.add))
handles("vpcmpgtd")(lambda dec, ins: dec.elementwise(
    ins, 32, 2,
    lambda a, b: np.where(a.view(np.int32) > b.view(np.int32), ALL_ONES[32], ZERO[32]),
    vex_only=True))


def _shift(kind, eb):
    width = eb

    def make(imm):
        count = imm & 0xFF
        if kind == "sra":
            c = np.int64(min(count, width - 1)) if eb == 64 else np.int32(min(count, width - 1))
            return lambda a: (a.view(INT[eb]) >> c).view(UINT[eb])
        if count >= width:
            return lambda a: np.zeros(a.shape, UINT[eb])
        c = UINT[eb](count)
        if kind == "sll":
            return lambda a: a << c
        return lambda a: a >> c
    return make


for _mn, _kind, _eb in (("vpslld", "sll", 32), ("vpsrld", "srl", 32), ("vpsllq", "sll", 64),
                        ("vpsraq", "sra", 64)):
    handles(_mn)(lambda dec, ins, _k=_kind, _eb=_eb: dec.elementwise(
        ins, _eb, 1, _shift(_k, _eb), imm=True))


@handles("vpternlogd")
def _h_vpternlogd(dec, ins):
    def make(imm):
        terms = [i for i in range(8) if imm >> i & 1]

        def compute(a, b, c):
            r = np.zeros(np.broadcast_shapes(a.shape, b.shape, c.shape), np.uint32)
            for i in terms:
                r |= (a if i & 4 else ~a) & (b if i & 2 else ~b) & (c if i & 1 else ~c)
            return r
        return compute
    return dec.elementwise(ins, 32, 2, make, rmw=True, imm=True)
