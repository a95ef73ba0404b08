"""The p5 exp approximation with the two-constant (rr2) Cody-Waite reduction, for several vectors
at once: each stage is emitted for every vector before the next stage starts, so the unrolled
vectors are independent chains that the CPU overlaps.

    n = round(x * log2e)                   AVX-512: VRNDSCALEPS; AVX2: the magic-bias FMA
    t = x - n*ln2_hi - n*ln2_lo            two FMAs, exact reduction to [-ln2/2, ln2/2]
    p = 1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5))))   Horner, p ~ exp(t)
    exp(x) = p * 2^n                       AVX-512: VSCALEFPS; AVX2: 2^n built in the exponent field

Registers are passed in and reused in place; nothing here allocates memory or touches pointers.

Constants are memory operands (AVX-512: {1toN} broadcasts of one dword) unless the kernel keeps
them resident in registers (`resident`). On Zen 3 and Zen 4 a core loads two vectors per cycle,
and an AVX2 step that reads its ten constants from memory spends more cycles on loads than on
FMAs (docs/performance.md): a kernel keeps as many constants in registers as its register
budget allows (resident_fit).
"""
from __future__ import annotations

from softjit.codegen.errors import RegisterBudgetError
from softjit.codegen.operands import Mem, Register
from softjit.codegen.passes.regalloc import allocate
from softjit.codegen.stream import Function
from softjit.codegen.kernels import constants as K


