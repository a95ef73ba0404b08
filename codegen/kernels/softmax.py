"""The softmax passes, one ISA-generic emitter per pass (the math: docs/algorithms.md).

Every pass has the one pass signature of codegen/abi.py, so that the row driver
(codegen/kernels/driver.py) can chain any of them:

    int pass(const float* x, float* y, size_t n, float* state)

The state (abi.PASS_STATE) holds the row maximum m (three-pass) or the sum's exponent e
(two-pass), the output scale (1/sum) and the sum itself (float32; v of sum = v * 2^e for
two-pass), so that the pieces of one row split over threads can be combined. A pass returns
abi.PASS_OK, except raddextexp, which returns abi.PASS_RECOMPUTE when its row must be recomputed
by the three-pass algorithm (a NaN, an infinity, or magnitudes beyond the two-pass clamp; see
constants.TWO_PASS_X_LIMIT).

Sums are accurate at any length: float32 accumulators take one block of elements (a few
thousand), then fold into float64 lane accumulators, so the float32 error never grows with n.

Every builder also makes a scaled flavour (scaled=True): softmax(scale * x), with the scale read
from the state's "input_scale" and multiplied into every element of x as it is loaded, in every
pass that reads x (loops.ScaledInput). Each pass sees the same float32 products, so a scaled
pass computes exactly what the unscaled one computes on the array float32(scale) * x. The scaled
max pass also returns abi.PASS_RECOMPUTE when the maximum is not finite (+-inf, or NaN), so that
the caller can tell a product that overflowed from an infinity of x itself.
"""
from __future__ import annotations

from softjit.codegen.abi import F32, PASS_OK, PASS_RECOMPUTE
from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.elements import NONNEGATIVE_OR_NAN, UNIT_INTERVAL
from softjit.codegen.kernels.elementwise import emit_rmax
from softjit.codegen.kernels.exp import resident_fit
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.pass_emitter import (INPUT_SCALE, STATE_MAX_OR_EXPONENT, STATE_SCALE,
                                                  PassEmitter, buffers, pass_function,
                                                  return_value, scalar)
from softjit.codegen.kernels.reduce import horizontal, tree
from softjit.codegen.operands import ptr
from softjit.codegen.stream import Function


def build_rmax_pass(name: str, target, unroll: int, accumulators: int, element=F32,
                    scaled: bool = False) -> Function:
    what = ("state[0] = max(s * x[0:n]), s = state[3]; returns 1 when it is not finite.\n"
            "NaN need not propagate (the next\n" if scaled
            else "state[0] = max(x[0:n]); NaN need not propagate (the next\n")
    f = pass_function(name, target, what + "pass turns any NaN into a NaN row).", element)
    x, _, n, state = f.args
    pe = PassEmitter(f, (INPUT_SCALE,))
    result = emit_rmax(f, x, n, unroll, accumulators, nan_propagating=False,
                       elements=buffers(f, element), scaled=pe.scaled_input(state, x, scaled))
    f.vmovss(ptr(state, STATE_MAX_OR_EXPONENT, bits=32), result.xmm)
    if scaled:
        f.comment("recompute unless the max is finite (VUCOMISS: equal or unordered sets ZF)")
        recompute = f.label("recompute")
        for bound in ("plus_inf", "minus_inf"):
            f.vucomiss(result.xmm, scalar(f.constant(bound, _INFINITIES[bound]), 32))
            f.je(recompute)
        return_value(f, PASS_OK)
        f.bind(recompute)
        return_value(f, PASS_RECOMPUTE)
        return f
    return_value(f, PASS_OK)
    return f


_INFINITIES = {"plus_inf": -K.NEG_INF, "minus_inf": K.NEG_INF}


