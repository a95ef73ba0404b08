"""Checks after register allocation: what only the final registers can tell.

VEX encodes registers 0-15 only. An instruction with no EVEX form (VBLENDVPS, VMASKMOVPS,
VEXTRACTF128, ...) that was given a register in 16-31 on an AVX-512 target cannot be encoded:
say so here, with the line that emitted it, instead of leaving it to the assembler.
"""
from __future__ import annotations

from softjit.codegen.errors import TargetFeatureError
from softjit.codegen.stream import Function, Instr


def check_encodable(f: Function, assignment: dict[int, int]) -> None:
    for item in f.items:
        if not isinstance(item, Instr) or item.form.evex is not None or item.form.vex == "base":
            continue
        for view in item.operand_views():
            if view.kind != "vec":
                continue
            phys = view.reg.fixed if view.reg.fixed is not None else assignment[view.reg.uid]
            if phys >= 16:
                raise TargetFeatureError(
                    f"{f.name}: {item.mnemonic} has only a VEX encoding, which cannot name "
                    f"{view.render(phys)} ({view.reg.name}); use an EVEX instruction on "
                    f"{f.target}\n  emitted at {item.site}")
