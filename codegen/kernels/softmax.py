"""The softmax passes and the row driver, one ISA-generic emitter per pass (ALGORITHMS.md).

Every pass kernel has one signature, so that the driver can chain any of them:

    int pass(const float* x, float* y, size_t n, float* state)

state[0] holds the row maximum m (three-pass) or the sum's exponent e (two-pass), state[1] the
output scale (1/sum), state[2] the sum itself (float32; v of sum = v * 2^e for two-pass), so that
the pieces of one row split over threads can be combined. A pass returns 0, except raddextexp, which returns 1 when its row must be
recomputed by the three-pass algorithm (a NaN, an infinity, or magnitudes beyond the two-pass
clamp; see constants.TWO_PASS_X_LIMIT).

Sums are accurate at any length: float32 accumulators take one block of elements (a few
thousand), then fold into float64 lane accumulators, so the float32 error never grows with n.
"""
from __future__ import annotations

from ..operands import Mem, Symbol, ptr
from ..stream import Function, Param, Signature
from . import constants as K
from .elementwise import emit_rmax
from .exp import ExpP5
from .loops import for_each_vector
from .reduce import horizontal, tree

PASS_PARAMS = (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
               Param("float*", "state"))
STATE_FIRST, STATE_SCALE, STATE_SUM = 0, 4, 8  # byte offsets in state


def pass_function(name: str, target, doc: str) -> Function:
    return Function(Signature(name, PASS_PARAMS, "int", doc), target)


def return_value(f: Function, value: int) -> None:
    f.mov(f.physical_gp("rax").r32, value)
    f.ret()


def scalar(mem: Mem, bits: int) -> Mem:
    """The first element of a pooled constant, read as a scalar."""
    return Mem(mem.base, bits=bits)


class PassEmitter:
    """Shared pieces of the softmax passes on one Function."""

    def __init__(self, f: Function):
        self.f = f
        self.e = ExpP5(f)
        self.scalef = self.e.scalef

    def broadcast_state(self, state, offset: int, name: str):
        reg = self.f.vec(name)
        self.f.vbroadcastss(reg, ptr(state, offset, bits=32))
        return reg

    # -- exp(x - m) for the three-pass algorithms -------------------------------------------
    def exp_minus_max(self, xs: list, m, d_min) -> list:
        """p_i = exp(x_i - m), x_i clobbered. d = x - m is clamped below at d_min (a register,
        so that NaN survives): -inf gives exactly 0."""
        f, e = self.f, self.e
        f.comment("d = max(x - m, d_min): -inf and far-below-max elements give exp = 0")
        for x in xs:
            f.vsubps(x, x, m)
        for x in xs:
            f.vmaxps(x, d_min, x)
        ns, ps = f.vecs("n", len(xs)), f.vecs("p", len(xs))
        if self.scalef:
            e.round_and_reduce(xs, ns)
            e.polynomial(xs, ps)
            f.comment("exp(d) = p * 2^n")
            for p, n in zip(ps, ns):
                f.vscalefps(p, p, n)
        else:
            biased = f.vecs("nb", len(xs))
            e.round_and_reduce(xs, ns, biased)
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
        return self.e.constant_register("d_min", value)

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
        if self.f.target.vector_bits == 512:
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
        if f.target.vector_bits == 512:
            f.vextractf64x4(tmp.ymm, a.zmm, 1)
            f.vaddpd(a.ymm, a.ymm, tmp.ymm)
            f.vextractf32x4(tmp.xmm, a.ymm, 1)
        else:
            f.vextractf128(tmp.xmm, a.ymm, 1)
        f.vaddpd(a.xmm, a.xmm, tmp.xmm)
        f.vunpckhpd(tmp.xmm, a.xmm, a.xmm)
        f.vaddsd(a.xmm, a.xmm, tmp.xmm)
        return a

    def store_reciprocal(self, total, state) -> None:
        """state[1] = (float) (1.0 / total) and state[2] = (float) total, total a float64 in
        lane 0."""
        f = self.f
        single = f.vec("sum_f32")
        f.vcvtsd2ss(single.xmm, single.xmm, total.xmm)
        f.vmovss(ptr(state, STATE_SUM, bits=32), single.xmm)
        r = f.vec("reciprocal")
        f.vmovsd(r.xmm, scalar(f.constant_f64("one_f64", 1.0), 64))
        f.vdivsd(r.xmm, r.xmm, total.xmm)
        f.vcvtsd2ss(r.xmm, r.xmm, r.xmm)
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
        elif initial.broadcast:
            f.vbroadcastss(fill, Mem(initial.base, bits=32))
        else:
            f.vmovups(fill, initial)
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


