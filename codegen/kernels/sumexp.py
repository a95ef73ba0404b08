"""log_softmax's three-pass middle pass: y = x - m stored, and sum(exp(x - m)) with an exp that
costs fewer floating-point operations than the softmax passes' (codegen/kernels/exp.py).

The float32 three-pass log_softmax row is then
    rminmax:                m = max(x), and min(x)              (build_rminmax_pass)
    raddexpstoreminusmax:   y = x - m, sum = sum(exp(x - m))     (this module)
    the row's logarithm:    b = float32(ln sum)                 (log_softmax.build_ln_state)
    vsub:                   y = y - b, in place                 (log_softmax.build_vsub)
which gives y the bits of the subtracting output pass's (x - m) - b, while the last pass reads
and writes the same lines of y (no separate read of x). The middle pass is bound by the
floating-point pipes, so the store of y costs little there. (The plain pass, without the store,
is the three-pass modules' reduction for logsumexp, softjit.dask and the 16-bit rows: the same
sums bit for bit.)

exp(d), d = x - m <= 0, with a table of L = 2^l entries, L the vector's lanes (AVX-512: 16,
AVX2: 8), read by one VPERMPS of a register, and a degree-3 polynomial:

    d  = max(d, D_MIN)                       (-inf and far-below-max terms: about 1.6e-38)
    nb = fma(d, L log2e, MAGIC)              N = round(L d log2e) in nb's low mantissa bits
    N  = nb - MAGIC                          (exact)
    t  = fma(N, -ln2/L, d)                   one-constant reduction, |t| < 0.0435
    s  = T'[N mod L] + (nb << (23 - l))      2^(N/L) from the table and the exponent field
    f  = 1 + t (C1 + t (C2 + C3 t))          three FMAs, f ~ exp(t)
    sum += f * s                             one FMA

Six FMA-pipe operations, four on the add pipes (sub m, clamp, sub magic, shift) and two on any
pipe (vpermps, vpaddd) per vector (three on the add pipes where the row's min - m is at least
D_MIN: then no d needs the clamp, and the float32 rows skip it, the same sums bit for bit), against seven and six (VSCALEFPS takes two) for the degree-5
exp with VRNDSCALEPS and VSCALEFPS on AVX-512, and eight and five for the AVX2 degree-5 exp; the
accumulation rides on an FMA. (A 32-entry table with a degree-2 polynomial has one FMA less
but needs VPERMT2PS, which measured 0.9 cycles a vector slower on Zen 4 than VPERMPS and the
FMA together.)

Why it is exact enough (relative error of each term f * s against exp(d), for d >= D_MIN):
- N: MAGIC = 1.5 * 2^23 makes the FMA round L d log2e' + MAGIC to an integer, exactly the
  nearest to L d log2e' (log2e' = L log2e rounded to float32, relative error <= 2^-24), so
  |L d log2e - N| <= 0.5 + 126 L * 2^-24 and |d - N ln2/L| <= 0.04332 (L = 8; half for 16);
- t: fma(N, -fl(ln2)/L, d) rounds once; fl(ln2)/L (exact: a power-of-two scaling) differs
  from ln2/L by < 1.91e-9 / L, so t is off by at most |N| * 1.91e-9 / L <= 2.41e-7 (|N| <=
  126 L + 1 for d >= D_MIN): a relative error of at most 2.41e-7 in exp(t), less for terms near
  the max (|N| small), which dominate the sum; |t| < 0.04332 + 2.5e-7 < T_MAX = 0.0435;
- T'[j] = bits(float32(2^(j/L))) - (j << (23 - l)): adding nb << (23 - l) (whose low 23 + l
  bits... precisely: (N << (23 - l)) mod 2^32, with N = L k + j) gives bits(2^(j/L)) + (k << 23),
  which is float32(2^(j/L)) * 2^k while the exponent field stays >= 1: k >= -126, i.e.
  N >= -126 L, i.e. d >= -87.33; D_MIN = -87 keeps N >= -87 L log2e - 1 > -126 L. The table's
  rounding: <= 2^-24 relative;
- f: C1, C2, C3 minimise max |(1 + t (C1 + t (C2 + C3 t))) / exp(t) - 1| on |t| <= T_MAX:
  2.8e-8 with the float32 coefficients (P3_ERROR, checked in tests/kernels/test_sumexp.py),
  plus the float32 roundings of q and f (<= 2^-24 each, relative);
- clamped terms (d < D_MIN, -inf): each adds at most exp(-87) < 1.7e-38 to a sum that is at
  least 1 (the max's own term is exactly 1: t = 0, f = 1, s = 1): below float32's resolution
  of the sum for any row shorter than 2^100 elements.
Every term is thus within about 5e-7 of exp(d) relative (2.41e-7 + 6e-8 + 2.8e-8 + 1.8e-7
of roundings), and so is the sum before its own rounding (a weighted mean of the terms'
errors); the float32 block sums add their T * 2^-24 (LogSoftmax.terms_per_lane), as in the
softmax passes. y's absolute error is the sum's relative error plus the logarithm's (1e-16):
within the 2e-6 * max(1, |y|) log_softmax promises.

NaN: a NaN d passes the clamp (VMAXPS returns its second source) and makes t, f and the sum
NaN, which is what the logarithm needs to see (a NaN row, or m = +-inf: x - m is NaN at the
infinity itself).
"""
from __future__ import annotations

