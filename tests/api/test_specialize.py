"""softjit.specialize: softmax and exp kernels with unregistered parameters, built on first use,
agree with the registered kernels (natively and in the emulator)."""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softjit.codegen.variants import REGISTRY


def _rows(rng, rows, n):
    x = (rng.standard_normal((rows, n)) * 20).astype(np.float32)
    if rows > 3 and n > 3:
        x[1, 2] = np.inf
        x[2, :] = -np.inf
        x[3, 1] = np.nan
        x[0, 0] = 3e38
    return x


def _same(a, b):
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.allclose(
        np.nan_to_num(a), np.nan_to_num(b), rtol=2e-6, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["two-pass", "three-pass-reload", "three-pass-recompute"])
@pytest.mark.parametrize("isa", ["avx2", "avx512f"])
def test_a_specialised_softmax_agrees_with_softmax(algorithm, isa):
    k = softjit.specialize("softmax", algorithm=algorithm, isa=isa, reduce_unroll=3,
                           reduce_accumulators=3, output_unroll=2, interleave=1)
    assert k.name not in REGISTRY  # not a registered parameter set
    rng = np.random.default_rng(5)
    for rows, n in ((1, 1), (6, 37), (3, 260)):
        x = _rows(rng, rows, n)
        reference = softjit.softmax(x, isa="avx2", algorithm="three-pass-reload") \
            if "avx2" in softjit.host_isas() else None
        emulated = k.emulate(x)
        if reference is not None:
            assert _same(emulated, reference), (rows, n)
        if isa in softjit.host_isas():
            assert np.array_equal(k(x).view(np.uint32), emulated.view(np.uint32))


def test_a_specialised_exp_is_the_exp():
    x = np.linspace(-110, 95, 2001).astype(np.float32)
    for isa in ("avx2", "avx512f"):
        k = softjit.specialize("exp", isa=isa, unroll=1)
        y = k.emulate(x)
        if isa in softjit.host_isas():
            assert np.array_equal(y, softjit.exp(x, isa=isa))
            assert np.array_equal(k(x), y)


def test_bad_specialisations_are_named():
    with pytest.raises(TypeError, match="unknown parameters \\['unrol'\\]"):
        softjit.specialize("softmax", unrol=3)
    with pytest.raises(ValueError, match="op must be"):
        softjit.specialize("gelu")
    with pytest.raises(ValueError, match="reduce_unroll must be a non-negative int"):
        softjit.specialize("softmax", isa="avx2", reduce_unroll=-1)
    with pytest.raises(TypeError, match="float32"):
        softjit.specialize("exp", isa="avx2").emulate(np.ones(3))
