"""log_softmax and logsumexp kernels: the row-state drivers and the subtracting output pass.

log_softmax(x) = x - c and logsumexp(x) = c with c = ln(sum(exp(x))), per row. Both run in two
native calls a batch of rows:

1. the reduce driver (codegen/abi.py REDUCE_DRIVER_PARAMS) runs the softmax reduction passes on
   every row and leaves each row's pass state (abi.PASS_STATE) in a states array, one 16-byte
   state a row:
     two-pass:   raddextexp, state = (e, 1/v, v) with sum = v * 2^e (one read of x);
     three-pass: rmax then raddexpminusmax, state = (m, 1/sum, sum) with sum = sum(exp(x - m)).
   A two-pass row whose first pass asks for recomputation is marked in status (as the softmax
   driver marks it) and goes through the three-pass reduction instead.
2. the host turns every state into c in float64 (c = ln v + e ln 2 or m + ln sum: a logarithm
   per row, nothing per element); logsumexp ends there;
3. the apply driver (abi.APPLY_DRIVER_PARAMS) runs vsubsub on every row with a per-row state
   holding c as two float32 terms a and b (a + b = c to float64 accuracy):
     y = (x - a) - b
   so that y is not limited by c's float32 rounding when x and c are large and close (two-pass:
   a = float32(c), b = float32(c - a); three-pass: a = m, b = float32(ln sum), where x - m is
   exact near the maximum). No exp at all in this pass.
"""
from __future__ import annotations

from softjit.codegen.abi import (F32, PASS_OK, PASS_STATE, apply_driver_signature,
                                 reduce_driver_signature)
from softjit.codegen.kernels.driver import keep_arguments, write_row_status
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.pass_emitter import buffers, pass_function, return_value
from softjit.codegen.operands import Symbol, ptr
from softjit.codegen.stream import Function

# The apply pass's two terms sit where the softmax passes keep m (or e) and 1/sum.
STATE_OFFSET_HIGH = PASS_STATE.offset("max_or_exponent")
STATE_OFFSET_LOW = PASS_STATE.offset("scale")


def build_vsubsub(name: str, target, unroll: int, nontemporal: bool = False,
                  element=F32) -> Function:
    f = pass_function(name, target, "y = (x - a) - b with a = state[0], b = state[1]: log_softmax's\n"
                                    "output pass, c = a + b = ln(sum(exp(x))) held as two floats.",
                      element)
    x, y, n, state = f.args
    a, b = f.vec("a"), f.vec("b")
    f.vbroadcastss(a, ptr(state, STATE_OFFSET_HIGH, bits=32))
    f.vbroadcastss(b, ptr(state, STATE_OFFSET_LOW, bits=32))

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        f.comment("y = (x - a) - b")
        for v in xs:
            f.vsubps(v, v, a)
        for v in xs:
            f.vsubps(v, v, b)
        for i, v in enumerate(xs):
            tile.store(y, i, v)

    for_each_vector(f, n, [x, y], unroll, step, "subsub", nontemporal_stores=nontemporal,
                    elements=buffers(f, element))
    return_value(f, PASS_OK)
    return f


def build_reduce_driver(name: str, target, passes: list, may_flag: bool,
                        element=F32) -> Function:
    """Run the reduction passes on each row, each row's state left in states[r]; a row whose
    first pass returns PASS_RECOMPUTE is marked (its later passes skipped)."""
    f = Function(reduce_driver_signature(
        name,
        "The reduction passes of `rows` rows of n floats (row r at x + r*x_row_stride bytes);\n"
        "row r's pass state goes to states + 16*r bytes. status[r] = 1 marks a row whose\n"
        "first pass asked for recomputation; returns how many rows were marked.", element), target)
    keep = keep_arguments(f)
    marked = f.stack(8).sized(64)
    rax = f.physical_gp("rax")
    f.mov(marked, 0)
    done, top, next_row = f.label("done"), f.label("row"), f.label("next_row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    f.bind(top)
    flagged = f.label("flagged") if may_flag else None
    for i, symbol in enumerate(passes):
        # pass(x, y, n, state): a reduction pass writes no y; it gets the state's address
        f.mov(f.argument_register(0), keep["x"])
        f.mov(f.argument_register(1), keep["states"])
        f.mov(f.argument_register(2), keep["n"])
        f.mov(f.argument_register(3), keep["states"])
        f.call(Symbol(symbol))
        if i == 0 and may_flag:
            f.test(rax.r32, rax.r32)
            f.jne(flagged)
    write_row_status(f, keep["status"], marked, flagged, next_row)
    f.add(keep["x"], keep["x_row_stride"])
    f.add(keep["states"], PASS_STATE.size)
    f.add(keep["status"], 4)
    f.sub(keep["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.mov(rax, marked)
    f.ret()
    return f


def build_apply_driver(name: str, target, symbol: str, element=F32) -> Function:
    """Run one output pass on each row with that row's own state (states + 16*r)."""
    f = Function(apply_driver_signature(
        name,
        "The output pass of `rows` rows of n floats; row r at x + r*row_strides[0] bytes, its\n"
        "result at y + r*row_strides[1] bytes, its state at states + 16*r bytes. Returns 0.",
        element), target)
    keep = keep_arguments(f)
    rax = f.physical_gp("rax")
    done, top = f.label("done"), f.label("row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    f.bind(top)
    for index, name_ in enumerate(("x", "y", "n", "states")):
        f.mov(f.argument_register(index), keep[name_])
    f.call(Symbol(symbol))
    f.add(keep["x"], ptr(keep["row_strides"], 0))
    f.add(keep["y"], ptr(keep["row_strides"], 8))
    f.add(keep["states"], PASS_STATE.size)
    f.sub(keep["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.xor(rax.r32, rax.r32)
    f.ret()
    return f