# Constants worth a register, most loads saved first (resident_fit keeps the longest prefix that
# fits). magic_bias is read twice per vector on AVX2; c5 only starts each polynomial.
_THREE_PASS_RESIDENT = ("magic_bias", "log2e", "c4", "c3", "c2", "c1", "one", "minus_ln2", "c5")
_TWO_PASS_RESIDENT = ("one", "magic_bias", "log2e", "c4", "c3", "c2", "c1", "minus_ln2_hi",
                      "minus_ln2_lo", "c5", "minus_127")


def _resident(wanted: tuple, target, scaled: bool = False) -> tuple:
    """The constants of `wanted` a target's kernels read (AVX-512 has no magic bias), after the
    input scale of a scaled pass (read once per vector of x)."""
    unused = ("magic_bias", "minus_127") if target.has_scalef else ()
    return (INPUT_SCALE,) * scaled + tuple(name for name in wanted if name not in unused)


def _build_sum_pass(name, target, unroll, accumulators, block, store: bool, interleave=0,
                    element=F32, scaled=False) -> Function:
    return resident_fit(lambda resident: _sum_pass(name, target, unroll, accumulators, block, store,
                                                   interleave, resident, element, scaled),
                        _resident(_THREE_PASS_RESIDENT, target, scaled))


def _scaled_doc(scaled: bool) -> str:
    return "\nx stands for s * x, s = state[3] (the input scale)." if scaled else ""


def _sum_pass(name, target, unroll, accumulators, block, store, interleave, resident,
              element, scaled) -> Function:
    what = "y = exp(x - m) and " if store else ""
    f = pass_function(name, target, f"{what}state[1] = 1 / sum(exp(x - m)), m = state[0];\n"
                                     "float32 block sums fold into float64 lane sums."
                                     + _scaled_doc(scaled), element)
    x, y, n, state = f.args
    pe = PassEmitter(f, resident)
    scaled_x = pe.scaled_input(state, x, scaled)
    m = pe.broadcast_state(state, STATE_MAX_OR_EXPONENT, "m")
    d_min = pe.difference_floor()
    minus_inf = f.constant("minus_inf", K.NEG_INF)
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
        f, count, pointers, unroll, step, "sum", interleave=interleave,
        elements=buffers(f, element), scaled=scaled_x), end)
    f.comment("state[1] = 1 / sum over lanes")
    pe.store_reciprocal(pe.sum_f64_lanes(pe.load_slot(wide[0], "sum_lo"),
                                         pe.load_slot(wide[1], "sum_hi")), state)
    return_value(f, PASS_OK)
    return f


def build_raddexpminusmax(name, target, unroll, accumulators, block, interleave=0,
                          element=F32, scaled=False) -> Function:
    return _build_sum_pass(name, target, unroll, accumulators, block, False, interleave, element,
                           scaled)


def build_raddstoreexpminusmax(name, target, unroll, accumulators, block, interleave=0,
                               scaled=False) -> Function:
    return _build_sum_pass(name, target, unroll, accumulators, block, True, interleave,
                           scaled=scaled)


def build_vscaleexpminusmax(name, target, unroll, nontemporal=False, interleave=0,
                            element=F32, scaled=False) -> Function:
    # AVX-512 reads the polynomial's coefficients pre-scaled by s from registers of their own
    wanted = tuple(c for c in _THREE_PASS_RESIDENT
                   if not (target.has_scalef and c in _POLYNOMIAL_COEFFICIENTS))
    return resident_fit(lambda resident: _vscaleexpminusmax(name, target, unroll, nontemporal,
                                                            interleave, resident, element,
                                                            scaled),
                        _resident(wanted, target, scaled))


_POLYNOMIAL_COEFFICIENTS = ("c5", "c4", "c3", "c2", "c1", "one")


