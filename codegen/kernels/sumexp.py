"""log_softmax's three-pass middle pass: y = x - m stored, and sum(exp(x - m)) with an exp that
costs fewer floating-point operations than the softmax passes' (codegen/kernels/exp.py).

The float32 three-pass log_softmax row is then
    rmax:                   m = max(x)
    raddexpstoreminusmax:   y = x - m, sum = sum(exp(x - m))     (this module)
    the row's logarithm:    b = float32(ln sum)                 (log_softmax.build_ln_state)
    vsub:                   y = y - b, in place                 (log_softmax.build_vsub)
which gives y the bits of the subtracting output pass's (x - m) - b, while the last pass reads
and writes the same lines of y (no separate read of x). The middle pass is bound by the
floating-point pipes, so the store of y costs little there.

exp(d), d = x - m <= 0, on AVX-512 (a 32-entry table, a degree-2 polynomial):

    d  = max(d, D_MIN)                       (-inf and far-below-max terms: about 1.6e-38)
    nb = fma(d, 32 log2e, MAGIC)             N = round(32 d log2e) in nb's low mantissa bits
    N  = nb - MAGIC                          (exact)
    t  = fma(N, -ln2/32, d)                  one-constant reduction, |t| < 0.0109
    s  = T'[N mod 32] + (nb << 18)           2^(N/32) from the table and the exponent field
    f  = 1 + t * (C1 + C2 t)                 two FMAs, f ~ exp(t)
    sum += f * s                             one FMA

Five FMA-pipe operations, four on the add pipes (sub m, clamp, sub magic, shift) and two on
any pipe (vpermt2ps, vpaddd) per vector, against seven and six (VSCALEFPS takes two) for the
degree-5 exp with VRNDSCALEPS and VSCALEFPS; the accumulation rides on an FMA.

Why it is exact enough (relative error of each term f * s against exp(d), for d >= D_MIN):
- N: MAGIC = 1.5 * 2^23 makes the FMA round 32 d log2e' + MAGIC to an integer, exactly the
  nearest to 32 d log2e' (log2e' = 32 log2e rounded to float32, relative error <= 2^-24), so
  |32 d log2e - N| <= 0.5 + 4032 * 2^-24 and |d - N ln2/32| <= 0.010836;
- t: fma(N, -fl(ln2)/32, d) rounds once; fl(ln2)/32 (exact: a power-of-two scaling) differs
  from ln2/32 by < 1.91e-9 / 32, so t is off by at most |N| * 5.97e-11 <= 2.41e-7 (|N| <= 4032
  for d >= D_MIN): a relative error of at most 2.41e-7 in exp(t), less for terms near the max
  (|N| small), which dominate the sum; |t| < 0.010836 + 2.5e-7 < 0.0109;
- T'[j] = bits(float32(2^(j/32))) - (j << 18): adding nb << 18 (whose low 23 bits hold
  (N << 18) mod 2^32, with N = 32k + j) gives bits(2^(j/32)) + (k << 23), which is
  float32(2^(j/32)) * 2^k while the exponent field stays >= 1: k >= -126, i.e. N >= -4032,
  i.e. d >= -87.33; D_MIN = -87 keeps N >= -4017. The table's rounding: <= 2^-24 relative;
- f: C1, C2 minimise max |(1 + t (C1 + C2 t)) / exp(t) - 1| on |t| <= 0.0109: 5.5e-8 with the
  float32 coefficients (LUT32_P2_ERROR, checked in tests/kernels/test_sumexp.py), plus the
  float32 roundings of q and f (<= 2^-24 each, relative);
- clamped terms (d < D_MIN, -inf): each adds at most exp(-87) < 1.7e-38 to a sum that is at
  least 1 (the max's own term is exactly 1: t = 0, f = 1, s = 1): below float32's resolution
  of the sum for any row shorter than 2^100 elements.
Every term is thus within about 4.3e-7 of exp(d) relative (2.41e-7 + 6e-8 + 5.5e-8 + 1.2e-7
of roundings), and so is the sum before its own rounding (a weighted mean of the terms'
errors); the float32 block sums add their T * 2^-24 (LogSoftmax.terms_per_lane), as in the
softmax passes. y's absolute error is the sum's relative error plus the logarithm's (1e-16):
within the 2e-6 * max(1, |y|) log_softmax promises.

NaN: a NaN d passes the clamp (VMAXPS returns its second source) and makes t, f and the sum
NaN, which is what the logarithm needs to see (a NaN row, or m = +-inf: x - m is NaN at the
infinity itself).

AVX2 has no two-table permute: its pass stores y the same way and takes exp(d) from the
softmax passes' degree-5 exp (PassEmitter.exp_minus_max).
"""
from __future__ import annotations

