"""Moves, loads and stores (vmovups/aps/ntps with #GP on misaligned aligned forms, masked
vmaskmovps, broadcasts, scalar vmovss/sd/d), vzeroupper, the fences and the prefetch hints.
Shuffles, permutes, inserts and extracts are in shuffles.py; gathers in gather.py."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import elementwise_closure
from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import M32, UINT, ZERO
from softjit.codegen.emulator.text import Operand


@handles("vmovups", "vmovaps", "vmovntps")
def _h_vmov(dec, ins):
    dec.nops(ins, 2)
    d, s = ins.ops
    aligned = ins.mnemonic != "vmovups"
    if d.kind == "mem":  # store
        if s.kind != "vec" or s.mask is not None:
            raise DecodeError("a store's source must be a vector register")
        W = s.bits
        if ins.mnemonic == "vmovntps" and d.mask is not None:
            raise DecodeError("vmovntps takes no write mask")
        g = dec.src(s, W, 32)
        write = dec.writer(d, W, 32, align=W // 8 if aligned else None)
        lanes_fn = dec.lanes_fn(d, W // 32)
        if lanes_fn is None:
            return lambda: write(g(), None)
        return lambda: write(g(), lanes_fn())
    if ins.mnemonic == "vmovntps":
        raise DecodeError("vmovntps only stores (vmovntps m, v)")
    d = dec.vec_dest(ins)
    W = d.bits
    if s.kind == "mem":
        if s.bcst:
            raise DecodeError(f"{ins.mnemonic} takes no broadcast")
        if s.bits not in (None, W):
            raise DecodeError(f"memory operand must be {W} bits here")
        g = dec.mem_getter(s, 4, W // 32, np.uint32, masked=True,
                           align=W // 8 if aligned else None)
    else:
        g = dec.src(s, W, 32)
    write = dec.writer(d, W, 32)
    lanes_fn = dec.lanes_fn(d, W // 32)
    return elementwise_closure([g], lambda a: a, write, lanes_fn)


@handles("vmaskmovps")
def _h_vmaskmovps(dec, ins):
    dec.nops(ins, 3)
    a, b, c = ins.ops
    if a.kind == "vec":  # load: a = lanes of [c] where sign(b)
        if c.kind != "mem" or b.kind != "vec":
            raise DecodeError("vmaskmovps load is vmaskmovps v, vmask, m")
        W = a.bits
        gm = dec.src(b, W, 32, allow_mem=False)
        if c.bits not in (None, W) or c.bcst:
            raise DecodeError(f"memory operand must be {W} bits here")
        addrf, load_lanes, n = c.addr, dec.memory.load_lanes, W // 32
        write = dec.writer(Operand("vec", a.text, num=a.num, bits=W), W, 32)

        def run():
            L = gm().view(np.int32) < 0
            write(np.where(L, load_lanes(addrf(), 4, n, L, np.uint32), ZERO[32]), None)
        return run
    if a.kind != "mem" or b.kind != "vec" or c.kind != "vec":
        raise DecodeError("vmaskmovps store is vmaskmovps m, vmask, v")
    W = c.bits
    gm = dec.src(b, W, 32, allow_mem=False)
    gd = dec.src(c, W, 32, allow_mem=False)
    if a.bits not in (None, W) or a.mask is not None or a.bcst:
        raise DecodeError(f"memory operand must be {W} bits here")
    addrf, store_lanes = a.addr, dec.memory.store_lanes

    def run():
        store_lanes(addrf(), 4, gd(), gm().view(np.int32) < 0)
    return run


@handles("vbroadcastss", "vpbroadcastd")
def _h_vbroadcastss(dec, ins):
    """d = one dword (the low lane of an xmm register, memory, or for vpbroadcastd a 32-bit
    general-purpose register) in every lane."""
    dec.nops(ins, 2)
    d = dec.vec_dest(ins)
    s = ins.ops[1]
    W, n = d.bits, d.bits // 32
    if s.kind == "gp" and ins.mnemonic == "vpbroadcastd":
        if s.bits != 32:
            raise DecodeError("vpbroadcastd broadcasts a 32-bit register")
        regs, number = dec.gp, s.num
        g = lambda lanes=None: np.full(n, regs[number] & M32, np.uint32)  # noqa: E731
    elif s.kind == "vec":
        if s.bits != 128:
            raise DecodeError("vbroadcastss broadcasts from an xmm register")
        view = dec.vu[s.num, :1]
        g = lambda lanes=None: np.repeat(view, n)  # noqa: E731
    elif s.kind == "mem":
        if s.bits not in (None, 32) or s.bcst:
            raise DecodeError("vbroadcastss reads a DWORD")
        g = dec.mem_getter(s, 4, 1, np.uint32, n_out=n)
    else:
        raise DecodeError("vbroadcastss reads a DWORD or an xmm register")
    write = dec.writer(d, W, 32)
    lanes_fn = dec.lanes_fn(d, n)
    if lanes_fn is None:
        return lambda: write(g(), None)
    return lambda: write(g(), lanes_fn())


def _scalar_move(dec, ins, eb):
    dec.nops(ins, 2)
    d, s = ins.ops
    dt = UINT[eb]
    if d.kind == "vec":  # load: zero the rest
        if d.bits != 128 or s.kind != "mem" or s.bits not in (None, eb) or s.bcst or d.mask:
            raise DecodeError(f"{ins.mnemonic} loads as {ins.mnemonic} xmm, m{eb}")
        g = dec.mem_getter(s, eb // 8, 1, dt)
        view = dec.vv[eb][d.num]
        upper = dec.vu[d.num]

        def run():
            v = g()[0]
            upper[...] = 0
            view[0] = v
        return run
    if d.kind != "mem" or s.kind != "vec" or s.bits != 128 or d.bits not in (None, eb) \
            or d.mask is not None:
        raise DecodeError(f"{ins.mnemonic} stores as {ins.mnemonic} m{eb}, xmm")
    view = dec.vv[eb][s.num, :1]
    addrf, store = d.addr, dec.memory.store
    return lambda: store(addrf(), view)


handles("vmovss")(lambda dec, ins: _scalar_move(dec, ins, 32))
handles("vmovsd")(lambda dec, ins: _scalar_move(dec, ins, 64))


@handles("vmovd")
def _h_vmovd(dec, ins):
    dec.nops(ins, 2)
    d, s = ins.ops
    g = dec.gp
    if d.kind == "vec" and s.kind == "gp" and d.bits == 128 and s.bits == 32:
        row, n = dec.vu[d.num], s.num

        def run():
            row[...] = 0
            row[0] = g[n] & M32
        return run
    if d.kind == "gp" and s.kind == "vec" and d.bits == 32 and s.bits == 128:
        lane, n = dec.vu[s.num, :1], d.num

        def run():
            g[n] = int(lane[0])
        return run
    raise DecodeError("vmovd is vmovd xmm, r32 or vmovd r32, xmm")


@handles("sfence", "lfence", "mfence")
def _h_fence(dec, ins):
    """Memory ordering only: nothing to do in a single-threaded emulator."""
    dec.nops(ins, 0)
    return lambda: None


@handles("prefetcht0", "prefetchnta")
def _h_prefetch(dec, ins):
    """A hint: it never faults (an unmapped address is fine) and changes no state."""
    dec.nops(ins, 1)
    if ins.ops[0].kind != "mem" or ins.ops[0].bits not in (None, 8) or ins.ops[0].mask is not None:
        raise DecodeError(f"{ins.mnemonic} takes a BYTE PTR memory operand")
    return lambda: None


@handles("vzeroupper")
def _h_vzeroupper(dec, ins):
    dec.nops(ins, 0)
    upper = dec.vu[:16, 4:]

    def run():
        upper[...] = 0
    return run
