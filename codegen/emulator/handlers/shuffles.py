"""Shuffles within a register or between two: extracts of a register's part, inserts into one,
immediate shuffles (result lane i = concat(sources)[index[i]]), and the variable permutes
vpermps (one table) and vpermt2ps (two tables, the destination being the first).

A shuffle's memory source is read whole, whatever the write mask (stricter than hardware,
which may suppress faults of elements no enabled lane uses)."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import elementwise_closure
from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.text import Instruction, Operand


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


def _permute(dec, ins, eb, nsrc, index_of, allow_bcst=False):
    """A shuffle with an immediate: result lane i = concat(sources)[index[i]]."""
    dec.nops(ins, nsrc + 2)
    d = dec.vec_dest(ins)
    W = d.bits
    n = W // eb
    idx = np.array(index_of(dec.imm(ins.ops[-1]), n), np.intp)
    srcs = [dec.src(op, W, eb, allow_mem=(k == nsrc - 1), elementwise=False,
                    allow_bcst=allow_bcst and k == nsrc - 1)
            for k, op in enumerate(ins.ops[1:1 + nsrc])]
    write = dec.writer(d, W, eb)
    lanes_fn = dec.lanes_fn(d, n)
    if nsrc == 1:
        compute = lambda a: a[idx]  # noqa: E731
    else:
        compute = lambda a, b: np.concatenate((a, b))[idx]  # noqa: E731
    return elementwise_closure(srcs, compute, write, lanes_fn)


def _within_128(imm, n):
    """vpermilps / vpshufd: lane i takes lane imm[2j+1:2j] (j = i mod 4) of its 128-bit block."""
    return [4 * (i // 4) + ((imm >> 2 * (i % 4)) & 3) for i in range(n)]


@handles("vpermilps")
def _h_vpermilps(dec, ins):
    return _permute(dec, ins, 32, 1, _within_128)


@handles("vpshufd")
def _h_vpshufd(dec, ins):
    return _permute(dec, ins, 32, 1, _within_128, allow_bcst=True)


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


def _insert(dec, ins, W, W_in):
    """d = s1 with its imm-th W_in-bit part replaced by s2 (a register or memory)."""
    dec.nops(ins, 4)
    d = dec.vec_dest(ins)
    if d.bits != W:
        raise DecodeError(f"{ins.mnemonic} writes a {W}-bit register")
    m = W_in // 32
    chunk = dec.imm(ins.ops[3]) & (W // W_in - 1)
    g1 = dec.src(ins.ops[1], W, 32, allow_mem=False)
    g2 = dec.src(ins.ops[2], W_in, 32, allow_bcst=False, elementwise=False)

    def compute(a, b):
        r = np.array(a)
        r[chunk * m:(chunk + 1) * m] = b
        return r
    return elementwise_closure([g1, g2], compute, dec.writer(d, W, 32), dec.lanes_fn(d, W // 32))


@handles("vinsertf128")
def _h_vinsertf128(dec, ins):
    if ins.ops[0].mask is not None:
        raise DecodeError("vinsertf128 takes no write mask")
    return _insert(dec, ins, 256, 128)


@handles("vinsertf32x4")
def _h_vinsertf32x4(dec, ins):
    if ins.ops[0].kind != "vec" or ins.ops[0].bits not in (256, 512):
        raise DecodeError("vinsertf32x4 inserts into a ymm or zmm register")
    return _insert(dec, ins, ins.ops[0].bits, 128)


handles("vinsertf32x8")(lambda dec, ins: _insert(dec, ins, 512, 256))


@handles("vpermps")
def _h_vpermps(dec, ins):
    """d[i] = table[index[i] mod n]: d, index (a register), table."""
    dec.nops(ins, 3)
    d = dec.vec_dest(ins)
    W = d.bits
    if W == 128:
        raise DecodeError("vpermps has no xmm form")
    n = W // 32
    g_index = dec.src(ins.ops[1], W, 32, allow_mem=False)
    g_table = dec.src(ins.ops[2], W, 32, elementwise=False)
    wrap = np.uint32(n - 1)
    return elementwise_closure([g_index, g_table], lambda index, table: table[index & wrap],
                               dec.writer(d, W, 32), dec.lanes_fn(d, n))


@handles("vpermw")
def _h_vpermw(dec, ins):
    """d[i] = table[index[i] mod n] over words: d, index (a register), table; a {k} mask has a
    bit per word."""
    dec.nops(ins, 3)
    d = dec.vec_dest(ins)
    W = d.bits
    n = W // 16
    g_index = dec.src(ins.ops[1], W, 16, allow_mem=False)
    g_table = dec.src(ins.ops[2], W, 16, elementwise=False, allow_bcst=False)
    wrap = np.uint16(n - 1)
    return elementwise_closure([g_index, g_table], lambda index, table: table[index & wrap],
                               dec.writer(d, W, 16), dec.lanes_fn(d, n))


@handles("vpermt2ps")
def _h_vpermt2ps(dec, ins):
    """d[i] = concat(d, table2)[index[i] mod 2n]: d (the first table, overwritten), index,
    table2. Lanes a {k} mask disables keep d (the first table's own element)."""
    dec.nops(ins, 3)
    d = dec.vec_dest(ins)
    W = d.bits
    n = W // 32
    g_first = dec.src(Operand("vec", d.text, num=d.num, bits=W), W, 32)
    g_index = dec.src(ins.ops[1], W, 32, allow_mem=False)
    g_second = dec.src(ins.ops[2], W, 32, elementwise=False)
    wrap = np.uint32(2 * n - 1)

    def compute(first, index, second):
        return np.concatenate((first, second))[index & wrap]
    return elementwise_closure([g_first, g_index, g_second], compute, dec.writer(d, W, 32),
                               dec.lanes_fn(d, n))