def _vscaleexpminusmax(name, target, unroll, nontemporal, interleave, resident,
                       element, scaled) -> Function:
    f = pass_function(name, target, "y = exp(x - m) * s with m = state[0], s = state[1]."
                      + _scaled_doc(scaled).replace("s * x, s =", "t * x, t ="), element)
    x, y, n, state = f.args
    pe = PassEmitter(f, resident)
    scaled_x = pe.scaled_input(state, x, scaled)
    m = pe.broadcast_state(state, STATE_MAX_OR_EXPONENT, "m")
    s = pe.broadcast_state(state, STATE_SCALE, "s")
    d_min = pe.difference_floor()
    scaled_coefficients = None
    if pe.scalef:
        # y = (s * p(t)) * 2^n: s folded into the coefficients once per call, one FMA-pipe
        # operation a vector fewer than p * 2^n * s. The same guarantees: the max (t = n = 0)
        # gives the last coefficient, s * 1 = s exactly (1 for a row with one finite entry),
        # every other y is about s * exp(d) <= exp(d) / (1 + exp(d)) < 1, and a subnormal y is
        # rounded once, by VSCALEFPS. Each s * c_i adds one float32 rounding (2^-24 of its term).
        f.comment("per call: the polynomial's coefficients times s")
        scaled_coefficients = []
        for name, value in pe.e.COEFFICIENTS:
            c = f.vec(f"s_{name}")
            f.vmulps(c, s, f.constant(name, value))
            scaled_coefficients.append(c)

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        ps = pe.exp_minus_max(xs, m, d_min, coefficients=scaled_coefficients)
        if scaled_coefficients is None:
            f.comment("y = exp(x - m) * s")
        for i, p in enumerate(ps):
            if scaled_coefficients is None:
                f.vmulps(p, p, s)
            tile.store(y, i, p)

    # y >= +0 or NaN: exp(x - m) >= +0 and s = 1 / sum > 0
    for_each_vector(f, n, [x, y], unroll, step, "scale", nontemporal_stores=nontemporal,
                    interleave=interleave, elements=buffers(f, element), scaled=scaled_x,
                    elementwise=True, stored_values=NONNEGATIVE_OR_NAN)
    return_value(f, PASS_OK)
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
    return_value(f, PASS_OK)
    return f


def build_raddextexp(name, target, unroll, accumulators, block, interleave=0,
                     element=F32, scaled=False) -> Function:
    return resident_fit(lambda resident: _raddextexp(name, target, unroll, accumulators, block,
                                                     interleave, resident, element, scaled),
                        _resident(_TWO_PASS_RESIDENT, target, scaled))


def _raddextexp(name, target, unroll, accumulators, block, interleave, resident,
                element, scaled) -> Function:
    f = pass_function(
        name, target,
        "Two-pass pass 1: sum(exp(x)) = v * 2^e kept with a float exponent (never overflows);\n"
        "state[0] = e, state[1] = 1 / v. Returns 1 (recompute with three passes) when the row\n"
        "holds NaN or +inf, only -inf, or magnitudes beyond the two-pass clamp."
        + _scaled_doc(scaled), element)
    x, _, n, state = f.args
    pe = PassEmitter(f, resident)
    scaled_x = pe.scaled_input(state, x, scaled)
    e = pe.e
    x_min = f.constant_register("x_min", -K.TWO_PASS_X_LIMIT)
    # VSCALEFPS computes 2^d as 1.0 * 2^d: 1.0 must be a register (the resident one if kept)
    one = e.constant_register("one", 1.0) if pe.scalef else None
    minus_inf = f.constant("minus_inf", K.NEG_INF)
    vs, es = f.vecs("v", accumulators), f.vecs("e", accumulators)
    # per lane: float64 sums (low and high lanes) and the exponent they are relative to
    wide = pe.stack_vectors(2)
    (run_slot,) = pe.stack_vectors(1, f.constant("exponent_sentinel", K.EXPONENT_SENTINEL))

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
        v, ev = tree(f, list(zip(vs, es)), lambda merged, a, b: combine(a, b))
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
                                            interleave=interleave,
                                            elements=buffers(f, element), scaled=scaled_x), end)

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
    f.vmovss(ptr(state, STATE_MAX_OR_EXPONENT, bits=32), top.xmm)
    r = pe.store_reciprocal(total, state, round_up=True)
    f.comment("recompute with three passes unless 1/v is a number and e is inside the clamp")
    recompute = f.label("recompute")
    f.vucomiss(r.xmm, r.xmm)
    f.jp(recompute)
    f.vucomiss(top.xmm, scalar(f.constant("e_high", K.TWO_PASS_E_HIGH), 32))
    f.jae(recompute)
    f.vucomiss(top.xmm, scalar(f.constant("e_low", K.TWO_PASS_E_LOW), 32))
    f.jbe(recompute)
    return_value(f, PASS_OK)
    f.bind(recompute)
    return_value(f, PASS_RECOMPUTE)
    return f


