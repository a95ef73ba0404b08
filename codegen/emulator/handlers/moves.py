"""Moves, loads and stores (vmovups/aps/ntps with #GP on misaligned aligned forms, masked
vmaskmovps, broadcasts, scalar vmovss/sd/d), extracts of a register's upper part, immediate
shuffles (result lane i = concat(sources)[index[i]]), vzeroupper and the fences."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import elementwise_closure
from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import M32, UINT, ZERO
from softjit.codegen.emulator.text import Instruction, Operand


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


@handles("vbroadcastss")
def _h_vbroadcastss(dec, ins):
    dec.nops(ins, 2)
    d = dec.vec_dest(ins)
    s = ins.ops[1]
    W, n = d.bits, d.bits // 32
    if s.kind == "vec":
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


def _extract(dec, ins, W_src, W_out, eb):
    dec.nops(ins, 3)
    d, s = ins.ops[0], ins.ops[1]
    if s.kind != "vec" or s.bits != W_src:
        raise DecodeError(f"the source of {ins.mnemonic} must be a {W_src}-bit register")
    chunks = W_src // W_out
    chunk = dec.imm(ins.ops[2]) & (chunks - 1)
    n = W_out // eb
    view = dec.vv[eb][s.num, chunk * n:(chunk + 1) * n]
    if d.kind == "vec" and d.bits != W_out:
        raise DecodeError(f"{ins.mnemonic} writes a {W_out}-bit register")
    write = dec.writer(d, W_out, eb)
    lanes_fn = dec.lanes_fn(d, n)
    if lanes_fn is None:
        return lambda: write(view.copy(), None)
    return lambda: write(view.copy(), lanes_fn())


@handles("vextractf128")
def _h_vextractf128(dec, ins):
    if ins.ops[0].mask is not None:
        raise DecodeError("vextractf128 takes no write mask")
    return _extract(dec, ins, 256, 128, 32)


@handles("vextractf32x4")
def _h_vextractf32x4(dec, ins):
    if ins.ops[1].kind != "vec" or ins.ops[1].bits not in (256, 512):
        raise DecodeError("vextractf32x4 extracts from a ymm or zmm register")
    return _extract(dec, ins, ins.ops[1].bits, 128, 32)


handles("vextractf64x4")(lambda dec, ins: _extract(dec, ins, 512, 256, 64))
handles("vextractf32x8")(lambda dec, ins: _extract(dec, ins, 512, 256, 32))


def _permute(dec, ins, eb, nsrc, index_of):
    """A shuffle with an immediate: result lane i = concat(sources)[index[i]]."""
    dec.nops(ins, nsrc + 2)
    d = dec.vec_dest(ins)
    W = d.bits
    n = W // eb
    idx = np.array(index_of(dec.imm(ins.ops[-1]), n), np.intp)
    srcs = [dec.src(op, W, eb, allow_mem=(k == nsrc - 1), elementwise=False,
                    allow_bcst=False) for k, op in enumerate(ins.ops[1:1 + nsrc])]
    write = dec.writer(d, W, eb)
    lanes_fn = dec.lanes_fn(d, n)
    if nsrc == 1:
        compute = lambda a: a[idx]  # noqa: E731
    else:
        compute = lambda a, b: np.concatenate((a, b))[idx]  # noqa: E731
    return elementwise_closure(srcs, compute, write, lanes_fn)


@handles("vpermilps")
def _h_vpermilps(dec, ins):
    return _permute(dec, ins, 32, 1, lambda imm, n: [
        4 * (i // 4) + ((imm >> 2 * (i % 4)) & 3) for i in range(n)])


@handles("vpermilpd")
def _h_vpermilpd(dec, ins):
    return _permute(dec, ins, 64, 1, lambda imm, n: [
        2 * (i // 2) + ((imm >> i) & 1) for i in range(n)])


@handles("vshufps")
def _h_vshufps(dec, ins):
    def index(imm, n):
        out = []
        for i in range(n):
            base, j = 4 * (i // 4), i % 4
            sel = (imm >> 2 * j) & 3
            out.append(base + sel + (n if j >= 2 else 0))
        return out
    return _permute(dec, ins, 32, 2, index)


@handles("vmovshdup")
def _h_vmovshdup(dec, ins):
    dec.nops(ins, 2)
    ins2 = Instruction(ins.index, ins.mnemonic, ins.ops + [Operand("imm", "0")], ins.line, ins.text)
    return _permute(dec, ins2, 32, 1, lambda imm, n: [i | 1 for i in range(n)])


@handles("vunpckhpd")
def _h_vunpckhpd(dec, ins):
    dec.nops(ins, 3)
    ins2 = Instruction(ins.index, ins.mnemonic, ins.ops + [Operand("imm", "0")], ins.line, ins.text)
    return _permute(dec, ins2, 64, 2, lambda imm, n: [
        2 * (i // 2) + 1 + (n if i % 2 else 0) for i in range(n)])


@handles("vmovhlps")
def _h_vmovhlps(dec, ins):
    dec.nops(ins, 3)
    if any(op.kind != "vec" or op.bits != 128 for op in ins.ops) or ins.ops[0].mask:
        raise DecodeError("vmovhlps is vmovhlps xmm, xmm, xmm")
    ins2 = Instruction(ins.index, ins.mnemonic, ins.ops + [Operand("imm", "0")], ins.line, ins.text)
    # DEST[63:0] = SRC2[127:64]; DEST[127:64] = SRC1[127:64]
    return _permute(dec, ins2, 64, 2, lambda imm, n: [3, 1])


@handles("sfence", "lfence", "mfence")
def _h_fence(dec, ins):
    """Memory ordering only: nothing to do in a single-threaded emulator."""
    dec.nops(ins, 0)
    return lambda: None


@handles("vzeroupper")
def _h_vzeroupper(dec, ins):
    dec.nops(ins, 0)
    upper = dec.vu[:16, 4:]

    def run():
        upper[...] = 0
    return run