from softjit.codegen.abi import F32, PASS_OK
from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.exp import resident_fit
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.pass_emitter import (STATE_MAX_OR_EXPONENT, PassEmitter,
                                                  buffers, pass_function, return_value)
from softjit.codegen.kernels.reduce import tree
from softjit.codegen.operands import Mem
from softjit.codegen.stream import Function

LUT32_MAGIC = K.f32("0x1.8p23")  # 1.5 * 2^23: integers land in the low mantissa bits
LUT32_LOG2E = K.f32("0x1.715476p+5")  # 32 * log2(e), rounded
LUT32_MINUS_LN2 = -K.LN2 / 32  # exact: float32(ln 2) scaled by a power of two
LUT32_D_MIN = -87.0  # N >= -4017: the table entries' exponent field stays >= 1
LUT32_C1 = K.f32("0x1.0000F8p+0")
LUT32_C2 = K.f32("0x1.FFFFFEp-2")
LUT32_T_MAX = 0.0109  # |t| stays below this (module docstring)
LUT32_P2_ERROR = 5.5e-8  # max |(1 + t (C1 + C2 t)) / exp(t) - 1| on |t| <= LUT32_T_MAX
LUT32_SHIFT = 18  # nb << 18 moves N's bits above its low five into the exponent field


def lut32_table() -> tuple:
    """T'[j] = bits(float32(2^(j/32))) - (j << 18), j = 0..31 (module docstring)."""
    import struct

    words = []
    for j in range(32):
        bits = struct.unpack("<I", struct.pack("<f", 2.0 ** (j / 32)))[0]
        words.append(bits - (j << LUT32_SHIFT))
    return tuple(words)


# Constants kept in registers, those read most first (resident_fit keeps what fits)
_LUT32_RESIDENT = ("table_hi", "log2e_x32", "minus_ln2_x32", "c1", "one", "magic", "c2",
                   "table_lo")
_LUT32_VALUES = {"log2e_x32": LUT32_LOG2E, "minus_ln2_x32": LUT32_MINUS_LN2, "c1": LUT32_C1,
                 "c2": LUT32_C2, "one": 1.0, "magic": LUT32_MAGIC}
# the AVX2 pass: the softmax passes' constants (softmax._THREE_PASS_RESIDENT)
_P5_RESIDENT = ("magic_bias", "log2e", "c4", "c3", "c2", "c1", "one", "minus_ln2", "c5")


def build_sum_pass(name: str, target, unroll: int, accumulators: int, block: int,
                   interleave: int = 0, store: bool = True, element=F32) -> Function:
    """(store) y = x - m, and state[1] = 1 / sum(exp(x - m)), state[2] = the sum, m = state[0].
    Without the store, the same sum bit for bit (the logsumexp and reduce drivers' pass, and
    the 16-bit three-pass modules', whose x is widened as it is loaded; y - m is stored only as
    float32)."""
    if store and element is not F32:
        raise ValueError(f"{name}: y = x - m is stored as float32 only (a 16-bit y would round "
                         f"it before ln(sum) is subtracted)")
    lut = target.has_masks  # AVX-512: vpermt2ps
    return resident_fit(lambda resident: _pass(name, target, unroll, accumulators, block,
                                               interleave, resident, lut, store, element),
                        _LUT32_RESIDENT if lut else _P5_RESIDENT)


