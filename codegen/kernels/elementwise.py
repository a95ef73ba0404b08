"""Standalone kernels: vexp (y = exp(x)) and rmax (the NaN-propagating row maximum)."""
from __future__ import annotations

from softjit.codegen.operands import ptr
from softjit.codegen.abi import RMAX_PARAMS, VEXP_PARAMS, Signature
from softjit.codegen.stream import Function
from softjit.codegen.kernels import constants as K
from softjit.codegen.kernels.exp import ExpP5, resident_fit
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.reduce import horizontal, nan_sticky_max, nan_sticky_view_combiner, tree


# constants worth a register, most loads saved first (AVX2 reads magic_bias three times a vector)
_VEXP_RESIDENT = ("magic_bias_split", "log2e", "c4", "c3", "c2", "c1", "one", "minus_ln2_hi",
                  "minus_ln2_lo", "c5")


def build_vexp(signature_name: str, target, unroll: int, interleave: int = 0) -> Function:
    wanted = tuple(c for c in _VEXP_RESIDENT if not target.has_scalef
                   or c != "magic_bias_split")
    return resident_fit(lambda resident: _vexp(signature_name, target, unroll, interleave,
                                               resident), wanted)


def _vexp(signature_name: str, target, unroll: int, interleave: int, resident: tuple) -> Function:
    sig = Signature(
        signature_name,
        VEXP_PARAMS,
        doc="y[i] = exp(x[i]) for i < n, float32; y may be x. Within 2 ULP where exp(x) is a\n"
            "normal float; subnormal results by one correctly rounded scaling; +inf above\n"
            "88.7228, +0 below -103.97, NaN stays NaN.",
    )
    f = Function(sig, target)
    x, y, n = f.args
    e = ExpP5(f, resident)
    f.comment("x is clamped to [-104, 89] (exp rounds to 0 below, to +inf above); NaN passes")
    x_min = f.constant_register("x_min", K.EXP_X_MIN)
    x_max = f.constant_register("x_max", K.EXP_X_MAX)

    def step(tile):
        xs, ns, ps = f.vecs("x", tile.count), f.vecs("n", tile.count), f.vecs("p", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)
        f.comment("x = min(max(x, -104), 89)")
        for v in xs:
            f.vmaxps(v, x_min, v)  # constant first: VMAXPS returns its second source on NaN
        for v in xs:
            f.vminps(v, x_max, v)
        biased = None if e.scalef else f.vecs("nb", tile.count)
        e.round_and_reduce(xs, ns, biased, split_exponent=True)
        e.polynomial(xs, ps)
        if e.scalef:
            f.comment("y = p * 2^n (VSCALEFPS rounds subnormal results once)")
            for p, nv in zip(ps, ns):
                f.vscalefps(p, p, nv)
        else:
            e.split_power_of_two(ps, biased, xs)
        for i, p in enumerate(ps):
            tile.store(y, i, p)

    for_each_vector(f, n, [x, y], unroll, step, "exp", interleave=interleave)
    f.ret()
    return f


def emit_rmax(f: Function, x, n, unroll: int, accumulators: int, *, nan_propagating: bool,
              elements: dict | None = None, scaled=None):
    """The maximum of x[0:n] into lane 0 of the returned register (-inf for n == 0); elements:
    x's format when it is not float32 (for_each_vector); of scale * x with scaled, a
    loops.ScaledInput for x."""
    accs = f.vecs("max", accumulators)
    f.comment("max = -inf in every lane of every accumulator")
    for acc in accs:
        f.load_constant(acc, "minus_inf", K.NEG_INF)
    neg_inf = f.constant("minus_inf", K.NEG_INF)

    def combine(dst, a, b):
        if nan_propagating:
            nan_sticky_max(f, dst, a, b)
        else:
            f.vmaxps(dst, b, a)

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i, fill=neg_inf)
        for i, v in enumerate(xs):
            acc = tile.accumulator(accs, i)
            combine(acc, acc, v)

    f.comment("max = max(max, x), accumulator i mod K for vector i")
    for_each_vector(f, n, [x], unroll, step, "max", elements=elements, scaled=scaled)
    f.comment("max over accumulators, then over lanes")
    result = tree(f, accs, combine)
    if nan_propagating:
        horizontal(f, result, nan_sticky_view_combiner(f))
    else:
        horizontal(f, result, lambda d, a, b: f.vmaxps(d, b, a))
    return result


def build_rmax(signature_name: str, target, unroll: int, accumulators: int) -> Function:
    sig = Signature(
        signature_name,
        RMAX_PARAMS,
        doc="*max = the largest of x[0:n] (-inf when n == 0), NaN if any x[i] is NaN.",
    )
    f = Function(sig, target)
    x, n, out = f.args
    result = emit_rmax(f, x, n, unroll, accumulators, nan_propagating=True)
    f.vmovss(ptr(out, bits=32), result.xmm)
    f.ret()
    return f
