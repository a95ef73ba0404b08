"""log_softmax and logsumexp kernels: the row drivers, the row's logarithm and the subtracting
output pass.

log_softmax(x) = x - c and logsumexp(x) = c with c = ln(sum(exp(x))), per row. Each row runs,
inside one native call for a whole batch:

1. the reduction passes leave the row's sum as a pass state (abi.PASS_STATE):
     two-pass:   raddextexp, sum = v * 2^e (one read of x);
     three-pass: rmax then raddexpminusmax, sum = sum(exp(x - m)).
   A two-pass row whose first pass asks for recomputation (NaN, +inf, only -inf, magnitudes
   past the two-pass clamp) is reduced again with the three-pass passes, in the same call, and
   marked in status where the driver has one;
2. the row's logarithm (lnextexp or lnexpminusmax) turns the state into c in float64:
     two-pass:   c = ln v + e ln 2;   three-pass: c = m + ln sum
   and leaves the log-sum-exp state (abi.LOG_SUM_EXP_STATE): c, and c as two float32 terms
   a + b (two-pass: a = float32(c), b = float32(c - a); three-pass: a = m, b = float32(ln sum),
   where x - m is exact near the maximum). A three-pass row whose m or sum is not finite (it
   holds a NaN or +inf, or only -inf) gets a = c = NaN;
3. (log_softmax only) the output pass vsubsub writes y = (x - a) - b: no exp, and y is not
   limited by c's float32 rounding when x and c are large and close.

The logarithm of a positive normal float32 s (v or the sum, both at least about 0.5 for a
finite row) is computed in float64: s = 2^k * r with r in [sqrt(1/2), sqrt(2)], then
ln r = 2 atanh(t) = t * sum_j 2 t^(2j) / (2j + 1) with t = (r - 1) / (r + 1), |t| <= 0.1716,
eleven terms (the first left out is below 2^-60 of the sum), and K ln 2 for the integer
K = k (+ e) with ln 2 split in two so that K * LN2_HI is exact for |K| < 2^21.

The logsumexp driver leaves every row's log-sum-exp state for the host to read c; the
log_softmax driver runs all three steps on each row in turn, so a row that fits the L1 cache
is read by the output pass where the reduction left it. softjit.dask, which combines a row's
sums from several chunks, runs the other two: the reduce driver (step 1 alone: each row's pass
state, two-pass rows that need recomputing marked, not recomputed) and the apply driver (step
3 alone, with states it made).
"""
from __future__ import annotations

from softjit.codegen.abi import (F32, LOG_SUM_EXP_STATE, PASS_OK, PASS_STATE, ROW_DONE,
                                 ROW_MARKED, apply_driver_signature,
                                 log_softmax_driver_signature, reduce_driver_signature)
from softjit.codegen.kernels.driver import keep_arguments, write_row_status
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.pass_emitter import buffers, pass_function, return_value, scalar
from softjit.codegen.operands import Symbol, ptr
from softjit.codegen.stream import Function

STATE_OFFSET_HIGH = LOG_SUM_EXP_STATE.offset("high")
STATE_OFFSET_LOW = LOG_SUM_EXP_STATE.offset("low")
STATE_OFFSET_C = LOG_SUM_EXP_STATE.offset("log_sum_exp")
assert LOG_SUM_EXP_STATE.size == PASS_STATE.size  # the logarithm rewrites a row's state in place
_FIRST = PASS_STATE.offset("max_or_exponent")  # m or e
_SUM = PASS_STATE.offset("sum")  # sum or v

# ln 2 = LN2_HI + LN2_LO: LN2_HI (0x3FE62E42FEE00000) has 32 significant bits, so K * LN2_HI is
# exact for integers |K| < 2^21 (the exponents here stay below 2^20 * log2(e) + 64).
LN2_HI = 0.6931471803691238
LN2_LO = 1.9082149292705877e-10
# float32 bits: the exponent field's shift and bias, its mantissa mask, 1.0, sqrt(2) rounded
_MANTISSA_BITS, _EXPONENT_BIAS = 23, 127
_MANTISSA_MASK, _ONE_BITS, _SQRT2_BITS = 0x7FFFFF, 0x3F800000, 0x3FB504F3
_LN_TERMS = 11  # the atanh series' terms, 2 / (2j + 1) for j = 0 .. 10


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


