"""scale= of softmax, log_softmax and logsumexp (a temperature: softmax(scale * x)): the check of
the argument, and the rows the scaled kernels cannot take.

The scaled kernels multiply every element of x by float32(scale) as they load it, in every pass
(codegen/kernels/loops.py ScaledInput), so for every row whose products are finite float32
numbers the result is bit for bit the unscaled function of the array float32(scale) * x.

A product can overflow although x is finite (x = 3e38, scale = 2). Such a row never comes out
of the kernels silently wrong: a +inf product makes the row's maximum +inf and a row of only
-inf products has maximum -inf, and the scaled max passes (three-pass) and the two-pass first
pass flag both, so the row is left to the host. (A -inf product in a row whose maximum is
finite is right as it is for softmax and logsumexp: it lies at least half a float32 ulp of
FLT_MAX, about 1e31, below that maximum, so its exp rounds to 0, as the exact result does. In
log_softmax its y = s * x - c is also -inf, as the exact one rounds, unless c < 0: the scaled
log_softmax driver checks such rows for a product of a finite x that overflowed before it
writes y, and leaves them to the host, x untouched also in place; codegen/kernels/
log_softmax.py.) The host computes a flagged row in
float64, where scale * x is exact and cannot overflow: an all-NaN row (softmax, log_softmax) or
NaN / +inf / -inf (logsumexp) when the exact products hold a NaN (x NaN, or 0 * inf), +inf
(x = +-inf times a scale of its sign) or only -inf, as the unscaled functions give for those;
else the float64 result rounded to float32.
"""
from __future__ import annotations

import math
import numbers

import numpy as np


def check_scale(scale, function: str):
    """scale as the numpy.float32 the kernels multiply by, or None for None and for 1 (whose
    products equal x: the unscaled kernels give the same bits).

    A Python int or float, or a numpy integer or floating scalar, finite and within the float32
    range once rounded; not a bool, a string or an array."""
    if scale is None:
        return None
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (numbers.Real, np.floating,
                                                                     np.integer)):
        raise TypeError(f"softjit.{function}: scale must be a real number (a Python or numpy "
                        f"int or float), not {scale!r} of type {type(scale).__name__}")
    value = float(scale)
    if not math.isfinite(value):
        raise ValueError(f"softjit.{function}: scale must be finite; got {scale!r}")
    if abs(value) >= _ROUNDS_TO_INFINITY:
        raise ValueError(f"softjit.{function}: scale {scale!r} is beyond the float32 range "
                         f"(|scale| <= 3.4028235e38); the kernels multiply x by float32(scale)")
    rounded = np.float32(value)
    return None if rounded == 1 else rounded


# The smallest magnitude float32() rounds to infinity: halfway between FLT_MAX and 2^128.
_ROUNDS_TO_INFINITY = float.fromhex("0x1.ffffffp127")


def exact_products(row: np.ndarray, input_scale) -> np.ndarray:
    """float32(scale) * row in float64: exact (48 significant bits at most), never overflowing."""
    with np.errstate(invalid="ignore"):  # 0 * inf: NaN, as in float32
        return row.astype(np.float64) * float(input_scale)


def _special(products: np.ndarray) -> float | None:
    """logsumexp of products holding a NaN, a +inf, or only -inf (None for any other row)."""
    if np.isnan(products).any():
        return math.nan
    if np.isposinf(products).any():
        return math.inf
    if np.isneginf(products).all():
        return -math.inf
    return None


def logsumexp_row(row: np.ndarray, input_scale) -> float:
    """ln(sum(exp(scale * row))) in float64 (NaN, +inf or -inf for the special rows)."""
    p = exact_products(row, input_scale)
    special = _special(p)
    if special is not None:
        return special
    top = p.max()
    return float(top + np.log(np.exp(p - top).sum()))


def softmax_row(row: np.ndarray, input_scale) -> np.ndarray:
    """softmax(scale * row) in float64 rounded to float32; all NaN for the special rows."""
    p = exact_products(row, input_scale)
    if _special(p) is not None:
        return np.full(row.shape, np.nan, np.float32)
    e = np.exp(p - p.max())
    return (e / e.sum()).astype(np.float32)


def log_softmax_row(row: np.ndarray, input_scale) -> np.ndarray:
    """scale * row - logsumexp(scale * row) in float64 as (p - max) - ln(sum(exp(p - max))),
    rounded to float32 (p - c directly would cancel when p and c are huge and close); all NaN
    for the special rows."""
    p = exact_products(row, input_scale)
    if _special(p) is not None:
        return np.full(row.shape, np.nan, np.float32)
    d = p - p.max()
    with np.errstate(over="ignore"):
        return (d - np.log(np.exp(d).sum())).astype(np.float32)

