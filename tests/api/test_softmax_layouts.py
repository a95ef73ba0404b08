"""softjit.softmax on every memory layout: in place, out arrays (strided, padded, Fortran,
overlapping), non-contiguous and reversed inputs, every axis of 3-D arrays. Results never
depend on strides: a view gives the bits of its contiguous copy.
"""
from __future__ import annotations

import numpy as np
import pytest

import softjit

from softmax_checks import check_softmax, uniform, with_minus_inf
from softmax_cases import (ALGORITHMS, ALL_ALGORITHMS, ISAS, native, concrete, rng_for)


# ------------------------------------------------------------------------------------ layouts
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place(algorithm, isa):
    native(isa)
    rng = rng_for("inplace", algorithm, isa)
    for shape in [(5, 77), (1, 1000), (3, 2, 65), (300,)]:
        x = with_minus_inf(rng, uniform(rng, shape, 40.0), 0.2)
        if shape[-1] > 3:
            x.reshape(-1, shape[-1])[0, :3] = [np.nan, 1, 2]  # a NaN row in place
        expected = softjit.softmax(x, algorithm=algorithm, isa=isa)
        buffer = x.copy()
        got = softjit.softmax(buffer, algorithm=algorithm, isa=isa, out=buffer)
        assert got is buffer
        assert np.array_equal(buffer, expected, equal_nan=True)
        check_softmax(buffer, x, label=(algorithm, isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place_along_other_axes_and_strided(algorithm, isa):
    """out is x, but x is not row-contiguous (the kernels cannot write it directly)."""
    native(isa)
    rng = rng_for("inplace2", algorithm, isa)
    x = uniform(rng, (6, 50, 4), 10.0)
    for axis in (0, 1, 2):
        buffer = x.copy()
        softjit.softmax(buffer, axis=axis, algorithm=algorithm, isa=isa, out=buffer)
        check_softmax(buffer, x, axis, label=(algorithm, isa))
    big = uniform(rng, (8, 100), 10.0)
    buffer = big.copy()
    view = buffer[:, ::2]
    softjit.softmax(view, algorithm=algorithm, isa=isa, out=view)
    check_softmax(view, big[:, ::2], label=(algorithm, isa))
    assert np.array_equal(buffer[:, 1::2], big[:, 1::2]), "elements outside the view changed"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_out_arrays(algorithm, isa):
    native(isa)
    rng = rng_for("out", algorithm, isa)
    x = uniform(rng, (9, 301), 25.0)
    x_before = x.copy()
    expected = softjit.softmax(x, algorithm=algorithm, isa=isa)
    check_softmax(expected, x, label=(algorithm, isa))
    out = np.full_like(x, 7.0)
    assert softjit.softmax(x, algorithm=algorithm, isa=isa, out=out) is out
    assert np.array_equal(out, expected)
    # a strided out (a view of a larger array) and a Fortran-ordered one
    big = np.full((9, 602), 7.0, np.float32)
    view = big[:, ::2]
    softjit.softmax(x, algorithm=algorithm, isa=isa, out=view)
    assert np.array_equal(view, expected)
    assert (big[:, 1::2] == 7.0).all(), "out wrote outside its view"
    fortran = np.asfortranarray(np.zeros_like(x))
    softjit.softmax(x, algorithm=algorithm, isa=isa, out=fortran)
    assert np.array_equal(fortran, expected)
    # out overlapping x with a shift: results must not read partly written rows
    base = np.zeros(9 * 301 + 1, np.float32)
    src = base[1:].reshape(9, 301)
    src[...] = x
    dst = base[:-1].reshape(9, 301)
    softjit.softmax(src, algorithm=algorithm, isa=isa, out=dst)
    assert np.array_equal(dst, expected)
    assert np.array_equal(x, x_before), "x was modified"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_out_with_padded_rows(algorithm, isa):
    """out rows a padded stride apart (the leading columns of a wider array)."""
    native(isa)
    rng = rng_for("out-padded", algorithm, isa)
    x = uniform(rng, (9, 301), 25.0)
    expected = softjit.softmax(x, algorithm=algorithm, isa=isa)
    padded = np.full((9, 320), 7.0, np.float32)
    assert softjit.softmax(x, algorithm=algorithm, isa=isa, out=padded[:, :301]).base is padded
    assert np.array_equal(padded[:, :301], expected)
    assert (padded[:, 301:] == 7.0).all(), "out wrote into the padding"


NONCONTIGUOUS = {
    "every_other_column": lambda a: a[:, ::2],
    "transpose": lambda a: a.T,
    "reversed_columns": lambda a: a[:, ::-1],
    "reversed_rows": lambda a: a[::-1],
    "reversed_both": lambda a: a[::-1, ::-1],
    "every_third_row": lambda a: a[::3],
    "leading_columns": lambda a: a[:, :-5],  # rows a padded stride apart
    "fortran": np.asfortranarray,
}


@pytest.mark.parametrize("layout", sorted(NONCONTIGUOUS))
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_noncontiguous_inputs(algorithm, isa, layout):
    """Results never depend on strides: equal, bit for bit, to the contiguous copy's."""
    native(isa)
    rng = rng_for("layout", algorithm, isa, layout)
    for shape in [(12, 70), (40, 33), (5, 1001)]:
        base = with_minus_inf(rng, uniform(rng, shape, 60.0), 0.1)
        x = NONCONTIGUOUS[layout](base)
        before = base.copy()
        for axis in (-1, 0):
            y = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa)
            check_softmax(y, x, axis, label=(algorithm, isa))
            same = softjit.softmax(np.ascontiguousarray(x), axis=axis, algorithm=algorithm, isa=isa)
            assert np.array_equal(y, same, equal_nan=True)  # all -inf rows are NaN
        assert np.array_equal(base, before), "input was modified"


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_axes_of_3d_arrays(algorithm, isa):
    native(isa)
    rng = rng_for("axes", algorithm, isa)
    x = uniform(rng, (5, 37, 19), 40.0)
    for axis in (0, 1, 2, -1, -2, -3):
        y = softjit.softmax(x, axis=axis, algorithm=algorithm, isa=isa)
        check_softmax(y, x, axis, label=(concrete(algorithm, isa), isa))
        moved = softjit.softmax(np.ascontiguousarray(np.moveaxis(x, axis, -1)),
                                algorithm=algorithm, isa=isa)
        assert np.array_equal(np.moveaxis(y, axis, -1), moved)
    # the default axis is the last
    assert np.array_equal(softjit.softmax(x, algorithm=algorithm, isa=isa),
                          softjit.softmax(x, axis=2, algorithm=algorithm, isa=isa))
    # numpy integer axes are accepted
    assert np.array_equal(softjit.softmax(x, axis=np.int64(1), algorithm=algorithm, isa=isa),
                          softjit.softmax(x, axis=1, algorithm=algorithm, isa=isa))