def build_vsub(name: str, target, unroll: int) -> Function:
    """The float32 three-pass row's last pass (codegen/kernels/sumexp.py): y = y - b in place,
    y holding x - m from the middle pass; x is not read."""
    f = pass_function(name, target, "y = y - b with b = state[1] (x is not read): log_softmax's\n"
                                    "last pass after y = x - m was stored.")
    _, y, n, state = f.args
    b = f.vec("b")
    f.vbroadcastss(b, ptr(state, STATE_OFFSET_LOW, bits=32))

    def step(tile):
        ys = f.vecs("y", tile.count)
        for i, v in enumerate(ys):
            tile.load(v, y, i)
        f.comment("y = (x - m) - b")
        for v in ys:
            f.vsubps(v, v, b)
        for i, v in enumerate(ys):
            tile.store(y, i, v)

    for_each_vector(f, n, [y], unroll, step, "sub")
    return_value(f, PASS_OK)
    return f


# ---------------------------------------------------------------------------- the row's logarithm
def build_ln_state(name: str, target, three_pass: bool) -> Function:
    """The pass that turns a row's reduction state into its log-sum-exp state (see the module
    docstring); x, y and n are not read."""
    what = ("c = m + ln(sum), a = m, b = ln(sum) (NaN where m or sum is not finite)"
            if three_pass else "c = ln(v) + e ln 2, a = float32(c), b = float32(c - a)")
    f = pass_function(name, target, f"The log-sum-exp state of a row from its {'three' if three_pass else 'two'}"
                                    f"-pass state:\n{what}; c as float64 at state + 8.")
    _, _, _, state = f.args
    first = f.vec("first")
    total = f.vec("total")
    f.vmovss(first.xmm, ptr(state, _FIRST, bits=32))
    f.vmovss(total.xmm, ptr(state, _SUM, bits=32))
    k, log_r = _log_parts(f, total)
    if not three_pass:
        f.comment("K = k + e (exact: both are integers below 2^24)")
        f.vaddss(k.xmm, k.xmm, first.xmm)
    c = _add_k_ln2(f, k, log_r)
    high, low = f.vec("high"), f.vec("low")
    if three_pass:
        f.comment("not finite (NaN, +inf, only -inf): nan_or_zero = (m - m) + (sum - sum) is NaN")
        nan_or_zero, t = f.vec("nan_or_zero"), f.vec("t")
        f.vsubss(nan_or_zero.xmm, first.xmm, first.xmm)
        f.vsubss(t.xmm, total.xmm, total.xmm)
        f.vaddss(nan_or_zero.xmm, nan_or_zero.xmm, t.xmm)
        f.comment("a = m (+ NaN), b = float32(ln sum) (+ NaN), c = m + ln sum (+ NaN)")
        f.vaddss(high.xmm, first.xmm, nan_or_zero.xmm)
        f.vcvtsd2ss(low.xmm, c.xmm, c.xmm)
        f.vaddss(low.xmm, low.xmm, nan_or_zero.xmm)  # (vsub reads b alone)
        f.vcvtss2sd(t.xmm, high.xmm, high.xmm)
        f.vaddsd(c.xmm, c.xmm, t.xmm)
    else:
        f.comment("a = float32(c), b = float32(c - a)")
        back = f.vec("back")
        f.vcvtsd2ss(high.xmm, c.xmm, c.xmm)
        f.vcvtss2sd(back.xmm, high.xmm, high.xmm)
        f.vsubsd(back.xmm, c.xmm, back.xmm)
        f.vcvtsd2ss(low.xmm, back.xmm, back.xmm)
    f.vmovss(ptr(state, STATE_OFFSET_HIGH, bits=32), high.xmm)
    f.vmovss(ptr(state, STATE_OFFSET_LOW, bits=32), low.xmm)
    f.vmovsd(ptr(state, STATE_OFFSET_C, bits=64), c.xmm)
    return_value(f, PASS_OK)
    return f


