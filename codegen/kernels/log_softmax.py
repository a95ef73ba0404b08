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
is read by the output pass where the reduction left it. The scaled modules' drivers (of s * x)
run the scaled passes (each multiplies x by s as it loads it) and leave to the caller the rows
an overflowed product could make wrong, before writing any of their y (build_log_softmax_driver).
softjit.dask, which combines a row's
sums from several chunks, runs the other two: the reduce driver (step 1 alone: each row's pass
state, two-pass rows that need recomputing marked, not recomputed) and the apply driver (step
3 alone, with states it made).
"""
from __future__ import annotations

from softjit.codegen.abi import (F32, LEFT_TO_CALLER, LOG_SUM_EXP_STATE, PASS_OK,
                                 PASS_RECOMPUTE, PASS_STATE, ROW_DONE, ROW_MARKED,
                                 apply_driver_signature, log_softmax_driver_signature,
                                 reduce_driver_signature)
from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.driver import keep_arguments, write_row_status
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.pass_emitter import (INPUT_SCALE, STATE_INPUT_SCALE, PassEmitter,
                                                  buffers, pass_function, return_value, scalar)
from softjit.codegen.kernels.reduce import horizontal, tree
from softjit.codegen.operands import Mem, Symbol, ptr
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
                  element=F32, scaled: bool = False) -> Function:
    f = pass_function(name, target, "y = (x - a) - b with a = state[0], b = state[1]: log_softmax's\n"
                                    "output pass, c = a + b = ln(sum(exp(x))) held as two floats."
                      + ("\nx stands for s * x, s = state[3] (the input scale)." if scaled else ""),
                      element)
    x, y, n, state = f.args
    scaled_x = PassEmitter(f, (INPUT_SCALE,)).scaled_input(state, x, scaled)
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
                    elements=buffers(f, element), scaled=scaled_x)
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


def build_roverflow(name: str, target, unroll: int, accumulators: int,
                    element=F32) -> Function:
    """Whether a finite x of the row has a product s * x that overflowed to -inf (s = the
    state's input scale): returns PASS_RECOMPUTE if so, else PASS_OK.

    z = x * 0 + s * x is s * x where x is finite and NaN where x is an infinity or NaN, and
    VMINPS(z, acc) returns acc for a NaN z: the minimum over the finite x of their products is
    -inf exactly when such a product overflowed (-inf masks do not count)."""
    f = pass_function(name, target, "Returns 1 when a finite x[i] has s * x[i] = -inf (an overflowed\n"
                                    "product), s = state[3] (the input scale); else 0.", element)
    x, _, n, state = f.args
    s = PassEmitter(f).broadcast_state(state, STATE_INPUT_SCALE, INPUT_SCALE)
    zero = f.vec("zero")
    f.vxorps(zero, zero, zero)
    accs = f.vecs("min", accumulators)
    for acc in accs:
        f.vxorps(acc, acc, acc)  # (0 is no overflow: only -inf is looked for)

    def step(tile):
        xs, zs = f.vecs("x", tile.count), f.vecs("z", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)  # (the tail's other lanes: 0)
        f.comment("z = x * 0 + s * x: the product where x is finite, NaN where it is not")
        for z, v in zip(zs, xs):
            f.vmulps(z, v, s)
        for z, v in zip(zs, xs):
            f.vfmadd231ps(z, v, zero)
        f.comment("min = min(z, min): a NaN z leaves min as it is")
        for i, z in enumerate(zs):
            acc = tile.accumulator(accs, i)
            f.vminps(acc, z, acc)

    for_each_vector(f, n, [x], unroll, step, "overflow", elements=buffers(f, element))
    result = tree(f, accs, lambda d, a, b: f.vminps(d, a, b))
    horizontal(f, result, lambda d, a, b: f.vminps(d, a, b))
    overflowed = f.label("overflowed")
    f.vucomiss(result.xmm, scalar(f.constant("minus_inf", K.NEG_INF), 32))
    f.je(overflowed)  # (never unordered: min holds no NaN)
    return_value(f, PASS_OK)
    f.bind(overflowed)
    return_value(f, PASS_RECOMPUTE)
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
    module), the three-pass reduction (rmax, raddexpminusmax), the two logarithms; a scaled
    module's also the overflow check (roverflow), None in an unscaled one."""

    def __init__(self, two_pass_reduce, three_pass_reduce: tuple, ln_two_pass, ln_three_pass,
                 stored_difference: tuple | None = None, overflow_check=None):
        self.two_pass_reduce = two_pass_reduce
        self.three_pass_reduce = three_pass_reduce
        self.ln_two_pass, self.ln_three_pass = ln_two_pass, ln_three_pass
        # (float32 three-pass) the log_softmax driver's middle and last passes: y = x - m with
        # the sum, then y -= b in place (codegen/kernels/sumexp.py); None: the output pass
        self.stored_difference = stored_difference
        self.overflow_check = overflow_check

    @property
    def scaled(self) -> bool:
        return self.overflow_check is not None


def _call_pass(f: Function, symbol: str, x, y, n, state) -> None:
    """symbol(x, y, n, state); state a register, or a stack block (its address is passed)."""
    for index, value in enumerate((x, y, n, state)):
        if isinstance(value, Mem):
            f.lea(f.argument_register(index), value)
        else:
            f.mov(f.argument_register(index), value)
    f.call(Symbol(symbol))


def _copy_dword(f: Function, dest, source) -> None:
    word = f.gp("word")
    f.mov(word.r32, source)
    f.mov(dest, word.r32)


def _input_scale(f: Function, states):
    """A scaled driver's input scale, read from the first row's state before any pass runs (the
    caller put it there, abi.LEFT_TO_CALLER's comment), kept in a 16-byte stack state at its
    PASS_STATE offset (the other 12 bytes are the driver's to use)."""
    kept = f.stack(PASS_STATE.size)
    f.comment("the input scale, from the first row's state (the rows' logarithms overwrite it)")
    _copy_dword(f, kept.sized(32) + STATE_INPUT_SCALE, ptr(states, STATE_INPUT_SCALE, bits=32))
    return kept


def _row_state(f: Function, plan: RowPlan, x, n, state, status=None, marked=None,
               scale=None) -> None:
    """Emit one row's reduction and logarithm: its log-sum-exp state left at `state`. With a
    status pointer, status[r] = ROW_MARKED (and `marked` counts the row) for a row the
    three-pass passes reduced in a two-pass module, and in a three-pass module for a row whose
    c is NaN (a NaN, a +inf or only -inf: the host gives it its special value); ROW_DONE
    otherwise. scale: a scaled module's kept input scale (see _input_scale), copied into the
    row's state first."""
    rax = f.physical_gp("rax")
    done = f.label("state_done")
    if scale is not None:
        _copy_dword(f, ptr(state, STATE_INPUT_SCALE, bits=32), scale.sized(32) + STATE_INPUT_SCALE)
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
    row whose c is NaN; returns how many. Scaled (of s * x): a row whose maximum product is
    infinite gets c = NaN, as a row holding +inf does, and is marked; the caller computes such
    rows (a product may have overflowed)."""
    doc = ("The log-sum-exp states of `rows` rows of n floats (row r at x + r*x_row_stride bytes):\n"
           "row r's goes to states + 16*r bytes (c as float64 at +8). status[r] = 1 marks a row the\n"
           "three-pass passes reduced (two-pass) or whose c is NaN (three-pass); returns how many\n"
           "rows were marked.")
    if plan.scaled:
        doc += ("\nOf s * x, s the float at states + 12 (the input scale); c = NaN where the\n"
                "largest product is infinite.")
    return _reduce_rows(reduce_driver_signature(name, doc, element), target,
                        lambda f, keep, marked, scale=None: _row_state(
                            f, plan, keep["x"], keep["n"], keep["states"], keep["status"],
                            marked, scale), plan.scaled)


def _reduce_rows(signature, target, row, scaled: bool = False) -> Function:
    """A driver over rows of x (x_row_stride) with a 16-byte state and a status word a row:
    row(f, kept arguments, marked[, kept input scale]) emits one row's work; returns the count
    in `marked`."""
    f = Function(signature, target)
    keep = keep_arguments(f)
    marked = f.stack(8).sized(64)
    rax = f.physical_gp("rax")
    f.mov(marked, 0)
    done, top = f.label("done"), f.label("row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    if scaled:
        scale = _input_scale(f, keep["states"])
    f.bind(top)
    if scaled:
        row(f, keep, marked, scale)
    else:
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
    that row while it is still in cache.

    Scaled (of s * x): a row whose maximum product is infinite, or whose products may hold one
    that overflowed to -inf where y = s * x - c is finite, is left to the caller (y not
    written, abi.LEFT_TO_CALLER). A -inf product of a finite x beside a finite maximum gives
    the exact y = -inf when c >= 0 (then |s * x - c| >= |s * x|, beyond the float32 range);
    only with |s| > 1 (else no product of a finite x overflows) and c < 1 (a bound above c < 0
    with room for c's rounding; the driver reads a = float32(c) after the two-pass logarithm,
    or the row's maximum m <= c right after the max pass) does the row run the overflow check
    pass, before any of its y is written (the float32 three-pass middle pass stores y)."""
    doc = ("log_softmax of `rows` rows of n floats; row r at x + r*row_strides[0] bytes, its\n"
           "result at y + r*row_strides[1] bytes; row r's log-sum-exp state is left at states +\n"
           "16*r bytes. Returns 0.")
    if plan.scaled:
        doc = doc.replace("Returns 0.", "Of s * x, s the float at states + 12 (the input scale);\n"
                                        "returns how many rows were left to the caller (their\n"
                                        "y untouched, c = +inf in their state).")
    return _output_rows(log_softmax_driver_signature(name, doc, element), target, output_symbol,
                        plan)


def build_apply_driver(name: str, target, symbol: str, element=F32) -> Function:
    """Run the output pass on each row with the state the caller made for it (states + 16*r:
    a and b as in LOG_SUM_EXP_STATE), for rows whose sums the caller combined (softjit.dask)."""
    signature = apply_driver_signature(
        name,
        "The output pass of `rows` rows of n floats; row r at x + r*row_strides[0] bytes, its\n"
        "result at y + r*row_strides[1] bytes, its state at states + 16*r bytes. Returns 0.",
        element)
    return _output_rows(signature, target, symbol)


_MAGNITUDE_MASK = 0x7FFFFFFF  # float32 bits without the sign
# float64 LEFT_TO_CALLER (+inf) as its two dwords, low first
_LEFT_LOW, _LEFT_HIGH = 0, 0x7FF00000
assert LEFT_TO_CALLER == float("inf")


def _overflow_check(f: Function, plan: RowPlan, keep: dict, own, left) -> None:
    """Where an overflowed product could change y (|s| > 1, and the float at the row's state
    below 1: a = float32(c) after the two-pass logarithm, m <= c after the max pass), run the
    overflow check pass and go to `left` if it finds one (build_log_softmax_driver)."""
    rax = f.physical_gp("rax")
    skip = f.label("no_check")
    word = f.gp("scale_bits")
    f.mov(word.r32, own.sized(32) + STATE_INPUT_SCALE)
    f.and_(word.r32, _MAGNITUDE_MASK)
    f.cmp(word.r32, _ONE_BITS)
    f.jbe(skip)  # |s| <= 1: no product of a finite x overflows
    bound = f.vec("a_or_m")
    f.vmovss(bound.xmm, ptr(keep["states"], STATE_OFFSET_HIGH, bits=32))
    f.vucomiss(bound.xmm, scalar(f.constant("one", 1.0), 32))
    f.jp(skip)  # (a NaN row: its y is NaN whatever its products)
    f.jae(skip)
    _call_pass(f, plan.overflow_check, keep["x"], keep["y"], keep["n"], own)
    f.test(rax.r32, rax.r32)
    f.jne(left)
    f.bind(skip)


def _scaled_row(f: Function, plan: RowPlan, keep: dict, own, output_symbol: str, left,
                next_row) -> None:
    """One row of a scaled log_softmax driver: its state, the overflow check where it can
    matter (before any of y is written), then y; a row that cannot be computed as the unscaled
    driver would on the products goes to `left` with nothing written, the others to
    next_row."""
    rax = f.physical_gp("rax")
    x, y, n, states = keep["x"], keep["y"], keep["n"], keep["states"]
    _copy_dword(f, ptr(states, STATE_INPUT_SCALE, bits=32), own.sized(32) + STATE_INPUT_SCALE)

    def subtracting_output():
        f.comment("the output pass's state: a and b of the row's, the input scale kept")
        pair = f.gp("a_and_b")
        f.mov(pair, ptr(states, STATE_OFFSET_HIGH, bits=64))
        f.mov(own.sized(64) + STATE_OFFSET_HIGH, pair)
        _call_pass(f, output_symbol, x, y, n, own)
        f.jmp(next_row)

    if plan.two_pass_reduce is not None:
        three = f.label("three_pass")
        _call_pass(f, plan.two_pass_reduce, x, states, n, states)
        f.test(rax.r32, rax.r32)  # PASS_RECOMPUTE: reduce the row again with three passes
        f.jne(three)
        _call_pass(f, plan.ln_two_pass, x, states, n, states)
        _overflow_check(f, plan, keep, own, left)
        subtracting_output()
        f.bind(three)
    rmax, add = plan.three_pass_reduce
    _call_pass(f, rmax, x, states, n, states)
    f.test(rax.r32, rax.r32)  # the scaled max pass: PASS_RECOMPUTE, max not finite
    f.jne(left)
    _overflow_check(f, plan, keep, own, left)
    if plan.stored_difference is not None:
        middle, last = plan.stored_difference
        _call_pass(f, middle, x, y, n, states)
        _call_pass(f, plan.ln_three_pass, x, states, n, states)
        _call_pass(f, last, y, y, n, states)
        f.jmp(next_row)
    else:
        _call_pass(f, add, x, states, n, states)
        _call_pass(f, plan.ln_three_pass, x, states, n, states)
        subtracting_output()


def _output_rows(signature, target, output_symbol: str, plan: RowPlan | None = None) -> Function:
    """A driver over rows of x and y (row_strides) calling the output pass on each row with its
    state, after the row's reduction and logarithm where a plan is given (a scaled plan: with
    the rows left to the caller counted, see build_log_softmax_driver)."""
    f = Function(signature, target)
    keep = keep_arguments(f)
    rax = f.physical_gp("rax")
    scaled = plan is not None and plan.scaled
    done, top = f.label("done"), f.label("row")
    if scaled:
        left_count = f.stack(8).sized(64)
        f.mov(left_count, 0)
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    own = _input_scale(f, keep["states"]) if scaled else None
    f.bind(top)
    if scaled:
        left, next_row = f.label("left"), f.label("next_row")
        _scaled_row(f, plan, keep, own, output_symbol, left, next_row)
        f.bind(left)
        f.mov(ptr(keep["states"], STATE_OFFSET_C, bits=32), _LEFT_LOW)
        f.mov(ptr(keep["states"], STATE_OFFSET_C + 4, bits=32), _LEFT_HIGH)
        f.mov(rax, left_count)
        f.add(rax, 1)
        f.mov(left_count, rax)
        f.bind(next_row)
    elif plan is not None and plan.stored_difference is not None:
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
    if scaled:
        f.mov(rax, left_count)
    else:
        f.xor(rax.r32, rax.r32)
    f.ret()
    return f
