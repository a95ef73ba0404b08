"""What the softmax passes share: the pass signature and state (from codegen/abi.py) and
PassEmitter, the pieces every pass emits (exp(x - m), 2^d scaling, float64 lane sums, stack
slots, blocks). The math is in docs/algorithms.md.
"""
from __future__ import annotations

from softjit.codegen.abi import F32, PASS_STATE, ElementFormat, pass_signature
from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.exp import ExpP5
from softjit.codegen.kernels.loops import ScaledInput
from softjit.codegen.operands import Mem, ptr
from softjit.codegen.stream import Function

# Byte offsets of the pass state's fields (codegen/abi.py PASS_STATE owns the layout).
STATE_MAX_OR_EXPONENT = PASS_STATE.offset("max_or_exponent")
STATE_SCALE = PASS_STATE.offset("scale")
STATE_SUM = PASS_STATE.offset("sum")
STATE_INPUT_SCALE = PASS_STATE.offset("input_scale")
# The name a scaled pass's input scale goes by among the resident constants (exp.resident_fit):
# listed first, it keeps its register unless nothing else fits.
INPUT_SCALE = "input_scale"


def pass_function(name: str, target, doc: str, element: ElementFormat = F32) -> Function:
    return Function(pass_signature(name, doc, element), target)


def buffers(f: Function, element: ElementFormat) -> dict:
    """for_each_vector's `elements` for a pass whose x and y hold `element`s."""
    x, y = f.args[:2]
    return {} if element is F32 else {x: element, y: element}


def return_value(f: Function, value: int) -> None:
    f.mov(f.physical_gp("rax").r32, value)
    f.ret()


def scalar(mem: Mem, bits: int) -> Mem:
    """The first element of a pooled constant, read as a scalar."""
    return Mem(mem.base, bits=bits)


