"""Control flow and the stack: jcc (the conditions, shared with cmovcc), jmp, push, pop, call
(which must find rsp 16-byte aligned, as SysV promises at every call), ret (to the pushed
return address, or out of the emulation at the top-level return)."""
from __future__ import annotations

from softjit.codegen.emulator.errors import ABIViolation, DecodeError, Fault
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import M64
from softjit.codegen.emulator.memory import RETURN_SENTINEL, TEXT_BASE
from softjit.codegen.emulator.state import RSP


CONDITIONS = {
    "b": lambda f: f[0], "c": lambda f: f[0], "nae": lambda f: f[0],
    "ae": lambda f: not f[0], "nb": lambda f: not f[0], "nc": lambda f: not f[0],
    "a": lambda f: not f[0] and not f[1], "nbe": lambda f: not f[0] and not f[1],
    "be": lambda f: f[0] or f[1], "na": lambda f: f[0] or f[1],
    "e": lambda f: f[1], "z": lambda f: f[1],
    "ne": lambda f: not f[1], "nz": lambda f: not f[1],
    "p": lambda f: f[4], "pe": lambda f: f[4],
    "np": lambda f: not f[4], "po": lambda f: not f[4],
    "s": lambda f: f[2], "ns": lambda f: not f[2],
    "o": lambda f: f[3], "no": lambda f: not f[3],
    "l": lambda f: f[2] != f[3], "ge": lambda f: f[2] == f[3],
    "le": lambda f: f[1] or f[2] != f[3], "g": lambda f: not f[1] and f[2] == f[3],
}


def _jcc(cond):
    def handler(dec, ins):
        dec.nops(ins, 1)
        target, fl = dec.label_target(ins.ops[0]), dec.flags

        def run():
            return target if cond(fl) else None
        return run
    return handler


for _c, _fn in CONDITIONS.items():
    handles(f"j{_c}")(_jcc(_fn))


@handles("jmp")
def _h_jmp(dec, ins):
    dec.nops(ins, 1)
    target = dec.label_target(ins.ops[0])
    return lambda: target


@handles("push")
def _h_push(dec, ins):
    dec.nops(ins, 1)
    s = ins.ops[0]
    if s.kind not in ("gp", "imm") or (s.kind == "gp" and s.bits != 64):
        raise DecodeError("push takes a 64-bit register")
    src = dec.gp_reader(s, 64)
    g, write = dec.gp, dec.memory.write_int

    def run():
        v = src()
        sp = (g[RSP] - 8) & M64
        write(sp, 8, v)
        g[RSP] = sp
    return run


@handles("pop")
def _h_pop(dec, ins):
    dec.nops(ins, 1)
    d = dec.gp_dest(ins)
    if d.bits != 64:
        raise DecodeError("pop takes a 64-bit register")
    g, read, n = dec.gp, dec.memory.read_int, d.num

    def run():
        sp = g[RSP]
        v = read(sp, 8)
        g[RSP] = (sp + 8) & M64
        g[n] = v
    return run


@handles("call")
def _h_call(dec, ins):
    dec.nops(ins, 1)
    target = dec.label_target(ins.ops[0])
    ret_addr = TEXT_BASE + 16 * (ins.index + 1)
    g, write = dec.gp, dec.memory.write_int

    def run():
        sp = g[RSP]
        if sp % 16:
            raise Fault(f"call with rsp = 0x{sp:X}, not 16-byte aligned (SysV)",
                        kind=ABIViolation)
        sp = (sp - 8) & M64
        write(sp, 8, ret_addr)
        g[RSP] = sp
        return target
    return run


@handles("ret")
def _h_ret(dec, ins):
    dec.nops(ins, 0)
    g, read = dec.gp, dec.memory.read_int
    n_code = len(dec.instructions)

    def run():
        sp = g[RSP]
        a = read(sp, 8)
        g[RSP] = (sp + 8) & M64
        if a == RETURN_SENTINEL:
            return -1
        idx, rem = divmod(a - TEXT_BASE, 16)
        if rem or not 0 <= idx <= n_code:
            raise Fault(f"ret to 0x{a:X}, which is not a return address (stack corrupted?)")
        return idx
    return run
