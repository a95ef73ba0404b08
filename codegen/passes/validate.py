"""Checks after register allocation: what only the final registers can tell.

VEX encodes registers 0-15 only. An instruction with no EVEX form (VBLENDVPS, VMASKMOVPS,
VEXTRACTF128, ...) that was given a register in 16-31 on an AVX-512 target cannot be encoded:
say so here, with the line that emitted it, instead of leaving it to the assembler.

Gathers (the table's `distinct` flag) need their destination, vector index and mask vector in
three different registers (#UD otherwise). Emission refuses one virtual register in two roles;
here the physical registers are checked too.
"""
from __future__ import annotations

from softjit.codegen.errors import TargetFeatureError
from softjit.codegen.stream import Function, Instr


def check_encodable(f: Function, assignment: dict[int, int]) -> None:
    for item in f.items:
        if isinstance(item, Instr) and "distinct" in item.form.flags:
            _check_distinct(f, item, assignment)
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


def _check_distinct(f: Function, item: Instr, assignment: dict[int, int]) -> None:
    seen = {}
    for view in item.operand_views():
        if view.kind != "vec":
            continue
        phys = view.reg.fixed if view.reg.fixed is not None else assignment[view.reg.uid]
        other = seen.setdefault(phys, view)
        if other.reg is not view.reg:
            raise TargetFeatureError(
                f"{f.name}: {item.mnemonic} was given {view.render(phys)} for both "
                f"{other.reg.name} and {view.reg.name}; its destination, index and mask must be "
                f"different registers (keep each live across the gather)\n  emitted at {item.site}")