def _pass(name, target, unroll, accumulators, block, interleave, resident, lut,
          store, element) -> Function:
    what = "y = x - m and " if store else ""
    f = pass_function(name, target, f"{what}state[1] = 1 / sum(exp(x - m)), m = state[0];\n"
                                    "float32 block sums fold into float64 lane sums.", element)
    x, y, n, state = f.args
    pe = PassEmitter(f, () if lut else resident)
    m = pe.broadcast_state(state, STATE_MAX_OR_EXPONENT, "m")
    minus_inf = f.constant("minus_inf", K.NEG_INF)
    if lut:
        exp_terms = _Lut32(f, resident)
    else:
        d_min = pe.difference_floor()
    accs = f.vecs("sum", accumulators)
    wide = pe.stack_vectors(2)  # float64 lane sums: low and high lanes

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
        if lut:
            exp_terms.accumulate(xs, [tile.accumulator(accs, i) for i in range(tile.count)])
            return
        f.comment("d = max(d, d_min): -inf and far-below-max elements give exp = 0")
        for v in xs:
            f.vmaxps(v, d_min, v)
        ps = pe.exp_minus_max(xs, None, None, subtracted=True)
        f.comment("sum += exp(d)")
        for i, p in enumerate(ps):
            acc = tile.accumulator(accs, i)
            f.vaddps(acc, acc, p)

    def start():
        for acc in accs:
            f.vxorps(acc, acc, acc)

    def end():
        f.comment("block sum -> float64 lane sums")
        total = tree(f, accs, lambda d, a, b: f.vaddps(d, a, b))
        pe.add_f64_to_slots(wide, pe.widen(total))

    pe.blocks(n, block, start, lambda count: for_each_vector(
        f, count, [x, y] if store else [x], unroll, step, "sum", interleave=interleave,
        elements=buffers(f, element)), end)
    f.comment("state[1] = 1 / sum over lanes")
    pe.store_reciprocal(pe.sum_f64_lanes(pe.load_slot(wide[0], "sum_lo"),
                                         pe.load_slot(wide[1], "sum_hi")), state)
    return_value(f, PASS_OK)
    return f


class _Lut32:
    """sum += exp(d) for vectors of d <= 0 (AVX-512; the module docstring's steps)."""

    def __init__(self, f: Function, resident: tuple):
        self.f = f
        table = f.table("exp2_j32", lut32_table(), 64)
        self.table_lo, self.table_hi = Mem(table), Mem(table, disp=64)
        self.registers = {}
        if resident:
            f.comment("constants kept in registers for the whole call")
        for key in resident:
            reg = f.vec(key)
            if key in ("table_lo", "table_hi"):
                f.vmovups(reg, self.table_lo if key == "table_lo" else self.table_hi)
            else:
                f.load_constant(reg, key, _LUT32_VALUES[key])
            self.registers[key] = reg
        self.d_min = f.constant_register("d_min", LUT32_D_MIN)

    def c(self, key: str):
        found = self.registers.get(key)
        if found is not None:
            return found
        if key == "table_hi":
            return self.table_hi
        return self.f.constant(key, _LUT32_VALUES[key])

    def start(self, dest, key: str) -> None:
        """dest = a constant (a copy of its register, else a load)."""
        found = self.registers.get(key)
        if found is not None:
            self.f.vmovaps(dest, found)
        elif key == "table_lo":
            self.f.vmovups(dest, self.table_lo)
        else:
            self.f.fill_vector(dest, self.f.constant(key, _LUT32_VALUES[key]))

    def accumulate(self, ds: list, accs: list) -> None:
        """accs[i] += exp(ds[i]); ds are clobbered."""
        f, c = self.f, self.c
        count = len(ds)
        f.comment("d = max(d, -87): -inf and far-below-max terms add at most 1.7e-38 each")
        for d in ds:
            f.vmaxps(d, self.d_min, d)  # NaN survives: VMAXPS returns its second source
        f.comment("nb = d * 32 log2e + 1.5 * 2^23: N = round(32 d log2e) in its low bits")
        nbs = f.vecs("nb", count)
        for nb, d in zip(nbs, ds):
            self.start(nb, "magic")
            f.vfmadd231ps(nb, d, c("log2e_x32"))
        ns = f.vecs("n", count)
        for nv, nb in zip(ns, nbs):
            f.vsubps(nv, nb, c("magic"))
        f.comment("t = d - N ln2/32 (one FMA: |N| <= 4032 here)")
        for d, nv in zip(ds, ns):
            f.vfmadd231ps(d, nv, c("minus_ln2_x32"))
        f.comment("s = 2^(N/32): T'[N mod 32] + (nb << 18)")
        ss = f.vecs("s", count)
        for s, nb in zip(ss, nbs):
            self.start(s, "table_lo")
            f.vpermt2ps(s, nb, c("table_hi"))
        for nb in nbs:
            f.vpslld(nb, nb, LUT32_SHIFT)
        for s, nb in zip(ss, nbs):
            f.vpaddd(s, s, nb)
        f.comment("f = 1 + t (c1 + c2 t); sum += f * s")
        qs = f.vecs("q", count)
        for q, t in zip(qs, ds):
            self.start(q, "c2")
            f.vfmadd213ps(q, t, c("c1"))
        for q, t in zip(qs, ds):
            f.vfmadd213ps(q, t, c("one"))
        for acc, q, s in zip(accs, qs, ss):
            f.vfmadd231ps(acc, q, s)