class ExpP5:
    """The exp stages on one Function; their constants come from its pool (Function.constant),
    or from registers loaded once per call for the names in `resident`."""

    def __init__(self, f: Function, resident: tuple = ()):
        self.f = f
        self.scalef = f.target.has_scalef  # VRNDSCALEPS rounds n, VSCALEFPS builds p * 2^n
        self.registers = {}
        if resident:
            f.comment("constants kept in registers for the whole call")
        for name in resident:
            self.registers[name] = self.constant_register(name, CONSTANT_VALUES.get(name))

    def c(self, name: str, value: float | None = None):
        """The constant as a source operand: its register when resident, else memory. Names in
        CONSTANT_BITS are dword bit patterns (their value is the table's)."""
        register = self.registers.get(name)
        if register is not None:
            return register
        if name in CONSTANT_BITS:
            return self.f.constant_bits(name, CONSTANT_BITS[name])
        return self.f.constant(name, CONSTANT_VALUES[name] if value is None else value)

    def load_constant(self, dest: Register, name: str, value: float) -> None:
        source = self.c(name, value)
        if isinstance(source, Register):
            self.f.vmovaps(dest, source)
        else:
            self.f.fill_vector(dest, source, aligned=True)

    def constant_register(self, name: str, value: float) -> Register:
        """A register holding the constant: the resident one, else a new one loaded here."""
        if name in self.registers:
            return self.registers[name]
        reg = self.f.vec(name)
        self.load_constant(reg, name, value)
        return reg

    def round_and_reduce(self, xs: list, ns: list, biased: list | None = None,
                         bias=None, one_step: bool = False, split_exponent: bool = False) -> None:
        """ns[i] = round(xs[i] * log2e) as floats; xs[i] becomes t = x - n*ln2 (in place).

        one_step (rr1): t = x - n*ln2 with ln2 rounded to float32, one FMA instead of two. Its
        error is |n| * |ln2 - fl(ln2)| < |n| * 1.91e-9 absolute in t, so relative in exp(t): for
        the softmax passes, where x = x_i - max lies in [-104, 0] and |n| <= 150, under 2.9e-7.

        AVX2 only: with `biased`, biased[i] keeps n + magic bias, whose low bits hold n + 127,
        so that biased << 23 is 2^n. `bias` (a register or memory) replaces the magic bias by
        another value of the same binade (magic - e folds a row exponent e into those bits:
        2^(n - e)). split_exponent: the bias is MAGIC_BIAS_SPLIT instead, whose low bits hold
        n + 254, for split_power_of_two.
        """
        f = self.f
        f.comment("n = round(x * log2e)")
        if self.scalef:
            for x, n in zip(xs, ns):
                f.vmulps(n, x, self.c("log2e", K.LOG2E))
            for n in ns:
                f.vrndscaleps(n, n, 0x08)  # round to nearest even, no precision exception
        else:
            held = biased if biased is not None else ns
            magic_name = "magic_bias_split" if split_exponent else "magic_bias"
            magic = bias if bias is not None else self.c(magic_name)
            for x, b in zip(xs, held):
                if bias is None:
                    self.load_constant(b, magic_name, CONSTANT_VALUES[magic_name])
                else:
                    f.vmovups(b, bias)
                f.vfmadd231ps(b, x, self.c("log2e", K.LOG2E))
            for n, b in zip(ns, held):
                f.vsubps(n, b, magic)
        if one_step:
            f.comment("t = x - n*ln2 (one FMA: n is small here)")
            for x, n in zip(xs, ns):
                f.vfmadd231ps(x, n, self.c("minus_ln2", -K.LN2))
            return
        f.comment("t = x - n*ln2_hi - n*ln2_lo")
        for x, n in zip(xs, ns):
            f.vfmadd231ps(x, n, self.c("minus_ln2_hi", K.MINUS_LN2_HI))
        for x, n in zip(xs, ns):
            f.vfmadd231ps(x, n, self.c("minus_ln2_lo", K.MINUS_LN2_LO))

    def split_power_of_two(self, ps: list, biased: list, scratch: list) -> None:
        """AVX2: ps[i] = ps[i] * 2^n_i with one rounding (subnormal results correctly rounded),
        for n_i in [-150, 128]; biased[i] from round_and_reduce(split_exponent=True) holds
        m = n + 254 in its low 9 bits (the bits above them are the bias's, with zeros from
        bit 9 to bit 21), and is clobbered, as are the `scratch` registers.

            2^n = 2^(floor(m/2) - 127) * 2^(ceil(m/2) - 127), both factors normal for m in
            [104, 382]. p * 2^(floor(m/2) - 127) is exact (p in [0.7, 1.5]), the second
            product rounds once. (bits >> 1) << 23 is the float 2^(floor(m/2) - 127) (every bit
            above m's is shifted out), and (bits << 23) minus it is 2^(ceil(m/2) - 127): three
            shifts and an integer subtract, no constant, where clamping n to two float
            exponents took seven FADD-pipe ops and two constants.
        """
        f = self.f
        f.comment("y = (p * 2^(floor(m/2) - 127)) * 2^(ceil(m/2) - 127), m = n + 254")
        for s, b in zip(scratch, biased):
            f.vpsrld(s, b, 1)
        for s in scratch:
            f.vpslld(s, s, 23)
        for b in biased:
            f.vpslld(b, b, 23)
        for b, s in zip(biased, scratch):
            f.vpsubd(b, b, s)
        for p, s in zip(ps, scratch):
            f.vmulps(p, p, s)
        for p, b in zip(ps, biased):
            f.vmulps(p, p, b)

    COEFFICIENTS = (("c5", K.C5), ("c4", K.C4), ("c3", K.C3), ("c2", K.C2), ("c1", K.C1),
                    ("one", 1.0))

    def polynomial(self, ts: list, ps: list, coefficients: list | None = None) -> None:
        """ps[i] = p(ts[i]) ~ exp(t) on [-ln2/2, ln2/2] (relative error ~9.2e-8).

        coefficients: vector operands holding c5..c0 scaled by a common factor s (then
        ps[i] = s * p(ts[i]) at no extra cost); the constants (resident or pooled) by default.
        """
        f = self.f
        f.comment("p = 1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5))))"
                  + (", every coefficient pre-scaled" if coefficients else ""))
        if coefficients is None:
            coefficients = [self.c(name, value) for name, value in self.COEFFICIENTS]
        first, rest = coefficients[0], coefficients[1:]
        for p in ps:
            if isinstance(first, Register):
                f.vmovaps(p, first)
            else:
                f.fill_vector(p, first)
        for c in rest:
            for p, t in zip(ps, ts):
                f.vfmadd213ps(p, t, c)


CONSTANT_VALUES = {
    "log2e": K.LOG2E, "magic_bias": K.MAGIC_BIAS, "magic_bias_split": K.MAGIC_BIAS_SPLIT,
    "minus_ln2": -K.LN2,
    "minus_ln2_hi": K.MINUS_LN2_HI, "minus_ln2_lo": K.MINUS_LN2_LO,
    "c5": K.C5, "c4": K.C4, "c3": K.C3, "c2": K.C2, "c1": K.C1, "one": 1.0, "minus_127": -127.0,
    "minus_100": -100.0, "plus_127": 127.0,
}

# integer lane constants (dword bit patterns)
CONSTANT_BITS = {}


def resident_fit(build, wanted: tuple) -> Function:
    """build(resident) -> Function, with the longest prefix of `wanted` (constants in order of
    how many loads each saves) that the register allocator can fit beside the loop's values."""
    for keep in range(len(wanted), -1, -1):
        f = build(wanted[:keep])
        try:
            allocate(f)
        except RegisterBudgetError:
            if keep == 0:
                raise
            continue
        return f
    raise AssertionError("unreachable")