# ------------------------------------------------------------------------------------- passes
def build_rmax_pass(name: str, target, unroll: int, accumulators: int) -> Function:
    f = pass_function(name, target, "state[0] = max(x[0:n]); NaN need not propagate (the next\n"
                                    "pass turns any NaN into a NaN row).")
    x, _, n, state = f.args
    result = emit_rmax(f, x, n, unroll, accumulators, nan_propagating=False)
    f.vmovss(ptr(state, STATE_FIRST, bits=32), result.xmm)
    return_value(f, 0)
    return f


def _build_sum_pass(name, target, unroll, accumulators, block, store: bool, interleave=0) -> Function:
    what = "y = exp(x - m) and " if store else ""
    f = pass_function(name, target, f"{what}state[1] = 1 / sum(exp(x - m)), m = state[0];\n"
                                     "float32 block sums fold into float64 lane sums.")
    x, y, n, state = f.args
    pe = PassEmitter(f)
    m = pe.broadcast_state(state, STATE_FIRST, "m")
    d_min = pe.difference_floor()
    minus_inf = pe.e.c("minus_inf", K.NEG_INF)
    accs = f.vecs("sum", accumulators)
    wide = pe.stack_vectors(2)  # float64 lane sums: low and high lanes

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i, fill=minus_inf)
        ps = pe.exp_minus_max(xs, m, d_min)
        if store:
            for i, p in enumerate(ps):
                tile.store(y, i, p)
        f.comment("sum += exp(x - m)")
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

    pointers = [x, y] if store else [x]
    pe.blocks(n, block, start, lambda count: for_each_vector(
        f, count, pointers, unroll, step, "sum", interleave=interleave), end)
    f.comment("state[1] = 1 / sum over lanes")
    pe.store_reciprocal(pe.sum_f64_lanes(pe.load_slot(wide[0], "sum_lo"),
                                         pe.load_slot(wide[1], "sum_hi")), state)
    return_value(f, 0)
    return f


def build_raddexpminusmax(name, target, unroll, accumulators, block, interleave=0) -> Function:
    return _build_sum_pass(name, target, unroll, accumulators, block, False, interleave)


def build_raddstoreexpminusmax(name, target, unroll, accumulators, block, interleave=0) -> Function:
    return _build_sum_pass(name, target, unroll, accumulators, block, True, interleave)


def build_vscaleexpminusmax(name, target, unroll, nontemporal=False, interleave=0) -> Function:
    f = pass_function(name, target, "y = exp(x - m) * s with m = state[0], s = state[1].")
    x, y, n, state = f.args
    pe = PassEmitter(f)
    m = pe.broadcast_state(state, STATE_FIRST, "m")
    s = pe.broadcast_state(state, STATE_SCALE, "s")
    d_min = pe.difference_floor()

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        ps = pe.exp_minus_max(xs, m, d_min)
        f.comment("y = exp(x - m) * s")
        for i, p in enumerate(ps):
            f.vmulps(p, p, s)
            tile.store(y, i, p)

    for_each_vector(f, n, [x, y], unroll, step, "scale", nontemporal_stores=nontemporal,
                    interleave=interleave)
    return_value(f, 0)
    return f