def _log_parts(f: Function, s):
    """(K as a float32 in lane 0, ln r as a float64 in lane 0) with s = 2^K * r, s a positive
    normal float32 in lane 0 of s, r in [sqrt(1/2), sqrt(2)]."""
    f.comment("s = 2^k * r: k, r in [1, 2) from the bit fields; r / 2, k + 1 where r > sqrt(2)")
    bits, k_bits, halved, k_next = f.gp("s_bits"), f.gp("k_bits"), f.gp("halved"), f.gp("k_next")
    f.vmovd(bits.r32, s.xmm)
    f.mov(k_bits, bits)
    f.shr(k_bits, _MANTISSA_BITS)
    f.and_(bits, _MANTISSA_MASK)
    f.or_(bits, _ONE_BITS)
    f.lea(halved, ptr(bits, -(1 << _MANTISSA_BITS)))
    f.lea(k_next, ptr(k_bits, 1))
    f.cmp(bits, _SQRT2_BITS)
    f.cmova(bits, halved)
    f.cmova(k_bits, k_next)
    k, r = f.vec("k"), f.vec("r")
    f.vmovd(k.xmm, k_bits.r32)
    f.vcvtdq2ps(k.xmm, k.xmm)
    f.vsubss(k.xmm, k.xmm, scalar(f.constant("exponent_bias", float(_EXPONENT_BIAS)), 32))
    f.vmovd(r.xmm, bits.r32)
    f.vcvtss2sd(r.xmm, r.xmm, r.xmm)
    f.comment("ln r = t * sum_j 2 t^(2j) / (2j + 1), t = (r - 1) / (r + 1)")
    t, den, z, p = f.vec("t"), f.vec("den"), f.vec("z"), f.vec("p")
    f.vaddsd(t.xmm, r.xmm, scalar(f.constant_f64("minus_one_f64", -1.0), 64))
    f.vaddsd(den.xmm, r.xmm, scalar(f.constant_f64("one_f64", 1.0), 64))
    f.vdivsd(t.xmm, t.xmm, den.xmm)
    f.vmulsd(z.xmm, t.xmm, t.xmm)
    coefficients = [2.0 / (2 * j + 1) for j in range(_LN_TERMS)]
    f.vmovsd(p.xmm, scalar(f.constant_f64(f"atanh_c{_LN_TERMS - 1}", coefficients[-1]), 64))
    for j in range(_LN_TERMS - 2, -1, -1):
        f.vmulsd(p.xmm, p.xmm, z.xmm)
        f.vaddsd(p.xmm, p.xmm, scalar(f.constant_f64(f"atanh_c{j}", coefficients[j]), 64))
    f.vmulsd(p.xmm, p.xmm, t.xmm)
    return k, p


def _add_k_ln2(f: Function, k, log_r):
    """c = K ln 2 + ln r in float64: K * LN2_HI exactly, plus (K * LN2_LO + ln r)."""
    f.comment("c = K * LN2_HI + (K * LN2_LO + ln r)")
    kd, c = f.vec("k_f64"), f.vec("c")
    f.vcvtss2sd(kd.xmm, k.xmm, k.xmm)
    f.vmulsd(c.xmm, kd.xmm, scalar(f.constant_f64("ln2_lo", LN2_LO), 64))
    f.vaddsd(c.xmm, c.xmm, log_r.xmm)
    f.vmulsd(kd.xmm, kd.xmm, scalar(f.constant_f64("ln2_hi", LN2_HI), 64))
    f.vaddsd(c.xmm, c.xmm, kd.xmm)
    return c


