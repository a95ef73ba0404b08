"""The float16 / bfloat16 row drivers never touch a byte outside x and y: each runs natively on
arrays that start right after or end right before a PROT_NONE page (tests/guarded.py), at every
tail length of both ISAs, and the canaries around y stay intact. AVX2 copies its 16-bit tails
word by word through a stack buffer; AVX-512 masks them with k registers (the emulator checks
the same kernels byte by byte: tests/emulator/test_half_emulated.py)."""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from guarded import GuardedArray, PLACEMENTS, pointer
from softjit.codegen import variants
from softjit.runtime import bindings

HOST_ISAS = softjit.host_isas()
HALF_SOFTMAX = [v for v in variants.VARIANTS if v.op == "softmax" and v.element != "f32"]
LENGTHS = list(range(0, 41)) + [127, 255, 257, 1000]


from softmax_checks import half_dtype  # noqa: E402


@pytest.mark.parametrize("v", HALF_SOFTMAX, ids=lambda v: v.name)
def test_half_drivers_stay_inside_guarded_buffers(v):
    if v.isa not in HOST_ISAS:
        pytest.skip(f"this host does not run {v.isa} (it runs {', '.join(HOST_ISAS)}); "
                    f"tests/emulator/test_half_emulated.py runs {v.name} emulated")
    dtype = half_dtype(v.element)
    run = bindings.function(v, v.driver_symbol)
    rng = np.random.default_rng(44)
    strides = np.zeros(2, np.int64)
    status = np.zeros(1, np.int32)
    for n in LENGTHS:
        values = (rng.standard_normal(n) * 5).astype(np.float32).astype(dtype)
        expected = None
        for x_place, y_place in PLACEMENTS:
            with GuardedArray(n, x_place, dtype) as gx, GuardedArray(n, y_place, dtype) as gy:
                gx.array[:] = values
                marked = run(pointer(gx.address), pointer(gy.address), n, 1,
                             bindings.pointer(strides), bindings.pointer(status))
                # (an empty row has no two-pass sum: the driver leaves it to the caller)
                assert marked == (n == 0 and v.algorithm == "two-pass")
                assert gx.canaries_intact() and gy.canaries_intact(), (n, x_place, y_place,
                                                                       gy.touched_outside())
                result = gy.array.view(np.uint16).copy()
            expected = result if expected is None else expected
            assert np.array_equal(result, expected), (n, x_place, y_place)
