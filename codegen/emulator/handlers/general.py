"""General-purpose integer instructions on 32- and 64-bit registers: mov (also a 16-bit
register to memory), movzx (a word from memory), lea, the ALU
operations with their flags (add, sub, cmp, and, or, xor, test, imul), shl/shr by an
immediate, neg, cmovcc (a 32-bit destination is zero-extended, as on hardware)."""
from __future__ import annotations

from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.control import CONDITIONS
from softjit.codegen.emulator.handlers.table import handles

PARITY = tuple(int(bin(i).count("1") % 2 == 0) for i in range(256))  # PF: an even number of ones


def _set_logic_flags(fl, r, bits):
    fl[0] = 0
    fl[1] = int(r == 0)
    fl[2] = (r >> (bits - 1)) & 1
    fl[3] = 0
    fl[4] = PARITY[r & 0xFF]


@handles("mov")
def _h_mov(dec, ins):
    dec.nops(ins, 2)
    d, s = ins.ops
    g = dec.gp
    if d.kind == "gp":
        d = dec.gp_dest(ins)
        src = dec.gp_reader(s, d.bits)
        n = d.num

        def run():
            g[n] = src()
        return run
    if d.kind == "mem":
        bits = d.bits or (s.bits if s.kind == "gp" else None)
        if bits not in (8, 16, 32, 64):
            raise DecodeError("mov to memory needs a size (BYTE/WORD/DWORD/QWORD PTR)")
        if s.kind == "mem":
            raise DecodeError("mov cannot copy memory to memory")
        src = dec.gp_reader(s, bits) if s.kind != "gp" or s.bits == bits else None
        if src is None:
            raise DecodeError("operand sizes differ")
        addrf, write, size = d.addr, dec.memory.write_int, bits // 8

        def run():
            write(addrf(), size, src())
        return run
    raise DecodeError("mov writes a register or memory")


@handles("movzx")
def _h_movzx(dec, ins):
    """movzx r32, WORD PTR [m]: the word zero-extended (a 32-bit write clears the upper half)."""
    dec.nops(ins, 2)
    d = dec.gp_dest(ins)
    s = ins.ops[1]
    if d.bits != 32 or s.kind != "mem" or s.bits != 16:
        raise DecodeError("movzx takes a 32-bit register and a WORD PTR operand")
    read, g, n = dec.gp_reader(s, 16), dec.gp, d.num

    def run():
        g[n] = read()
    return run


@handles("lea")
def _h_lea(dec, ins):
    dec.nops(ins, 2)
    d = dec.gp_dest(ins)
    s = ins.ops[1]
    if s.kind != "mem" or s.bcst:
        raise DecodeError("lea takes an address")
    g, n, addrf, mask = dec.gp, d.num, s.addr, (1 << d.bits) - 1

    def run():
        g[n] = addrf() & mask
    return run


def _alu(kind):
    def handler(dec, ins):
        dec.nops(ins, 2)
        d = dec.gp_dest(ins)
        bits = d.bits
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        a_get = dec.gp_reader(d, bits)
        b_get = dec.gp_reader(ins.ops[1], bits)
        g, fl, n = dec.gp, dec.flags, d.num
        par = PARITY
        write = kind not in ("cmp", "test")

        if kind in ("add",):
            def run():
                a, b = a_get(), b_get()
                full = a + b
                r = full & mask
                fl[0] = int(full > mask)
                fl[1] = int(r == 0)
                fl[2] = int(r & sign != 0)
                fl[3] = int((a ^ r) & (b ^ r) & sign != 0)
                fl[4] = par[r & 0xFF]
                g[n] = r
        elif kind in ("sub", "cmp"):
            def run():
                a, b = a_get(), b_get()
                r = (a - b) & mask
                fl[0] = int(a < b)
                fl[1] = int(r == 0)
                fl[2] = int(r & sign != 0)
                fl[3] = int((a ^ b) & (a ^ r) & sign != 0)
                fl[4] = par[r & 0xFF]
                if write:
                    g[n] = r
        elif kind in ("and", "or", "xor", "test"):
            op = {"and": int.__and__, "test": int.__and__, "or": int.__or__,
                  "xor": int.__xor__}[kind]

            def run():
                r = op(a_get(), b_get())
                _set_logic_flags(fl, r, bits)
                if write:
                    g[n] = r
        elif kind == "imul":
            if ins.ops[1].kind == "imm":
                raise DecodeError("imul r, imm is not supported (use the 2-operand r, r/m)")

            def run():
                a, b = a_get(), b_get()
                sa = a - (a & sign) * 2
                sb = b - (b & sign) * 2
                prod = sa * sb
                r = prod & mask
                sr = r - (r & sign) * 2
                fl[0] = fl[3] = int(sr != prod)
                fl[1] = int(r == 0)
                fl[2] = int(r & sign != 0)
                fl[4] = par[r & 0xFF]
                g[n] = r
        return run
    return handler


for _k in ("add", "sub", "cmp", "and", "or", "xor", "test", "imul"):
    handles(_k)(_alu(_k))


def _shift_gp(kind):
    def handler(dec, ins):
        dec.nops(ins, 2)
        d = dec.gp_dest(ins)
        bits = d.bits
        count = dec.imm(ins.ops[1]) & (63 if bits == 64 else 31)
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        g, fl, n, par = dec.gp, dec.flags, d.num, PARITY

        def run():
            a = g[n] & mask
            if count == 0:
                g[n] = a
                return
            if kind == "shl":
                r = (a << count) & mask
                cf = (a >> (bits - count)) & 1
                of = int(bool(r & sign)) ^ cf
            else:
                r = a >> count
                cf = (a >> (count - 1)) & 1
                of = int(bool(a & sign))
            fl[0], fl[1], fl[2], fl[3], fl[4] = cf, int(r == 0), int(r & sign != 0), of, \
                par[r & 0xFF]
            g[n] = r
        return run
    return handler


handles("shl")(_shift_gp("shl"))
handles("shr")(_shift_gp("shr"))


@handles("neg")
def _h_neg(dec, ins):
    dec.nops(ins, 1)
    d = dec.gp_dest(ins)
    bits = d.bits
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    g, fl, n, par = dec.gp, dec.flags, d.num, PARITY

    def run():
        a = g[n] & mask
        r = (-a) & mask
        fl[0], fl[1], fl[2], fl[3], fl[4] = int(a != 0), int(r == 0), int(r & sign != 0), \
            int(a == sign), par[r & 0xFF]
        g[n] = r
    return run


def _cmov(cond):
    def handler(dec, ins):
        dec.nops(ins, 2)
        d = dec.gp_dest(ins)
        src = dec.gp_reader(ins.ops[1], d.bits)
        g, fl, n, mask = dec.gp, dec.flags, d.num, (1 << d.bits) - 1

        def run():
            v = src()  # the source is read (and may fault) whatever the condition
            g[n] = v if cond(fl) else g[n] & mask  # a 32-bit cmov always zero-extends
        return run
    return handler


for _c, _fn in CONDITIONS.items():
    handles(f"cmov{_c}")(_cmov(_fn))