# ---------------------------------------------------------------------------- the row drivers
class RowPlan:
    """The symbols one row runs: the first reduction (raddextexp, or None for a three-pass
    module), the three-pass reduction (rmax, raddexpminusmax), the two logarithms."""

    def __init__(self, two_pass_reduce, three_pass_reduce: tuple, ln_two_pass, ln_three_pass,
                 stored_difference: tuple | None = None):
        self.two_pass_reduce = two_pass_reduce
        self.three_pass_reduce = three_pass_reduce
        self.ln_two_pass, self.ln_three_pass = ln_two_pass, ln_three_pass
        # (float32 three-pass) the log_softmax driver's middle and last passes: y = x - m with
        # the sum, then y -= b in place (codegen/kernels/sumexp.py); None: the output pass
        self.stored_difference = stored_difference


def _call_pass(f: Function, symbol: str, x, y, n, state) -> None:
    for index, value in enumerate((x, y, n, state)):
        f.mov(f.argument_register(index), value)
    f.call(Symbol(symbol))


def _row_state(f: Function, plan: RowPlan, x, n, state, status=None, marked=None) -> None:
    """Emit one row's reduction and logarithm: its log-sum-exp state left at `state`. With a
    status pointer, status[r] = ROW_MARKED (and `marked` counts the row) for a row the
    three-pass passes reduced in a two-pass module, and in a three-pass module for a row whose
    c is NaN (a NaN, a +inf or only -inf: the host gives it its special value); ROW_DONE
    otherwise."""
    rax = f.physical_gp("rax")
    done = f.label("state_done")
    if plan.two_pass_reduce is not None:
        three = f.label("three_pass")
        _call_pass(f, plan.two_pass_reduce, x, state, n, state)
        f.test(rax.r32, rax.r32)  # PASS_RECOMPUTE: reduce the row again with three passes
        f.jne(three)
        _call_pass(f, plan.ln_two_pass, x, state, n, state)
        if status is not None:
            f.mov(ptr(status, bits=32), ROW_DONE)
        f.jmp(done)
        f.bind(three)
    for symbol in plan.three_pass_reduce:
        _call_pass(f, symbol, x, state, n, state)
    _call_pass(f, plan.ln_three_pass, x, state, n, state)
    if status is not None:
        if plan.two_pass_reduce is None:
            f.mov(ptr(status, bits=32), ROW_DONE)
            f.comment("c is NaN, and so is a = m (+ NaN): mark the row (VUCOMISS: PF when "
                      "unordered)")
            high = f.vec("a")
            f.vmovss(high.xmm, ptr(state, STATE_OFFSET_HIGH, bits=32))
            f.vucomiss(high.xmm, high.xmm)
            f.jnp(done)
        f.mov(ptr(status, bits=32), ROW_MARKED)
        f.mov(rax, marked)
        f.add(rax, 1)
        f.mov(marked, rax)
    f.bind(done)


def build_reduce_driver(name: str, target, passes: list, may_flag: bool,
                        element=F32) -> Function:
    """The module's own reduction passes on each row, each row's pass state (abi.PASS_STATE)
    left in states[r]; a row whose first pass returns PASS_RECOMPUTE is marked (its later
    passes skipped). softjit.dask's first pass: it combines the states of a row's chunks."""
    def row(f, keep, marked):
        rax = f.physical_gp("rax")
        flagged = f.label("flagged") if may_flag else None
        next_row = f.label("next_row")
        for i, symbol in enumerate(passes):
            _call_pass(f, symbol, keep["x"], keep["states"], keep["n"], keep["states"])
            if i == 0 and may_flag:
                f.test(rax.r32, rax.r32)
                f.jne(flagged)
        write_row_status(f, keep["status"], marked, flagged, next_row)

    return _reduce_rows(reduce_driver_signature(
        name,
        "The reduction passes of `rows` rows of n floats (row r at x + r*x_row_stride bytes);\n"
        "row r's pass state goes to states + 16*r bytes. status[r] = 1 marks a row whose\n"
        "first pass asked for recomputation; returns how many rows were marked.", element),
        target, row)


