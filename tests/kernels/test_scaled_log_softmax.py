"""The scaled log_softmax modules (log_softmax and logsumexp of s * x) called directly: their
drivers give the bits their unscaled twins (the same variant with scaled=False) give on the
float32 products s * x, natively and (AVX-512) in the emulator:

- every row length 0 .. 2*U+1 (U the longest unrolled step of the module's passes), x at
  several float offsets from a 64-byte boundary, rows a padded stride apart, in place (y is
  x), negative, tiny, zero and large scales;
- rows with -inf masks (with a negative scale: +inf products, which the masked tails must not
  confuse with their -inf fill), a NaN, +-FLT_MAX, rows of products all below 0 (c < 1: with
  |s| > 1 the overflow check pass runs on them);
- rows whose products overflow: the log_softmax driver leaves a row it cannot compute as the
  twin would on the products (abi.LEFT_TO_CALLER in its state, y not written, x untouched also
  in place), and only a row holding an infinite product; every other row matches the twin;
- on buffers that end at, or start right after, a PROT_NONE page (tests/guarded.py);
- float16 / bfloat16 modules: their float32 counterparts' results on the widened x, rounded.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import runners
from guarded import GuardedArray, PLACEMENTS, pointer
from softjit.codegen import variants
from softjit.codegen.abi import LEFT_TO_CALLER
from softjit.runtime import bindings, log_softmax as runtime

SCALED = [v for v in variants.VARIANTS if v.op == "log_softmax" and v.scaled
          and v.element == "f32"]  # (16-bit: HALF_SCALED below)
EMULATED = [v for v in SCALED if v.isa == "avx512f" and not v.nontemporal]
SCALES = (np.float32(-1.75), np.float32(1.5), np.float32(3e-39), np.float32(0.0),
          np.float32(40.0))
SENTINEL = np.float32(7.0)
ROWS = 6
FLT_MAX = np.finfo(np.float32).max


def twin(variant):
    return dataclasses.replace(variant, scaled=False)


def longest_step(variant) -> int:
    return variant.target.lanes * max(variant.reduce_unroll, variant.output_unroll,
                                      variant.rmax_unroll)


def products(x, s) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return x * s


def fill_rows(rng, x: np.ndarray) -> None:
    """Row 0 ordinary, 1 with -inf masks, 2 huge magnitudes with +-FLT_MAX, 3 only negative
    values (its c < 1), 4 a NaN, 5 two finite values that overflow with scales above 2 beside
    one that does not (an overflowed product where y = s * x - c is finite)."""
    rows, n = x.shape
    x[:] = (rng.standard_normal((rows, n)) * 20).astype(np.float32)
    if n == 0:
        return
    x[1, rng.integers(0, n, max(1, n // 4))] = -np.inf
    x[2, rng.integers(0, n)] = np.float32(1e30)
    x[2, rng.integers(0, n)] = FLT_MAX
    x[2, rng.integers(0, n)] = -FLT_MAX
    x[3] = -np.abs(x[3]) - 1
    x[4, rng.integers(0, n)] = np.nan
    x[5] = -1.7e38
    x[5, rng.integers(0, n)] = -3e38


class Run:
    """The scaled driver and its twin on the same rows: (rows, n) views a padded stride apart
    in 1-D base arrays, x `offset` floats past a 64-byte boundary."""

    def __init__(self, variant, n: int, offset: int, s, rng, emulator=None):
        self.variant, self.n, self.s, self.emulator = variant, n, s, emulator
        stride = n + 3
        self.x_base = runners.aligned(ROWS * stride, offset)
        self.x = self.x_base.reshape(ROWS, stride)[:, :n]
        fill_rows(rng, self.x)
        self.stride = stride

    def view(self, base):
        return base.reshape(ROWS, self.stride)[:, :self.n]

    def call(self, variant, x_base, y_base, symbol: str, states, status=None, s=None) -> int:
        """The driver `symbol` of variant on the rows of x_base (y_base: None for logsumexp,
        x_base itself in place)."""
        x2d = self.view(x_base)
        if s is not None:
            runtime.put_input_scale(states, s)
        if self.emulator is None:
            module = runtime._Module(variant)
            if y_base is None:
                return module.reduce_function(bindings.pointer(x2d), self.n, ROWS,
                                              x2d.strides[0], bindings.pointer(states),
                                              bindings.pointer(status))
            y2d = self.view(y_base)
            return module.rows_function(bindings.pointer(x2d), bindings.pointer(y2d), self.n,
                                        ROWS, runtime._stride_pair(x2d.strides[0],
                                                                   y2d.strides[0]),
                                        bindings.pointer(states))
        machine = self.emulator.machine(variant)
        in_place = y_base is x_base
        mapped = [machine.map(x_base, writable=in_place)]
        try:
            x_at = mapped[0]
            states_at = machine.map(states.view(np.float32))
            mapped.append(states_at)
            if y_base is None:
                status_at = machine.map(status)
                mapped.append(status_at)
                return machine.call(symbol, x_at, self.n, ROWS, 4 * self.stride, states_at,
                                    status_at)
            y_at = x_at if in_place else machine.map(y_base)
            if not in_place:
                mapped.append(y_at)
            strides = np.array([4 * self.stride] * 2, np.int64)
            strides_at = machine.map(strides, writable=False)
            mapped.append(strides_at)
            return machine.call(symbol, x_at, y_at, self.n, ROWS, strides_at, states_at)
        finally:
            for address in mapped:
                machine.unmap(address)

    def log_softmax(self, in_place: bool = False):
        """(y, states, left count, x after the call) of the scaled driver."""
        x_base = self.x_base.copy()
        y_base = x_base if in_place else np.full(self.x_base.shape, SENTINEL, np.float32)
        states = np.full(ROWS, 7.0, runtime.STATE_DTYPE)
        left = self.call(self.variant, x_base, y_base, self.variant.log_softmax_symbol, states,
                         s=self.s)
        return y_base, states, left, x_base

    def twin_log_softmax(self):
        p_base = products(self.x_base, self.s)
        y_base = np.full(self.x_base.shape, SENTINEL, np.float32)
        states = np.full(ROWS, 7.0, runtime.STATE_DTYPE)
        assert self.call(twin(self.variant), p_base, y_base, twin(self.variant).log_softmax_symbol,
                         states) == 0
        return y_base

    def logsumexp(self, variant, x_base, s=None):
        states = np.full(ROWS, 7.0, runtime.STATE_DTYPE)
        status = np.full(ROWS, -5, np.int32)
        marked = self.call(variant, x_base, None, variant.logsumexp_symbol, states, status, s)
        return marked, states["log_sum_exp"].copy(), status


def same_bits(a, b) -> bool:
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(
        np.where(np.isnan(a), 0, a).view(np.uint32 if a.dtype == np.float32 else np.uint64),
        np.where(np.isnan(b), 0, b).view(np.uint32 if b.dtype == np.float32 else np.uint64))


def check_law(variant, emulator=None, lengths=None, offsets=(0, 1, 5)):
    rng = np.random.default_rng(61)
    lengths = lengths if lengths is not None else range(2 * longest_step(variant) + 2)
    combos = [(offset, s) for offset in offsets for s in SCALES]
    for n in lengths:
        chosen = combos if n <= 2 * variant.target.lanes + 1 else [combos[n % len(combos)]]
        for offset, s in chosen:
            run = Run(variant, n, offset, s, rng, emulator)
            what = f"{variant.name} n={n} offset={offset} scale={s}"
            # logsumexp: the twin's c (float64) on the products, NaN rows and marks included
            got = run.logsumexp(variant, run.x_base.copy(), s)
            want = run.logsumexp(twin(variant), products(run.x_base, s))
            assert got[0] == want[0] and np.array_equal(got[2], want[2]), (what, got, want)
            assert same_bits(got[1], want[1]), (what, got[1], want[1])
            # log_softmax, out of place and in place
            y_base, states, left, x_after = run.log_softmax()
            assert np.array_equal(x_after.view(np.uint32), run.x_base.view(np.uint32)), what
            twin_y = run.view(run.twin_log_softmax())
            y = run.view(y_base)
            p = products(run.x, s)
            left_rows = states["log_sum_exp"] == LEFT_TO_CALLER
            assert left == np.count_nonzero(left_rows), what
            for r in range(ROWS):
                if left_rows[r]:
                    # only rows holding an infinite product, or no product but NaNs (then
                    # the max pass, which skips NaN, sees -inf: an empty row too)
                    numbers = p[r][~np.isnan(p[r])]
                    assert numbers.size == 0 or np.isinf(numbers).any(), (what, r)
                    assert (y[r] == SENTINEL).all(), (what, r)
                else:
                    assert same_bits(y[r], twin_y[r]), (what, r, y[r], twin_y[r])
            gaps = np.ones(y_base.shape, bool)
            run.view(gaps)[...] = False
            assert (y_base[gaps] == SENTINEL).all(), f"{what}: wrote between rows"
            z_base, z_states, z_left, _ = run.log_softmax(in_place=True)
            z = run.view(z_base)
            assert z_left == left, what
            for r in range(ROWS):
                kept = run.x[r] if left_rows[r] else y[r]  # a row left: x as it was
                assert same_bits(z[r], kept), (what, "in place", r)
            assert np.array_equal(z_base[gaps].view(np.uint32),
                                  run.x_base[gaps].view(np.uint32)), what


@pytest.mark.parametrize("variant", SCALED, ids=lambda v: v.name)
def test_scaled_drivers_are_their_twins_on_the_products(variant):
    runners.require_native(variant)
    check_law(variant)


@pytest.mark.parametrize("variant", EMULATED, ids=lambda v: v.name)
def test_emulated_scaled_drivers_are_their_twins_on_the_products(variant, emulator):
    """In the emulator (any byte touched outside x, y, the strides and states faults): every
    tail length of a 16-lane vector, and through the one-vector and unrolled loops."""
    step = longest_step(variant)
    check_law(variant, emulator, list(range(0, 34)) + [step - 1, step + 17, 2 * step + 1],
              offsets=(3,))


def test_overflowed_product_rows_are_left_only_where_y_could_change():
    """A -inf product of a finite x: the row is left when c < 1 and |s| > 1 (y = s * x - c may
    be finite), computed by the kernels when c >= 1 (the exact y rounds to -inf too)."""
    x = np.array([[-3e38, -1.7e38, -np.inf, -1.0],   # c = -3.4e38: left
                  [-3e38, 5.0, -np.inf, 1.0]], np.float32)  # c = 10: y = -inf, kept
    for variant in SCALED:
        if variant.isa not in runners.softjit.host_isas():
            continue
        module = runtime._Module(variant)
        y = np.full_like(x, SENTINEL)
        states = np.empty(2, runtime.STATE_DTYPE)
        assert module.log_softmax(x, y, states, np.float32(2.0)) == 1, variant.name
        assert states["log_sum_exp"][0] == LEFT_TO_CALLER and (y[0] == SENTINEL).all()
        want = np.empty_like(y[1:])
        runtime._Module(twin(variant)).log_softmax(products(x[1:], np.float32(2.0)), want,
                                                   np.empty(1, runtime.STATE_DTYPE))
        assert same_bits(y[1], want[0]) and y[1, 0] == -np.inf, variant.name
        # |s| <= 1: no product of a finite x overflows, the check never runs
        assert module.log_softmax(x, y, states, np.float32(0.5)) == 0


GUARD_LENGTHS = list(range(0, 35)) + [127, 257, 1000]


@pytest.mark.parametrize("variant", SCALED, ids=lambda v: v.name)
def test_scaled_drivers_stay_inside_guarded_buffers(variant):
    """Both drivers, in place and not, on x and y that end at or start right after a PROT_NONE
    page: no fault, the canaries intact, the same bits wherever the buffers sit."""
    runners.require_native(variant)
    module = runtime._Module(variant)
    rng = np.random.default_rng(62)
    s = np.float32(-0.625)
    for n in GUARD_LENGTHS:
        values = (rng.standard_normal(n) * 5).astype(np.float32)
        if n:
            values[rng.integers(0, n)] = -np.inf  # +inf product: the row is left
        expected = None
        for x_place, y_place in PLACEMENTS:
            states = np.empty(1, runtime.STATE_DTYPE)
            status = np.empty(1, np.int32)
            with GuardedArray(n, x_place) as gx, GuardedArray(n, y_place) as gy:
                gx.array[:] = values
                gy.array[:] = SENTINEL
                runtime.put_input_scale(states, s)
                module.reduce_function(pointer(gx.address), n, 1, 4 * n,
                                       bindings.pointer(states), bindings.pointer(status))
                c = states["log_sum_exp"].copy()
                runtime.put_input_scale(states, s)
                left = module.rows_function(pointer(gx.address), pointer(gy.address), n, 1,
                                            runtime._stride_pair(4 * n, 4 * n),
                                            bindings.pointer(states))
                y = gy.array.copy()
                runtime.put_input_scale(states, s)
                module.rows_function(pointer(gx.address), pointer(gx.address), n, 1,
                                     runtime._stride_pair(4 * n, 4 * n),
                                     bindings.pointer(states))
                assert gx.canaries_intact() and gy.canaries_intact(), (
                    n, x_place, y_place, gx.touched_outside(), gy.touched_outside())
                result = (c.view(np.uint64).tolist(), left, y.view(np.uint32).tolist(),
                          gx.array.view(np.uint32).tolist())
            expected = result if expected is None else expected
            assert result == expected, (n, x_place, y_place)
        assert expected[1] == 1  # -inf * s = +inf (an empty row: max -inf): the row is left


# ---------------------------------------------------------------------------- 16-bit elements
HALF_SCALED = [v for v in variants.VARIANTS if v.op == "log_softmax" and v.scaled
               and v.element != "f32"]
HALF_EMULATED = [v for v in HALF_SCALED if v.isa == "avx512f" and not v.nontemporal]


def half_rows(rng, dtype, n: int) -> np.ndarray:
    """ROWS rows of n 16-bit values (fill_rows' kinds of rows, as the dtype holds them)."""
    x = np.empty((ROWS, n), np.float32)
    fill_rows(rng, x)
    with np.errstate(over="ignore"):
        return x.astype(dtype)


def call_drivers(variant, x2d, y2d, s, emulator=None):
    """(y2d after the log_softmax driver, its states, left count, logsumexp c, its status,
    marked): natively, or emulated (x read-only unless y2d is x2d)."""
    rows, n = x2d.shape
    states = np.full(rows, 7.0, runtime.STATE_DTYPE)
    c_states = np.full(rows, 7.0, runtime.STATE_DTYPE)
    status = np.full(rows, -5, np.int32)
    runtime.put_input_scale(states, s)
    runtime.put_input_scale(c_states, s)
    x_arg = x2d if y2d is x2d else ("ro", x2d)
    if emulator is None:
        module = runtime._Module(variant)
        p = bindings.pointer
        marked = module.reduce_function(p(x2d), n, rows, x2d.strides[0], p(c_states),
                                        p(status))
        left = module.rows_function(p(x2d), p(y2d), n, rows,
                                    runtime._stride_pair(x2d.strides[0], y2d.strides[0]),
                                    p(states))
    else:
        marked = emulator.call(variant, ("ro", x2d), n, rows, x2d.strides[0],
                               c_states.view(np.float32), status,
                               symbol=variant.logsumexp_symbol)
        strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
        args = (x_arg, ) if y2d is x2d else (x_arg, y2d)
        if y2d is x2d:  # in place: one mapping, passed twice
            machine = emulator.machine(variant)
            at = machine.map(x2d)
            try:
                st = machine.map(states.view(np.float32))
                sa = machine.map(strides, writable=False)
                left = machine.call(variant.log_softmax_symbol, at, at, n, rows, sa, st)
                machine.unmap(st)
                machine.unmap(sa)
            finally:
                machine.unmap(at)
        else:
            left = emulator.call(variant, *args, n, rows, ("ro", strides),
                                 states.view(np.float32), symbol=variant.log_softmax_symbol)
    return y2d, states, left, c_states["log_sum_exp"].copy(), status, marked


def same_values(a, b) -> bool:
    """Equal 16-bit patterns, any NaN matching any NaN (AVX2's bfloat16 rounding makes every
    NaN one pattern) and -0 matching +0: the float32 three-pass row stores x - m and subtracts
    b, the 16-bit one computes (x - a) - b with a = m + 0, which differ in the sign of a zero
    y where m = -0 (x = -0, or products -0 with scale 0), in the unscaled modules as well."""
    wide_a, wide_b = a.astype(np.float32), b.astype(np.float32)
    nan_a, nan_b = np.isnan(wide_a), np.isnan(wide_b)
    zero = (wide_a == 0) & (wide_b == 0)
    keep = ~nan_a & ~zero
    return (np.array_equal(nan_a, nan_b)
            and np.array_equal(a.view(np.uint16)[keep], b.view(np.uint16)[keep]))


def check_half_law(variant, emulator=None, lengths=None):
    """The 16-bit scaled drivers give what their float32 counterparts (the same parameters on
    float32 elements) give on the widened x, rounded to nearest even; the same rows left (y
    untouched, x too in place), the same logsumexp c and marks."""
    from softmax_checks import half_dtype

    dtype = half_dtype(variant.element)
    wide_variant = dataclasses.replace(variant, element="f32")
    rng = np.random.default_rng(63)
    lengths = lengths if lengths is not None else range(2 * longest_step(variant) + 2)
    for n in lengths:
        for s in (SCALES if n <= 2 * variant.target.lanes + 1 else SCALES[n % 5:n % 5 + 1]):
            x = half_rows(rng, dtype, n)
            wide = x.astype(np.float32)
            what = f"{variant.name} n={n} scale={s}"
            y, states, left, c, status, marked = call_drivers(
                variant, x, np.full((ROWS, n), SENTINEL, dtype), s, emulator)
            y32, states32, left32, c32, status32, marked32 = call_drivers(
                wide_variant, wide, np.full((ROWS, n), SENTINEL, np.float32), s, emulator)
            assert (left, marked) == (left32, marked32), what
            assert np.array_equal(status, status32) and same_bits(c, c32), what
            left_rows = states["log_sum_exp"] == LEFT_TO_CALLER
            assert np.array_equal(left_rows, states32["log_sum_exp"] == LEFT_TO_CALLER), what
            with np.errstate(over="ignore"):
                rounded = y32.astype(dtype)
            for r in range(ROWS):
                want = np.full(n, SENTINEL, dtype) if left_rows[r] else rounded[r]
                assert same_values(y[r], want), (what, r, y[r], want)
            z = x.copy()
            call_drivers(variant, z, z, s, emulator)
            for r in range(ROWS):
                assert same_values(z[r], x[r] if left_rows[r] else y[r]), (what, "in place", r)


@pytest.mark.parametrize("variant", HALF_SCALED, ids=lambda v: v.name)
def test_16_bit_scaled_drivers_are_their_float32_counterparts_rounded(variant):
    runners.require_native(variant)
    check_half_law(variant)


@pytest.mark.parametrize("variant", HALF_EMULATED, ids=lambda v: v.name)
def test_emulated_16_bit_scaled_drivers(variant, emulator):
    step = longest_step(variant)
    check_half_law(variant, emulator, list(range(0, 34)) + [step + 17, 2 * step + 1])