from softjit.codegen.abi import F32, PASS_OK, PASS_RECOMPUTE, PASS_STATE
from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.exp import resident_fit
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.pass_emitter import (INPUT_SCALE, STATE_MAX_OR_EXPONENT,
                                                  PassEmitter, buffers, pass_function,
                                                  return_value, scalar)
from softjit.codegen.kernels.reduce import horizontal, tree
from softjit.codegen.operands import Mem, ptr
from softjit.codegen.stream import Function

MAGIC = K.f32("0x1.8p23")  # 1.5 * 2^23: integers land in the low mantissa bits
D_MIN = -87.0  # N >= -126 L: the table entries' exponent field stays >= 1
C1 = K.f32("0x1.000000p+0")
C2 = K.f32("0x1.00088Ep-1")
C3 = K.f32("0x1.5548DCp-3")
T_MAX = 0.0435  # |t| stays below this (module docstring)
P3_ERROR = 2.8e-8  # max |(1 + t (C1 + t (C2 + C3 t))) / exp(t) - 1| on |t| <= T_MAX


def table_bits(lanes: int) -> int:
    """l: the table has 2^l = lanes entries."""
    return lanes.bit_length() - 1


def shift(lanes: int) -> int:
    """nb << shift moves N's bits above its low l into the exponent field."""
    return 23 - table_bits(lanes)


def table(lanes: int) -> tuple:
    """T'[j] = bits(float32(2^(j/L))) - (j << shift), j = 0..L-1 (module docstring)."""
    import struct

    words = []
    for j in range(lanes):
        bits = struct.unpack("<I", struct.pack("<f", 2.0 ** (j / lanes)))[0]
        words.append(bits - (j << shift(lanes)))
    return tuple(words)


def constant_values(lanes: int) -> dict:
    """The float32 constants of the table exp on vectors of `lanes` lanes."""
    return {"log2e_xl": K.LOG2E * lanes,  # exact: a power-of-two scaling of float32 log2e
            "minus_ln2_xl": -K.LN2 / lanes,  # exact, likewise
            "c1": C1, "c2": C2, "c3": C3, "one": 1.0, "magic": MAGIC}


# rminmax leaves the row's minimum in the state's sum field, where the sum pass reads it first
# and then writes the sum
STATE_MIN = PASS_STATE.offset("sum")


def build_rminmax_pass(name: str, target, unroll: int, accumulators: int,
                       scaled: bool = False) -> Function:
    """state[0] = max(x), state[2] = min(x) (float32 x; NaN need not propagate: the sum pass
    turns a NaN into a NaN sum). With the minimum the sum pass knows whether any x - m can fall
    below D_MIN, and runs without the clamp when none can (its loads of x are read from the
    same cache lines as the max's, so the minimum costs no extra read). scaled: of s * x (s =
    state[3], multiplied into x as it is loaded), returning PASS_RECOMPUTE when the maximum is
    not finite, as the scaled softmax max pass does (a product may have overflowed)."""
    f = pass_function(name, target, "state[0] = max(x[0:n]), state[2] = min(x[0:n]) (where the "
                                    "sum pass\nwrites the sum); NaN need not propagate."
                      + ("\nx stands for s * x, s = state[3] (the input scale); returns 1 when "
                         "the max\nis not finite." if scaled else ""))
    x, _, n, state = f.args
    scaled_x = PassEmitter(f, (INPUT_SCALE,)).scaled_input(state, x, scaled)
    minus_inf = f.constant("minus_inf", K.NEG_INF)
    plus_inf = f.constant("plus_inf", -K.NEG_INF)
    highs, lows = f.vecs("max", accumulators), f.vecs("min", accumulators)
    for acc in highs:
        f.fill_vector(acc, minus_inf)
    for acc in lows:
        f.fill_vector(acc, plus_inf)

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i, fill=minus_inf)
        for i, v in enumerate(xs):
            acc = tile.accumulator(highs, i)
            f.vmaxps(acc, v, acc)  # a NaN in x is dropped (VMAXPS returns its second source)
        if tile.tail is not None:  # the lanes past n: +inf for the minimum
            for i, v in enumerate(xs):
                tile.load(v, x, i, fill=plus_inf)
        for i, v in enumerate(xs):
            acc = tile.accumulator(lows, i)
            f.vminps(acc, v, acc)

    f.comment("max and min, accumulator i mod K for vector i")
    for_each_vector(f, n, [x], unroll, step, "minmax", scaled=scaled_x)
    results = {}
    for accs, op in ((highs, f.vmaxps), (lows, f.vminps)):
        result = tree(f, accs, lambda d, a, b, op=op: op(d, b, a))
        horizontal(f, result, lambda d, a, b, op=op: op(d, b, a))
        offset = STATE_MAX_OR_EXPONENT if accs is highs else STATE_MIN
        f.vmovss(ptr(state, offset, bits=32), result.xmm)
        results[offset] = result
    if scaled:
        f.comment("recompute unless the max is finite (VUCOMISS: equal or unordered sets ZF)")
        recompute = f.label("recompute")
        for bound in ("plus_inf", "minus_inf"):
            f.vucomiss(results[STATE_MAX_OR_EXPONENT].xmm,
                       scalar(f.constant(bound, _INFINITIES[bound]), 32))
            f.je(recompute)
        return_value(f, PASS_OK)
        f.bind(recompute)
        return_value(f, PASS_RECOMPUTE)
        return f
    return_value(f, PASS_OK)
    return f