def build_logsumexp_driver(name: str, target, plan: RowPlan, element=F32) -> Function:
    """logsumexp: each row's log-sum-exp state in states[r]; status[r] = 1 marks a row the
    three-pass passes reduced (a two-pass module's fallback) or, in a three-pass module, a
    row whose c is NaN; returns how many."""
    return _reduce_rows(reduce_driver_signature(
        name,
        "The log-sum-exp states of `rows` rows of n floats (row r at x + r*x_row_stride bytes):\n"
        "row r's goes to states + 16*r bytes (c as float64 at +8). status[r] = 1 marks a row the\n"
        "three-pass passes reduced (two-pass) or whose c is NaN (three-pass); returns how many\n"
        "rows were marked.", element), target,
        lambda f, keep, marked: _row_state(f, plan, keep["x"], keep["n"], keep["states"],
                                           keep["status"], marked))


def _reduce_rows(signature, target, row) -> Function:
    """A driver over rows of x (x_row_stride) with a 16-byte state and a status word a row:
    row(f, kept arguments, marked) emits one row's work; returns the count in `marked`."""
    f = Function(signature, target)
    keep = keep_arguments(f)
    marked = f.stack(8).sized(64)
    rax = f.physical_gp("rax")
    f.mov(marked, 0)
    done, top = f.label("done"), f.label("row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    f.bind(top)
    row(f, keep, marked)
    f.add(keep["x"], keep["x_row_stride"])
    f.add(keep["states"], PASS_STATE.size)
    f.add(keep["status"], 4)
    f.sub(keep["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.mov(rax, marked)
    f.ret()
    return f


def build_log_softmax_driver(name: str, target, plan: RowPlan, output_symbol: str,
                             element=F32) -> Function:
    """log_softmax: each row's log-sum-exp state (left in states[r]), then the output pass on
    that row while it is still in cache."""
    signature = log_softmax_driver_signature(
        name,
        "log_softmax of `rows` rows of n floats; row r at x + r*row_strides[0] bytes, its\n"
        "result at y + r*row_strides[1] bytes; row r's log-sum-exp state is left at states +\n"
        "16*r bytes. Returns 0.", element)
    return _output_rows(signature, target, output_symbol, plan)


def build_apply_driver(name: str, target, symbol: str, element=F32) -> Function:
    """Run the output pass on each row with the state the caller made for it (states + 16*r:
    a and b as in LOG_SUM_EXP_STATE), for rows whose sums the caller combined (softjit.dask)."""
    signature = apply_driver_signature(
        name,
        "The output pass of `rows` rows of n floats; row r at x + r*row_strides[0] bytes, its\n"
        "result at y + r*row_strides[1] bytes, its state at states + 16*r bytes. Returns 0.",
        element)
    return _output_rows(signature, target, symbol)


def _output_rows(signature, target, output_symbol: str, plan: RowPlan | None = None) -> Function:
    """A driver over rows of x and y (row_strides) calling the output pass on each row with its
    state, after the row's reduction and logarithm where a plan is given."""
    f = Function(signature, target)
    keep = keep_arguments(f)
    rax = f.physical_gp("rax")
    done, top = f.label("done"), f.label("row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    f.bind(top)
    if plan is not None and plan.stored_difference is not None:
        middle, last = plan.stored_difference
        x, y, n, states = keep["x"], keep["y"], keep["n"], keep["states"]
        for symbol in plan.three_pass_reduce[:-1]:
            _call_pass(f, symbol, x, states, n, states)
        _call_pass(f, middle, x, y, n, states)
        _call_pass(f, plan.ln_three_pass, x, states, n, states)
        _call_pass(f, last, y, y, n, states)
    else:
        if plan is not None:
            _row_state(f, plan, keep["x"], keep["n"], keep["states"])
        _call_pass(f, output_symbol, keep["x"], keep["y"], keep["n"], keep["states"])
    f.add(keep["x"], ptr(keep["row_strides"], 0))
    f.add(keep["y"], ptr(keep["row_strides"], 8))
    f.add(keep["states"], LOG_SUM_EXP_STATE.size)
    f.sub(keep["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.xor(rax.r32, rax.r32)
    f.ret()
    return f