def build_vscale(name, target, unroll, nontemporal=False) -> Function:
    f = pass_function(name, target, "y = y * s with s = state[1] (x is not read).")
    _, y, n, state = f.args
    pe = PassEmitter(f)
    s = pe.broadcast_state(state, STATE_SCALE, "s")

    def step(tile):
        vs = f.vecs("y", tile.count)
        for i, v in enumerate(vs):
            tile.load(v, y, i)
        for i, v in enumerate(vs):
            f.vmulps(v, v, s)
            tile.store(y, i, v)

    for_each_vector(f, n, [y], unroll, step, "scale", nontemporal_stores=nontemporal)
    return_value(f, 0)
    return f


def build_raddextexp(name, target, unroll, accumulators, block, interleave=0) -> Function:
    f = pass_function(
        name, target,
        "Two-pass pass 1: sum(exp(x)) = v * 2^e kept with a float exponent (never overflows);\n"
        "state[0] = e, state[1] = 1 / v. Returns 1 (recompute with three passes) when the row\n"
        "holds NaN or +inf, only -inf, or magnitudes beyond the two-pass clamp.")
    x, _, n, state = f.args
    pe = PassEmitter(f)
    e = pe.e
    x_min = e.constant_register("x_min", -K.TWO_PASS_X_LIMIT)
    one = e.constant_register("one", 1.0) if pe.scalef else None
    minus_inf = e.c("minus_inf", K.NEG_INF)
    vs, es = f.vecs("v", accumulators), f.vecs("e", accumulators)
    # per lane: float64 sums (low and high lanes) and the exponent they are relative to
    wide = pe.stack_vectors(2)
    (run_slot,) = pe.stack_vectors(1, e.c("exponent_sentinel", K.EXPONENT_SENTINEL))

    def accumulate(v, ev, ps, ns):
        """(v, ev) += sum of p_i * 2^n_i, all rescaled once to the group's largest exponent.

        Only v = v * 2^(ev - top) + q and ev = max(ev, m) carry from one step to the next; the
        group's max m and sum q are trees beside them, so the loop-carried chain is one FMA."""
        f.comment("m = max n_i, top = max(e, m); q = sum p_i * 2^(n_i - top)")
        m = ns[0]
        if len(ns) > 1:  # the n_i stay: they are needed below
            firsts = [f.vec("m") for _ in range(len(ns) // 2)]
            for k, d in enumerate(firsts):
                f.vmaxps(d, ns[2 * k], ns[2 * k + 1])
            m = tree(f, firsts + ns[len(firsts) * 2:], lambda d, a, b: f.vmaxps(d, a, b))
        top = f.vec("e_max")
        f.vmaxps(top, ev, m)  # a NaN n lands in top (VMAXPS returns its second source)
        for nv in ns:
            f.vsubps(nv, nv, top)
        for p, nv in zip(ps, ns):
            pe.scale(p, p, nv)
        q = tree(f, list(ps), lambda d, a, b: f.vaddps(d, a, b))
        f.comment("v = v * 2^(e - top) + q, e = top")
        f.vsubps(ev, ev, top)
        pe.power_of_two(ev, one)
        f.vfmadd213ps(v, ev, q)
        f.vmovaps(ev, top)

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i, fill=minus_inf)
        f.comment("x = max(x, -2^20): -inf and huge negatives stay finite (NaN passes)")
        for v in xs:
            f.vmaxps(v, x_min, v)
        ns, ps = f.vecs("n", tile.count), f.vecs("p", tile.count)
        e.round_and_reduce(xs, ns)
        e.polynomial(xs, ps)
        f.comment("(v, e) += p * 2^n, accumulator i mod K")
        for j in range(min(accumulators, tile.count)):
            members = range(j, tile.count, accumulators)
            accumulate(vs[j], es[j], [ps[i] for i in members], [ns[i] for i in members])

    def combine(a, b):
        """(v_a, e_a) += (v_b, e_b)."""
        va, ea = a
        vb, eb = b
        top = f.vec("e_max")
        f.vmaxps(top, ea, eb)
        f.vsubps(ea, ea, top)
        f.vsubps(eb, eb, top)
        pe.scale(va, va, ea)
        pe.scale(vb, vb, eb)
        f.vaddps(va, va, vb)
        f.vmovaps(ea, top)

    def start():
        for v, ev in zip(vs, es):
            f.vxorps(v, v, v)
            f.vmovups(ev, run_slot)

    def end():
        f.comment("merge accumulators, then fold the block into the float64 lane sums")
        pairs = list(zip(vs, es))
        while len(pairs) > 1:
            merged = []
            for i in range(0, len(pairs) - 1, 2):
                combine(pairs[i], pairs[i + 1])
                merged.append(pairs[i])
            if len(pairs) % 2:
                merged.append(pairs[-1])
            pairs = merged
        v, ev = pairs[0]
        slide = pe.load_slot(run_slot, "e_run")
        f.vsubps(slide, slide, ev)  # <= 0: how far the lane sums slide down
        f.vmovups(run_slot, ev)
        lanes = [pe.load_slot(slot, f"v_f64_{i}") for i, slot in enumerate(wide)]
        for lane_sum, d in zip(lanes, pe.widen(slide)):
            pe.scale_f64(lane_sum, d)
        for lane_sum, part in zip(lanes, pe.widen(v)):
            f.vaddpd(lane_sum, lane_sum, part)
        for slot, lane_sum in zip(wide, lanes):
            f.vmovups(slot, lane_sum)

    pe.blocks(n, block, start,
              lambda count: for_each_vector(f, count, [x], unroll, step, "extexp",
                                            interleave=interleave), end)

    f.comment("e = max over lanes; v = sum over lanes of v_lane * 2^(e_lane - e)")
    run_exponent = pe.load_slot(run_slot, "e_run")
    top = pe.load_slot(run_slot, "e_row")
    horizontal(f, top, lambda d, a, b: f.vmaxps(d, a, b))
    f.vbroadcastss(top, top.xmm)
    f.vsubps(run_exponent, run_exponent, top)
    lanes = [pe.load_slot(slot, f"v_f64_{i}") for i, slot in enumerate(wide)]
    for lane_sum, d in zip(lanes, pe.widen(run_exponent)):
        pe.scale_f64(lane_sum, d)
    total = pe.sum_f64_lanes(*lanes)
    f.vmovss(ptr(state, STATE_FIRST, bits=32), top.xmm)
    r = pe.store_reciprocal(total, state)
    f.comment("recompute with three passes unless 1/v is a number and e is inside the clamp")
    recompute = f.label("recompute")
    f.vucomiss(r.xmm, r.xmm)
    f.jp(recompute)
    f.vucomiss(top.xmm, scalar(e.c("e_high", K.TWO_PASS_E_HIGH), 32))
    f.jae(recompute)
    f.vucomiss(top.xmm, scalar(e.c("e_low", K.TWO_PASS_E_LOW), 32))
    f.jbe(recompute)
    return_value(f, 0)
    f.bind(recompute)
    return_value(f, 1)
    return f


def build_vscaleextexp(name, target, unroll, nontemporal=False, interleave=0) -> Function:
    f = pass_function(name, target, "Two-pass pass 2: y = p(x) * (1/v) * 2^(n(x) - e) with\n"
                                     "e = state[0], 1/v = state[1].")
    x, y, n, state = f.args
    pe = PassEmitter(f)
    e = pe.e
    inv_v = pe.broadcast_state(state, STATE_SCALE, "inv_v")
    e_row = pe.broadcast_state(state, STATE_FIRST, "e")
    f.comment("per call: the polynomial's coefficients times 1/v, so that p(t) comes out as p/v")
    coefficients = []
    for coefficient, value in e.COEFFICIENTS:
        (slot,) = pe.stack_vectors(1, e.c(coefficient, value))
        scaled = pe.load_slot(slot, coefficient)
        f.vmulps(scaled, scaled, inv_v)
        f.vmovups(slot, scaled)
        coefficients.append(slot)
    bias = None
    if pe.scalef:
        x_min = e.constant_register("x_min", -K.TWO_PASS_X_LIMIT)
    else:
        f.comment("per call: magic bias - e, so that the biased exponent bits hold n - e + 127")
        (bias,) = pe.stack_vectors(1, e.c("magic_bias", K.MAGIC_BIAS))
        folded = pe.load_slot(bias, "bias")
        f.vsubps(folded, folded, e_row)
        f.vmovups(bias, folded)
        f.comment("per call: x_min = (e - 127) * ln2, where n - e = -127: y = +0 from there down")
        # pass 1 accepted this row, so e - 127 > -2^20 * log2e: x_min also does the clamp's job
        # (-inf and huge negatives), and n - e never goes below -127 (the exponent field's 0).
        x_min = f.vec("x_min")
        f.vaddps(x_min, e_row, e.c("minus_127", -127.0))
        f.vmulps(x_min, x_min, e.c("ln2", K.LN2))
    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        for v in xs:
            f.vmaxps(v, x_min, v)
        ns, ps = f.vecs("n", tile.count), f.vecs("p", tile.count)
        biased = f.vecs("nb", tile.count) if not pe.scalef else None
        e.round_and_reduce(xs, ns, biased, bias)
        e.polynomial(xs, ps, coefficients)
        f.comment("y = (p / v) * 2^(n - e)")
        if pe.scalef:
            for nv in ns:
                f.vsubps(nv, nv, e_row)
            for p, nv in zip(ps, ns):
                f.vscalefps(p, p, nv)
        else:
            for b in biased:  # n - e = -127 gives +0
                f.vpslld(b, b, 23)
            for p, b in zip(ps, biased):
                f.vmulps(p, p, b)
        for i, p in enumerate(ps):
            tile.store(y, i, p)

    for_each_vector(f, n, [x, y], unroll, step, "extexp", nontemporal_stores=nontemporal,
                    interleave=interleave)
    return_value(f, 0)
    return f


# -------------------------------------------------------------------------------------- driver
def build_driver(name: str, target, passes: list, may_flag: bool) -> Function:
    """Loop over rows calling the passes in turn; a row whose first pass returns 1 is marked in
    status (and its later passes skipped, leaving y untouched) for the caller to recompute."""
    sig = Signature(
        name,
        (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
         Param("size_t", "rows"), Param("const int64_t*", "row_strides"),
         Param("int32_t*", "status")),
        "size_t",
        "Softmax of `rows` rows of n floats; row r at x + r*row_strides[0] bytes, its result at\n"
        "y + r*row_strides[1] bytes. status[r] = 1 marks a row left for the caller to recompute;\n"
        "returns how many rows were marked.",
    )
    f = Function(sig, target)
    x, y, n, rows, strides, status = f.args
    keep = {}
    for arg in (x, y, n, rows, strides, status):
        keep[arg.name] = f.gp(f"{arg.name}_kept", callee_saved=True)
        f.mov(keep[arg.name], arg)
    state = f.stack(16)
    marked = f.stack(8).sized(64)
    rax = f.physical_gp("rax")
    f.mov(marked, 0)
    done, top, next_row = f.label("done"), f.label("row"), f.label("next_row")
    f.test(keep["rows"], keep["rows"])
    f.je(done)
    f.bind(top)
    flagged = f.label("flagged") if may_flag else None
    for i, symbol in enumerate(passes):
        f.mov(f.physical_gp("rdi"), keep["x"])
        f.mov(f.physical_gp("rsi"), keep["y"])
        f.mov(f.physical_gp("rdx"), keep["n"])
        f.lea(f.physical_gp("rcx"), state)
        f.call(Symbol(symbol))
        if i == 0 and may_flag:
            f.test(rax.r32, rax.r32)
            f.jne(flagged)
    f.mov(ptr(keep["status"], bits=32), 0)
    if may_flag:
        f.jmp(next_row)
        f.bind(flagged)
        f.mov(ptr(keep["status"], bits=32), 1)
        f.mov(rax, marked)
        f.add(rax, 1)
        f.mov(marked, rax)
    f.bind(next_row)
    f.add(keep["x"], ptr(keep["row_strides"], 0))
    f.add(keep["y"], ptr(keep["row_strides"], 8))
    f.add(keep["status"], 4)
    f.sub(keep["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.mov(rax, marked)
    f.ret()
    return f
