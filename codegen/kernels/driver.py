"""The softmax row driver: one native call runs a whole batch of rows, calling a softmax
algorithm's passes (codegen/kernels/softmax.py) on each row in turn.

Its signature, the row-stride pair, the status words and the pass state it hands from pass to
pass are the ABI of codegen/abi.py, which the runtime reads too.
"""
from __future__ import annotations

from softjit.codegen.abi import (F32, PASS_STATE, ROW_DONE, ROW_MARKED, ROW_STRIDES_INPUT_SCALE,
                                 driver_signature)
from softjit.codegen.operands import Symbol, ptr
from softjit.codegen.stream import Function


def build_driver(name: str, target, passes: list, may_flag: bool, element=F32,
                 scaled: bool = False) -> Function:
    """Loop over rows calling the passes in turn; a row whose first pass returns 1 is marked in
    status (and its later passes skipped, leaving y untouched) for the caller to recompute.
    scaled: the passes are scaled ones; the input scale comes through row_strides."""
    what = ("Softmax of `rows` rows of s * x, s the float32 at byte 16 of row_strides (the\n"
            "scale), of n floats each" if scaled else "Softmax of `rows` rows of n floats")
    sig = driver_signature(
        name,
        f"{what}; row r at x + r*row_strides[0] bytes, its result at\n"
        "y + r*row_strides[1] bytes. status[r] = 1 marks a row left for the caller to recompute;\n"
        "returns how many rows were marked.",
        element,
    )
    f = Function(sig, target)
    keep = keep_arguments(f)
    state = f.stack(PASS_STATE.size)
    if scaled:
        f.comment("state.input_scale = the scale after the stride pair (the passes only read it)")
        scale = f.gp("input_scale")
        f.mov(scale.r32, ptr(keep["row_strides"], ROW_STRIDES_INPUT_SCALE, bits=32))
        f.mov(state.sized(32) + PASS_STATE.offset("input_scale"), scale.r32)
    marked = f.stack(8).sized(64)
    rax = f.physical_gp("rax")
    f.mov(marked, 0)
    done, top, next_row = f.label("done"), f.label("row"), f.label("next_row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    f.bind(top)
    flagged = f.label("flagged") if may_flag else None
    for i, symbol in enumerate(passes):
        # pass(x, y, n, state) in the SysV argument registers
        for index, value in enumerate((keep["x"], keep["y"], keep["n"])):
            f.mov(f.argument_register(index), value)
        f.lea(f.argument_register(3), state)
        f.call(Symbol(symbol))
        if i == 0 and may_flag:
            f.test(rax.r32, rax.r32)  # PASS_RECOMPUTE (anything but PASS_OK): mark the row
            f.jne(flagged)
    write_row_status(f, keep["status"], marked, flagged, next_row)
    f.add(keep["x"], ptr(keep["row_strides"], 0))
    f.add(keep["y"], ptr(keep["row_strides"], 8))
    f.add(keep["status"], 4)
    f.sub(keep["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.mov(rax, marked)
    f.ret()
    return f


def keep_arguments(f: Function) -> dict:
    """Each argument copied into a callee-saved register (the passes' calls clobber the
    argument registers), by argument name."""
    keep = {}
    for arg in f.args:
        keep[arg.name] = f.gp(f"{arg.name}_kept", callee_saved=True)
        f.mov(keep[arg.name], arg)
    return keep


def write_row_status(f: Function, status, marked, flagged, next_row) -> None:
    """The end of one row in a row driver: status[r] = ROW_DONE and on to next_row; with a
    `flagged` label (a first pass that may ask for recomputation), the code there writes
    ROW_MARKED and counts the row in `marked`. Binds next_row."""
    f.mov(ptr(status, bits=32), ROW_DONE)
    if flagged is not None:
        rax = f.physical_gp("rax")
        f.jmp(next_row)
        f.bind(flagged)
        f.mov(ptr(status, bits=32), ROW_MARKED)
        f.mov(rax, marked)
        f.add(rax, 1)
        f.mov(marked, rax)
    f.bind(next_row)