class PassEmitter:
    """Shared pieces of the softmax passes on one Function."""

    def __init__(self, f: Function, resident: tuple = ()):
        self.f = f
        # INPUT_SCALE in `resident`: a scaled pass keeps its input scale in a register
        self.scale_resident = INPUT_SCALE in resident
        self.e = ExpP5(f, tuple(name for name in resident if name != INPUT_SCALE))
        self.scalef = self.e.scalef

    def broadcast_state(self, state, offset: int, name: str):
        reg = self.f.vec(name)
        self.f.vbroadcastss(reg, ptr(state, offset, bits=32))
        return reg

    def scaled_input(self, state, x, scaled: bool) -> ScaledInput | None:
        """A scaled pass's loads of x, times the state's input scale (None: an unscaled pass):
        broadcast into a register when INPUT_SCALE is resident, else into a stack slot that
        each multiply reads."""
        if not scaled:
            return None
        factor = self.broadcast_state(state, STATE_INPUT_SCALE, INPUT_SCALE)
        if self.scale_resident:
            return ScaledInput(x, factor)
        slot = self.f.stack(self.f.target.vector_bytes)
        self.f.vmovups(slot, factor)
        return ScaledInput(x, slot)

    # -- exp(x - m) for the three-pass algorithms -------------------------------------------
    def exp_minus_max(self, xs: list, m, d_min, subtracted: bool = False,
                      coefficients: list | None = None) -> list:
        """p_i = exp(x_i - m), x_i clobbered. d = x - m is clamped below at d_min (a register,
        so that NaN survives): -inf gives exactly 0. subtracted: xs already hold the clamped
        d (m and d_min are not read). coefficients (AVX-512): the polynomial's, all scaled by
        one factor s (ExpP5.polynomial), giving s * exp(x_i - m) for the same work."""
        if coefficients is not None and not self.scalef:
            raise ValueError("pre-scaled coefficients: AVX-512 only (VSCALEFPS applies 2^n to "
                             "the scaled polynomial; AVX2 builds 2^n in the exponent field)")
        f, e = self.f, self.e
        if not subtracted:
            f.comment("d = max(x - m, d_min): -inf and far-below-max elements give exp = 0")
            for x in xs:
                f.vsubps(x, x, m)
            for x in xs:
                f.vmaxps(x, d_min, x)
        ns, ps = f.vecs("n", len(xs)), f.vecs("p", len(xs))
        # d in [d_min, 0]: |n| <= 150, so the one-FMA reduction keeps exp(d) within 2.9e-7
        if self.scalef:
            e.round_and_reduce(xs, ns, one_step=True)
            e.polynomial(xs, ps, coefficients)
            f.comment("exp(d) = p * 2^n")
            for p, n in zip(ps, ns):
                f.vscalefps(p, p, n)
        else:
            biased = f.vecs("nb", len(xs))
            e.round_and_reduce(xs, ns, biased, one_step=True)
            e.polynomial(xs, ps)
            f.comment("exp(d) = p * 2^n, 2^n from the biased exponent bits (n = -127 gives 0)")
            for b in biased:
                f.vpslld(b, b, 23)
            for p, b in zip(ps, biased):
                f.vmulps(p, p, b)
        return ps

    def difference_floor(self):
        """d_min: AVX-512 scales subnormal results exactly, AVX2 builds 2^n in the exponent field
        and rounds n <= -127 (d below about -87.7) to an exact 0."""
        value = K.EXP_X_MIN if self.scalef else -88.0
        return self.f.constant_register("d_min", value)

    # -- 2^d scaling ----------------------------------------------------------------------------
    def scale(self, dst, src, d) -> None:
        """dst = src * 2^d for integral float d <= ~2; d is clobbered on AVX2."""
        if self.scalef:
            self.f.vscalefps(dst, src, d)
        else:
            self.power_of_two(d)
            self.f.vmulps(dst, src, d)

    def power_of_two(self, d, one=None) -> None:
        """d = 2^d in place, for integral float d <= ~2 (+0 for d <= -127 on AVX2, and for d
        far below the float range on AVX-512, which needs `one`: a register holding 1.0)."""
        f = self.f
        if self.scalef:
            f.vscalefps(d, one, d)
        else:
            f.vmaxps(d, d, self.e.c("minus_127", -127.0))  # 2^-127 and below become +0
            f.vaddps(d, d, self.e.c("magic_bias", K.MAGIC_BIAS))
            f.vpslld(d, d, 23)

    def scale_f64(self, acc, d) -> None:
        """acc *= 2^d, acc packed float64, d packed float64 integral <= 0; d clobbered."""
        f = self.f
        if self.scalef:
            f.vscalefpd(acc, acc, d)
        else:
            f.vmaxpd(d, d, f.constant_f64("minus_1023_f64", -1023.0))  # 2^-1023 and below: +0
            f.vaddpd(d, d, f.constant_f64("magic_bias_f64", 1.5 * 2.0 ** 52 + 1023.0))
            f.vpsllq(d, d, 52)
            f.vmulpd(acc, acc, d)

    # -- float32 -> float64 lanes ---------------------------------------------------------------
    def widen(self, v) -> tuple:
        """The lanes of float32 vector v as two float64 vectors (low half, high half)."""
        f = self.f
        lo, hi, upper = f.vec("wide_lo"), f.vec("wide_hi"), f.vec("upper_half")
        half = v.bits // 2
        if v.bits == 512:  # zmm: its upper half is a ymm
            f.vextractf64x4(upper.ymm, v.zmm, 1)
        else:
            f.vextractf128(upper.xmm, v.ymm, 1)
        f.vcvtps2pd(lo, v.view(half))
        f.vcvtps2pd(hi, upper.view(half))
        return lo, hi

    def sum_f64_lanes(self, a, b):
        """a + b summed over all lanes, in lane 0 of the returned xmm (a is clobbered)."""
        f = self.f
        tmp = f.vec("hsum")
        f.vaddpd(a, a, b)
        if a.bits == 512:  # zmm: fold its upper 256 bits first
            f.vextractf64x4(tmp.ymm, a.zmm, 1)
            f.vaddpd(a.ymm, a.ymm, tmp.ymm)
            f.vextractf32x4(tmp.xmm, a.ymm, 1)
        else:
            f.vextractf128(tmp.xmm, a.ymm, 1)
        f.vaddpd(a.xmm, a.xmm, tmp.xmm)
        f.vunpckhpd(tmp.xmm, a.xmm, a.xmm)
        f.vaddsd(a.xmm, a.xmm, tmp.xmm)
        return a

    def store_reciprocal(self, total, state, round_up: bool = False) -> None:
        """state[1] = (float) (1.0 / total) and state[2] = (float) total, total a float64 in
        lane 0. round_up: state[1] is the next float32 above the nearest instead, so that it is
        never below 1/total (then p * state[1] >= 1 whenever p equals the total)."""
        f = self.f
        single = f.vec("sum_f32")
        f.vcvtsd2ss(single.xmm, single.xmm, total.xmm)
        f.vmovss(ptr(state, STATE_SUM, bits=32), single.xmm)
        r = f.vec("reciprocal")
        f.vmovsd(r.xmm, scalar(f.constant_f64("one_f64", 1.0), 64))
        f.vdivsd(r.xmm, r.xmm, total.xmm)
        f.vcvtsd2ss(r.xmm, r.xmm, r.xmm)
        if round_up:
            f.comment("one float32 ulp up: RN(1/total) + ulp >= 1/total (inf becomes NaN)")
            bits = f.gp("reciprocal_bits")
            f.vmovd(bits.r32, r.xmm)
            f.add(bits.r32, 1)
            f.vmovd(r.xmm, bits.r32)
        f.vmovss(ptr(state, STATE_SCALE, bits=32), r.xmm)
        return r

    # -- per-lane values kept on the stack across the element loops --------------------------
    def stack_vectors(self, count: int, initial: Mem | None = None) -> list:
        """count vector-sized stack slots, zeroed (or set to a pooled constant). Block folds
        touch them once per block, so the loops keep every register for the arithmetic."""
        f = self.f
        slots = [f.stack(f.target.vector_bytes) for _ in range(count)]
        fill = f.vec("slot_init")
        if initial is None:
            f.vxorps(fill, fill, fill)
        else:
            f.fill_vector(fill, initial)
        for slot in slots:
            f.vmovups(slot, fill)
        return slots

    def load_slot(self, slot: Mem, name: str):
        reg = self.f.vec(name)
        self.f.vmovups(reg, slot)
        return reg

    def add_f64_to_slots(self, slots: list, parts: tuple) -> None:
        for slot, part in zip(slots, parts):
            self.f.vaddpd(part, part, slot)
            self.f.vmovups(slot, part)

    # -- blocks ---------------------------------------------------------------------------------
    def blocks(self, n, block: int, start_block, loop_body, end_block) -> None:
        """Split n elements into blocks of `block`: start_block(); loop_body(count); end_block()."""
        f = self.f
        count = f.gp("block_count")
        top = f.label("block")
        f.bind(top)
        f.comment(f"next block: count = min(n, {block}), n -= count")
        f.mov(count, block)
        f.cmp(n, count)
        f.cmovb(count, n)
        f.sub(n, count)
        start_block()
        loop_body(count)
        end_block()
        f.test(n, n)
        f.jne(top)
