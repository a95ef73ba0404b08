"""Compares, blends and the mask registers: vcmpps into a vector or a k register, vblendvps
(sign-bit selects) and vblendmps ({k} selects), vucomiss into the flags, vmovmskps, and
kmovw/kmovd/kortestw."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import check_vex
from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import ALL_ONES, COMPARE, ZERO, bits_to_int
from softjit.codegen.emulator.text import Instruction, Operand


@handles("vblendvps")
def _h_vblendvps(dec, ins):
    dec.nops(ins, 4)
    check_vex(ins)
    d = dec.vec_dest(ins)
    W = d.bits
    ga = dec.src(ins.ops[1], W, 32, allow_mem=False)
    gb = dec.src(ins.ops[2], W, 32, allow_bcst=False)
    gm = dec.src(ins.ops[3], W, 32, allow_mem=False)
    write = dec.writer(d, W, 32)

    def run():
        write(np.where(gm().view(np.int32) < 0, gb(), ga()), None)
    return run


@handles("vblendmps")
def _h_vblendmps(dec, ins):
    """d{k}, a, b: k ? b : a; {z}: k ? b : 0. Without a mask every lane is b."""
    dec.nops(ins, 3)
    d = dec.vec_dest(ins)
    W = d.bits
    ga = dec.src(ins.ops[1], W, 32, allow_mem=False)
    gb = dec.src(ins.ops[2], W, 32)
    plain = Operand("vec", d.text, num=d.num, bits=W)
    write = dec.writer(plain, W, 32)
    lanes_fn = dec.lanes_fn(d, W // 32)
    zero = d.zero
    if lanes_fn is None:
        return lambda: write(np.array(gb()), None)

    def run():
        L = lanes_fn()
        write(np.where(L, gb(L), ZERO[32] if zero else ga()), None)
    return run


@handles("vcmpps")
def _h_vcmpps(dec, ins):
    dec.nops(ins, 4)
    d = ins.ops[0]
    if not 0 <= dec.imm(ins.ops[3]) <= 31:
        raise DecodeError("the vcmpps predicate must be 0..31")
    pred = COMPARE[ins.ops[3].value & 15]
    if d.kind == "vec":
        check_vex(ins)
        without_predicate = Instruction(ins.index, ins.mnemonic, ins.ops[:3], ins.line, ins.text)
        return dec.elementwise(
            without_predicate, 32, 2,
            lambda a, b: np.where(pred(a.view(np.float32), b.view(np.float32)),
                                  ALL_ONES[32], ZERO[32]))
    if d.kind != "k":
        raise DecodeError("vcmpps writes a vector or a k register")
    if d.zero:
        raise DecodeError("{z} on a k destination")
    W = ins.ops[1].bits if ins.ops[1].kind == "vec" else None
    if W is None:
        raise DecodeError("the first source of vcmpps must be a register")
    n = W // 32
    g1 = dec.src(ins.ops[1], W, 32, allow_mem=False)
    g2 = dec.src(ins.ops[2], W, 32)
    lanes_fn = dec.lanes_fn(d, n)
    kr, kd = dec.kregs, d.num

    def run():
        L = None if lanes_fn is None else lanes_fn()
        c = pred(g1().view(np.float32), g2(L).view(np.float32))
        if L is not None:
            c = c & L
        kr[kd] = bits_to_int(c)
    return run


@handles("vucomiss")
def _h_vucomiss(dec, ins):
    dec.nops(ins, 2)
    a, b = ins.ops
    if a.kind != "vec" or a.bits != 128:
        raise DecodeError("vucomiss compares xmm with xmm or m32")
    va = dec.vu[a.num, :1].view(np.float32)
    if b.kind == "vec" and b.bits == 128:
        vb = dec.vu[b.num, :1].view(np.float32)
        gb = lambda: vb  # noqa: E731
    elif b.kind == "mem" and b.bits in (None, 32) and not b.bcst:
        g = dec.mem_getter(b, 4, 1, np.uint32)
        gb = lambda: g().view(np.float32)  # noqa: E731
    else:
        raise DecodeError("vucomiss compares xmm with xmm or m32")
    fl = dec.flags

    def run():
        x, y = float(va[0]), float(gb()[0])
        if x != x or y != y:
            fl[:] = [1, 1, 0, 0, 1]
        elif x < y:
            fl[:] = [1, 0, 0, 0, 0]
        elif x == y:
            fl[:] = [0, 1, 0, 0, 0]
        else:
            fl[:] = [0, 0, 0, 0, 0]
    return run


@handles("vmovmskps")
def _h_vmovmskps(dec, ins):
    dec.nops(ins, 2)
    d, s = ins.ops
    if d.kind != "gp" or s.kind != "vec" or s.bits not in (128, 256):
        raise DecodeError("vmovmskps is vmovmskps r32/r64, xmm/ymm")
    view, g, n = dec.vu[s.num, :s.bits // 32].view(np.int32), dec.gp, d.num

    def run():
        g[n] = bits_to_int(view < 0)
    return run


def _kmov(dec, ins, bits):
    dec.nops(ins, 2)
    d, s = ins.ops
    kr, g, mask = dec.kregs, dec.gp, (1 << bits) - 1
    if d.kind == "k" and d.mask is None:
        if s.kind == "gp" and s.bits == 32:
            n = s.num
            kd = d.num

            def run():
                kr[kd] = g[n] & mask
            return run
        if s.kind == "k":
            ks, kd = s.num, d.num

            def run():
                kr[kd] = kr[ks] & mask
            return run
        if s.kind == "mem" and s.bits in (None, bits) and not s.bcst:
            addrf, read, kd = s.addr, dec.memory.read_int, d.num

            def run():
                kr[kd] = read(addrf(), bits // 8)
            return run
    if s.kind == "k" and d.kind == "gp" and d.bits == 32:
        ks, n = s.num, d.num

        def run():
            g[n] = kr[ks] & mask
        return run
    if s.kind == "k" and d.kind == "mem" and d.bits in (None, bits):
        ks, addrf, write = s.num, d.addr, dec.memory.write_int

        def run():
            write(addrf(), bits // 8, kr[ks])
        return run
    raise DecodeError(f"{ins.mnemonic} is {ins.mnemonic} k, r32/m{bits} (or back)")


handles("kmovw")(lambda dec, ins: _kmov(dec, ins, 16))
handles("kmovd")(lambda dec, ins: _kmov(dec, ins, 32))


@handles("kortestw")
def _h_kortestw(dec, ins):
    dec.nops(ins, 2)
    a, b = ins.ops
    if a.kind != "k" or b.kind != "k":
        raise DecodeError("kortestw takes two k registers")
    kr, fl, i, j = dec.kregs, dec.flags, a.num, b.num

    def run():
        v = (kr[i] | kr[j]) & 0xFFFF
        fl[:] = [int(v == 0xFFFF), int(v == 0), 0, 0, 0]
    return run
