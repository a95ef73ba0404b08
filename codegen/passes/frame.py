"""The SysV frame: save the callee-saved registers a function uses, keep calls 16-byte aligned,
reserve its stack block, and clear the upper vector state (vzeroupper) before every return."""
from __future__ import annotations

from dataclasses import dataclass

from softjit.codegen.abi import SYSV_CALLEE_SAVED
from softjit.codegen.operands import GP64, RegView
from softjit.codegen.stream import Function, Instr


@dataclass(frozen=True)
class Frame:
    saved: tuple  # callee-saved register names, in push order
    stack_bytes: int  # sub rsp, N after the pushes
    vzeroupper: bool

    def prologue(self) -> list[str]:
        lines = [f"push {r}" for r in self.saved]
        if self.stack_bytes:
            lines.append(f"sub rsp, {self.stack_bytes}")
        return lines

    def epilogue(self) -> list[str]:
        lines = ["vzeroupper"] if self.vzeroupper else []
        if self.stack_bytes:
            lines.append(f"add rsp, {self.stack_bytes}")
        lines += [f"pop {r}" for r in reversed(self.saved)]
        return lines


def plan_frame(f: Function, assignment: dict[int, int]) -> Frame:
    gp_used = {assignment[reg.uid] for reg in _registers(f) if reg.kind == "gp" and reg.fixed is None}
    gp_used |= {reg.fixed for reg in _registers(f) if reg.kind == "gp" and reg.fixed is not None}
    saved = tuple(r for r in SYSV_CALLEE_SAVED if GP64.index(r) in gp_used)
    has_calls = any(isinstance(i, Instr) and i.mnemonic == "call" for i in f.items)
    stack = f.frame.size
    if has_calls or stack:
        # at entry rsp = 8 (mod 16); keep rsp = 0 (mod 16) after the prologue
        if (8 + 8 * len(saved) + stack) % 16:
            stack += 8
    wide = any(isinstance(op, RegView) and op.kind == "vec" and op.bits > 128
               for i in f.items if isinstance(i, Instr) for op in i.operands)
    return Frame(saved, stack, wide)


def _registers(f: Function):
    for item in f.items:
        if isinstance(item, Instr):
            yield from (view.reg for view in item.operand_views())