_INFINITIES = {"plus_inf": -K.NEG_INF, "minus_inf": K.NEG_INF}


# Constants kept in registers, those read most first (resident_fit keeps what fits)
_RESIDENT = ("table", "log2e_xl", "minus_ln2_xl", "c2", "c1", "one", "magic", "c3")


def build_sum_pass(name: str, target, unroll: int, accumulators: int, block: int,
                   interleave: int = 0, store: bool = True, element=F32,
                   after_minmax: bool = False, scaled: bool = False) -> Function:
    """(store) y = x - m, and state[1] = 1 / sum(exp(x - m)), state[2] = the sum, m = state[0].
    Without the store, the same sum bit for bit (the logsumexp and reduce drivers' pass, and
    the 16-bit three-pass modules', whose x is widened as it is loaded; x - m is stored only as
    float32). after_minmax: state[2] holds min(x) (build_rminmax_pass), and a row whose
    float32 min - m is at least D_MIN runs a loop without the clamp: every d = x - m rounds to
    at least min - m there, so the clamp would change nothing (the same sum bit for bit).
    scaled: of s * x, s = state[3] multiplied into x as it is loaded (the scaled log_softmax
    modules; loops.ScaledInput)."""
    if store and element is not F32:
        raise ValueError(f"{name}: y = x - m is stored as float32 only (a 16-bit y would round "
                         f"it before ln(sum) is subtracted)")
    # the input scale is read once a vector: first in line for a register
    return resident_fit(lambda resident: _pass(name, target, unroll, accumulators, block,
                                               interleave, resident, store, element,
                                               after_minmax, scaled),
                        (INPUT_SCALE,) * scaled + _RESIDENT)


def _pass(name, target, unroll, accumulators, block, interleave, resident, store,
          element, after_minmax, scaled) -> Function:
    what = "y = x - m and " if store else ""
    f = pass_function(name, target, f"{what}state[1] = 1 / sum(exp(x - m)), m = state[0];\n"
                                    "float32 block sums fold into float64 lane sums."
                      + ("\nx stands for s * x, s = state[3] (the input scale)." if scaled
                         else ""), element)
    x, y, n, state = f.args
    pe = PassEmitter(f, tuple(c for c in resident if c == INPUT_SCALE))
    resident = tuple(c for c in resident if c != INPUT_SCALE)
    scaled_x = pe.scaled_input(state, x, scaled)
    m = pe.broadcast_state(state, STATE_MAX_OR_EXPONENT, "m")
    minus_inf = f.constant("minus_inf", K.NEG_INF)
    exp_terms = _TableExp(f, resident)
    wide = pe.stack_vectors(2)  # float64 lane sums: low and high lanes

    def sums(clamp: bool) -> None:
        accs = f.vecs("sum", accumulators)

        def step(tile):
            xs = f.vecs("x", tile.count)
            for i, v in enumerate(xs):
                tile.load(v, x, i, fill=minus_inf)
            f.comment("d = x - m" + (", stored: y = d" if store else ""))
            for v in xs:
                f.vsubps(v, v, m)
            if store:
                for i, v in enumerate(xs):
                    tile.store(y, i, v)
            # (the tail's lanes past n hold -inf: its one masked step keeps the clamp)
            exp_terms.accumulate(xs, [tile.accumulator(accs, i) for i in range(tile.count)],
                                 clamp or tile.tail is not None)

        def start():
            for acc in accs:
                f.vxorps(acc, acc, acc)

        def end():
            f.comment("block sum -> float64 lane sums")
            total = tree(f, accs, lambda d, a, b: f.vaddps(d, a, b))
            pe.add_f64_to_slots(wide, pe.widen(total))

        pe.blocks(n, block, start, lambda count: for_each_vector(
            f, count, [x, y] if store else [x], unroll, step, "sum", interleave=interleave,
            elements=buffers(f, element), scaled=scaled_x), end)

    if after_minmax:
        f.comment("min - m >= D_MIN (float32, as the loop rounds each x - m; false for NaN): "
                  "no clamp")
        unclamped, summed = f.label("unclamped"), f.label("summed")
        spread = f.vec("spread")
        f.vmovss(spread.xmm, ptr(state, STATE_MIN, bits=32))
        f.vsubss(spread.xmm, spread.xmm, m.xmm)
        f.vucomiss(spread.xmm, scalar(f.constant("d_min", D_MIN), 32))
        f.jae(unclamped)  # CF = 0: ordered and not below
        sums(clamp=True)
        f.jmp(summed)
        f.bind(unclamped)
        sums(clamp=False)
        f.bind(summed)
    else:
        sums(clamp=True)
    f.comment("state[1] = 1 / sum over lanes")
    pe.store_reciprocal(pe.sum_f64_lanes(pe.load_slot(wide[0], "sum_lo"),
                                         pe.load_slot(wide[1], "sum_hi")), state)
    return_value(f, PASS_OK)
    return f


