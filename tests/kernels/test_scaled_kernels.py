"""The scaled softmax kernels (softmax(s * x)) called directly: the law they are built to, bit for
bit. A scaled module run on x with the input scale s gives the bits its unscaled twin (the same
variant with scaled=False) gives on the float32 products s * x:

- every row length 0 .. 2*U+1 (U the longest unrolled step of the module's passes, so every
  tail, the one-vector loop and the unrolled loop), x at several float offsets from a 64-byte
  boundary, rows a padded stride apart, negative, tiny, huge and zero scales;
- rows with -inf entries (masks): with a negative scale they are +inf products, which the
  masked tail must not confuse with its -inf fill;
- the AVX-512 modules also through the emulator (any host), the twin emulated too.

A scaled three-pass driver marks a row whose maximum is not finite (a product that may have
overflowed; the host takes it) where the twin computes a NaN row: marked rows are checked to
be left alone (y untouched), the others to match.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import drivers
import runners
from softjit.codegen import variants

SOFTMAX = [v for v in variants.VARIANTS if v.op == "softmax" and v.scaled]
SCALES = (np.float32(-1.75), np.float32(0.3), np.float32(3e-39), np.float32(0.0))
SENTINEL = np.float32(7.0)


def twin(variant):
    return dataclasses.replace(variant, scaled=False)


def longest_step(variant) -> int:
    return variant.target.lanes * max(variant.reduce_unroll, variant.output_unroll,
                                      variant.rmax_unroll)


def rows_for(rng, n: int, offset: int, rows: int = 3):
    """(x, y) as (rows, n) views a padded stride apart, x `offset` floats past a 64-byte
    boundary; row 1 holds -inf masks, row 2 huge magnitudes (products stay finite)."""
    stride = n + 3
    x_base = runners.aligned(rows * stride, offset)
    x_base[:] = rng.standard_normal(x_base.size).astype(np.float32) * np.float32(20.0)
    y_base = np.full(rows * stride, SENTINEL, np.float32)
    x = x_base.reshape(rows, stride)[:, :n]
    y = y_base.reshape(rows, stride)[:, :n]
    if n:
        x[1, rng.integers(0, n, max(1, n // 4))] = -np.inf
        x[2, rng.integers(0, n)] = np.float32(1e30)
    return x_base, y_base, x, y


def cases(variant, lengths, offsets):
    """(n, offset, scale): every offset and scale for the tail lengths (n <= 2 * lanes + 1),
    one of them in turn for the longer rows."""
    combos = [(offset, s) for offset in offsets for s in SCALES]
    for n in lengths:
        if n <= 2 * variant.target.lanes + 1:
            yield from ((n, offset, s) for offset, s in combos)
        else:
            yield (n, *combos[n % len(combos)])


def check_softmax_law(variant, emulator=None, lengths=None, offsets=(0, 1, 5)):
    rng = np.random.default_rng(31)
    lengths = lengths if lengths is not None else range(2 * longest_step(variant) + 2)
    for n, offset, s in cases(variant, lengths, offsets):
        x_base, y_base, x, y = rows_for(rng, n, offset)
        x_before = x_base.copy()
        marked, status = drivers.call(variant, x, y, emulator=emulator, input_scale=s)
        assert np.array_equal(x_base.view(np.uint32), x_before.view(np.uint32))
        with np.errstate(invalid="ignore"):  # 0 * -inf
            p = (x_base * s).reshape(3, -1)[:, :n]
        twin_y = np.full(y_base.shape, SENTINEL, np.float32)
        ty = twin_y.reshape(3, -1)[:, :n]
        drivers.call(twin(variant), p, ty, emulator=emulator)
        what = f"{variant.name} n={n} offset={offset} scale={s}"
        assert marked == int(np.count_nonzero(status)), what
        for r in range(3):
            if status[r]:
                # (an empty row's maximum is -inf: marked, and nothing to write)
                flagged = (variant.algorithm == "two-pass" or n == 0
                           or not np.isfinite(p[r].max()))
                assert flagged and (y[r] == SENTINEL).all(), (what, r)
            else:
                assert np.array_equal(y[r].view(np.uint32), ty[r].view(np.uint32)), (
                    what, r, y[r], ty[r])
        gaps = np.ones(y_base.shape, bool)
        gaps.reshape(3, -1)[:, :n] = False
        assert (y_base[gaps] == SENTINEL).all(), f"{what}: wrote between rows"


@pytest.mark.parametrize("variant", SOFTMAX, ids=lambda v: v.name)
def test_scaled_driver_is_its_twin_on_the_products(variant):
    runners.require_native(variant)
    check_softmax_law(variant)


EMULATED_SOFTMAX = [v for v in SOFTMAX if v.isa == "avx512f" and not v.nontemporal]


@pytest.mark.parametrize("variant", EMULATED_SOFTMAX, ids=lambda v: v.name)
def test_emulated_scaled_driver_is_its_twin_on_the_products(variant, emulator):
    """In the emulator (any byte touched outside x, y, the strides and status faults): every
    tail length of a 16-lane vector, and through the one-vector and unrolled loops."""
    step = longest_step(variant)
    lengths = list(range(0, 34)) + [step - 1, step + 17, 2 * step + 1]
    check_softmax_law(variant, emulator, lengths, offsets=(3,))


def test_every_scaled_module_has_a_registered_twin():
    """Each scaled module is registered next to an unscaled one with the same parameters (the
    runtime finds it through the same lookups, with scaled=True)."""
    for v in SOFTMAX:
        assert twin(v) in variants.REGISTRY.variants, v.name
    float32 = [v for v in variants.VARIANTS if v.op == "softmax" and v.element == "f32"]
    assert len(SOFTMAX) == len(float32) // 2
