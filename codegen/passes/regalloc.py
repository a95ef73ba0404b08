"""Register allocation: linear scan over live intervals, within the target's register budget.

A virtual register lives from its first to its last appearance in stream order. A loop (a
backward jump to an earlier label) keeps alive, to its back edge, every register that was live
on entry and is read inside it: the next iteration reads it again. Past the budget, allocation
fails loudly with the registers that were live, never by spilling silently.
"""
from __future__ import annotations

from dataclasses import dataclass

from softjit.codegen.errors import RegisterBudgetError
from softjit.codegen.abi import SYSV_CALLEE_SAVED
from softjit.codegen.operands import GP64
from softjit.codegen.stream import Bind, Function, Instr
from softjit.codegen.instructions import JUMPS

# Caller-saved first: a callee-saved register costs a push and a pop.
_GP_ORDER = ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
             "rbx", "rbp", "r12", "r13", "r14", "r15")


@dataclass
class Interval:
    reg: object
    start: int
    end: int


def live_intervals(f: Function) -> list[Interval]:
    intervals: dict[int, Interval] = {}
    label_at = {item.label: i for i, item in enumerate(f.items) if isinstance(item, Bind)}
    loops, calls = [], []
    uses_in: dict[int, list] = {}
    for i, item in enumerate(f.items):
        if not isinstance(item, Instr):
            continue
        if item.mnemonic in JUMPS and label_at.get(item.operands[0], i) < i:
            loops.append((label_at[item.operands[0]], i))
        if item.mnemonic == "call":
            calls.append(i)
        for view in item.register_views():
            reg = view.reg
            if reg.fixed is not None:
                continue
            uses_in.setdefault(reg.uid, []).append(i)
            iv = intervals.get(reg.uid)
            if iv is None:
                # arguments (pinned) are live from entry even if first read later
                start = 0 if reg.pin is not None else i
                intervals[reg.uid] = Interval(reg, start, i)
            else:
                iv.end = i
    changed = True
    while changed:
        changed = False
        for start, end in loops:
            for iv in intervals.values():
                if iv.start < start <= iv.end < end and any(
                        start <= u <= end for u in uses_in[iv.reg.uid]):
                    iv.end = end
                    changed = True
    for iv in intervals.values():
        crossing = [c for c in calls if iv.start < c < iv.end]
        if crossing and not (iv.reg.kind == "gp" and iv.reg.callee_saved):
            raise RegisterBudgetError(
                f"{f.name}: {iv.reg.name} is live across a call; declare it gp(..., callee_saved=True)")
    return sorted(intervals.values(), key=lambda iv: (iv.start, iv.reg.uid))


def _pools(f: Function) -> dict:
    explicit = {op.reg.fixed for item in f.items if isinstance(item, Instr)
                for op in item.operand_views() if op.reg.fixed is not None and op.kind == "gp"}
    gp = [GP64.index(r) for r in _GP_ORDER if GP64.index(r) not in explicit]
    return {
        "gp": gp,
        "vec": list(range(f.target.vector_registers)),
        "mask": list(range(1, f.target.mask_registers + 1)),  # k0 cannot be a write mask
    }


def allocate(f: Function) -> dict[int, int]:
    """Map every virtual register's uid to a physical register number."""
    pools = _pools(f)
    callee_saved = {GP64.index(r) for r in SYSV_CALLEE_SAVED}
    assignment: dict[int, int] = {}
    active: list[Interval] = []
    # Arguments start at position 0 and were created first, so they are placed before any other
    # register and their pinned registers are never taken from under them.
    for iv in live_intervals(f):
        active = [a for a in active if a.end > iv.start]
        busy = {assignment[a.reg.uid] for a in active if a.reg.kind == iv.reg.kind}
        pin = iv.reg.pin
        if pin is not None:
            if pin in busy:
                raise RegisterBudgetError(f"{f.name}: argument {iv.reg.name} is pinned to a busy register")
            choice = pin
        else:
            candidates = [p for p in pools[iv.reg.kind] if p not in busy]
            if iv.reg.kind == "gp" and iv.reg.callee_saved:
                candidates = [p for p in candidates if p in callee_saved]
            if not candidates:
                live = ", ".join(sorted(a.reg.name for a in active if a.reg.kind == iv.reg.kind))
                budget = len(pools[iv.reg.kind])
                where = f.items[iv.start]
                raise RegisterBudgetError(
                    f"{f.name} on {f.target}: needs more than {budget} {iv.reg.kind} registers "
                    f"when {iv.reg.name} becomes live (live: {live})\n"
                    f"  at {getattr(where, 'site', '') or where}")
            choice = candidates[0]
        assignment[iv.reg.uid] = choice
        active.append(iv)
    return assignment