def build_vscaleextexp(name, target, unroll, nontemporal=False, interleave=0,
                       element=F32, scaled=False) -> Function:
    return resident_fit(lambda resident: _vscaleextexp(name, target, unroll, nontemporal,
                                                       interleave, resident, element, scaled),
                        _resident(_TWO_PASS_RESIDENT, target, scaled))


def _vscaleextexp(name, target, unroll, nontemporal, interleave, resident, element,
                  scaled) -> Function:
    f = pass_function(name, target, "Two-pass pass 2: y = min(p(x) * r * 2^(n(x) - e), 1) with\n"
                                     "e = state[0], r = state[1] (1/v rounded up)."
                                     + _scaled_doc(scaled), element)
    x, y, n, state = f.args
    # the magic bias is folded with e into a register of its own here
    pe = PassEmitter(f, tuple(c for c in resident if c != "magic_bias"))
    scaled_x = pe.scaled_input(state, x, scaled)
    e = pe.e
    inv_v = pe.broadcast_state(state, STATE_SCALE, "inv_v")
    e_row = pe.broadcast_state(state, STATE_MAX_OR_EXPONENT, "e")
    one = e.c("one", 1.0)
    bias = None
    if pe.scalef:
        x_min = f.constant_register("x_min", -K.TWO_PASS_X_LIMIT)
    else:
        f.comment("per call: magic bias - e, so that the biased exponent bits hold n - e + 127")
        bias = f.vec("bias")
        f.load_constant(bias, "magic_bias", K.MAGIC_BIAS)
        f.vsubps(bias, bias, e_row)
        f.comment("per call: x_min = (e - 127) * ln2, where n - e = -127: y = +0 from there down")
        # pass 1 accepted this row, so e - 127 > -2^20 * log2e: x_min also does the clamp's job
        # (-inf and huge negatives), and n - e never goes below -127 (the exponent field's 0).
        x_min = f.vec("x_min")
        f.vaddps(x_min, e_row, e.c("minus_127", -127.0))
        f.vmulps(x_min, x_min, f.constant("ln2", K.LN2))

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        for v in xs:
            f.vmaxps(v, x_min, v)
        ns, ps = f.vecs("n", tile.count), f.vecs("p", tile.count)
        biased = f.vecs("nb", tile.count) if not pe.scalef else None
        e.round_and_reduce(xs, ns, biased, bias)
        e.polynomial(xs, ps)
        # p is bit for bit the p pass 1 summed, so the element(s) with n = e give p * r >= 1
        # when p is the whole sum v (a row with one finite entry): the min makes them exactly
        # 1, and no output ever exceeds 1.
        f.comment("y = min(p * r * 2^(n - e), 1)")
        for p in ps:
            f.vmulps(p, p, inv_v)
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
        for p in ps:
            f.vminps(p, p, one)
        for i, p in enumerate(ps):
            tile.store(y, i, p)

    # y in [+0, 1], never NaN: VMINPS returns its second source, 1, for a NaN p
    for_each_vector(f, n, [x, y], unroll, step, "extexp", nontemporal_stores=nontemporal,
                    interleave=interleave, elements=buffers(f, element), scaled=scaled_x,
                    elementwise=True, stored_values=UNIT_INTERVAL)
    return_value(f, PASS_OK)
    return f