class _TableExp:
    """sum += exp(d) for vectors of d <= 0 (the module docstring's steps), L = the lanes."""

    def __init__(self, f: Function, resident: tuple):
        self.f = f
        self.lanes = f.target.lanes
        self.values = constant_values(self.lanes)
        self.table = Mem(f.table(f"exp2_j{self.lanes}", table(self.lanes),
                                 f.target.vector_bytes))
        self.registers = {}
        if resident:
            f.comment("constants kept in registers for the whole call")
        for key in resident:
            reg = f.vec(key)
            if key == "table":
                f.vmovups(reg, self.table)
            else:
                f.load_constant(reg, key, self.values[key])
            self.registers[key] = reg
        self.d_min = f.constant_register("d_min", D_MIN)

    def c(self, key: str):
        """A constant as a source operand: its register, else memory."""
        found = self.registers.get(key)
        if found is not None:
            return found
        if key == "table":
            return self.table
        return self.f.constant(key, self.values[key])

    def start(self, dest, key: str) -> None:
        """dest = a constant (a copy of its register, else a load)."""
        found = self.registers.get(key)
        if found is not None:
            self.f.vmovaps(dest, found)
        else:
            self.f.fill_vector(dest, self.f.constant(key, self.values[key]))

    def accumulate(self, ds: list, accs: list, clamp: bool = True) -> None:
        """accs[i] += exp(ds[i]); ds are clobbered. clamp=False: every d is at least D_MIN."""
        f, c, lanes = self.f, self.c, self.lanes
        count = len(ds)
        if clamp:
            f.comment("d = max(d, -87): -inf and far-below-max terms add at most 1.7e-38 each")
            for d in ds:
                f.vmaxps(d, self.d_min, d)  # NaN survives: VMAXPS returns its second source
        f.comment(f"nb = d * {lanes} log2e + 1.5 * 2^23: N = round({lanes} d log2e) in its low "
                  f"bits")
        nbs = f.vecs("nb", count)
        for nb, d in zip(nbs, ds):
            self.start(nb, "magic")
            f.vfmadd231ps(nb, d, c("log2e_xl"))
        ns = f.vecs("n", count)
        for nv, nb in zip(ns, nbs):
            f.vsubps(nv, nb, c("magic"))
        f.comment(f"t = d - N ln2/{lanes} (one FMA: |N| <= {126 * lanes} here)")
        for d, nv in zip(ds, ns):
            f.vfmadd231ps(d, nv, c("minus_ln2_xl"))
        f.comment(f"s = 2^(N/{lanes}): T'[N mod {lanes}] + (nb << {shift(lanes)})")
        ss = f.vecs("s", count)
        for s, nb in zip(ss, nbs):
            f.vpermps(s, nb, c("table"))
        for nb in nbs:
            f.vpslld(nb, nb, shift(lanes))
        for s, nb in zip(ss, nbs):
            f.vpaddd(s, s, nb)
        f.comment("f = 1 + t (c1 + t (c2 + c3 t)); sum += f * s")
        qs = f.vecs("q", count)
        for q, t in zip(qs, ds):
            self.start(q, "c3")
            f.vfmadd213ps(q, t, c("c2"))
        for key in ("c1", "one"):
            for q, t in zip(qs, ds):
                f.vfmadd213ps(q, t, c(key))
        for acc, q, s in zip(accs, qs, ss):
            f.vfmadd231ps(acc, q, s)
