"""What softjit.softmax must return, and how close is close enough (shared by the softmax tests).

The reference is softmax computed in float64 on the float32 inputs (what scipy.special.softmax
gives on x.astype(numpy.float64)). A result passes when

- every row holding a NaN or +inf, or only -inf entries, is all NaN, and no other output is NaN
  or infinite (finite inputs never overflow, whatever their magnitude);
- every -inf input gives exactly +0.0;
- where the reference is a normal float32 (>= FLT_MIN), the relative error is <= 1e-5;
- below FLT_MIN the absolute error is <= FLT_MIN. The AVX2 kernels build 2^n in the exponent
  field and flush results below about 2^-126 to zero, where the AVX-512 kernels (VSCALEFPS)
  round subnormal results; both are within FLT_MIN of the reference there.
"""
from __future__ import annotations

import numpy as np
import pytest

FLT_MIN = float(np.finfo(np.float32).tiny)  # 1.1754944e-38, the smallest normal float32
FLT_MAX = float(np.finfo(np.float32).max)
RTOL = 1e-5

#: the largest relative error seen so far, per (algorithm, isa) label, for the test reports
MAX_ERRORS: dict = {}


def reference(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """softmax in float64 on the float32 values of x (NaN rows as numpy gives them)."""
    x64 = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        m = np.max(x64, axis=axis, keepdims=True) if x64.shape[axis] else x64
        e = np.exp(x64 - m)
        return e / np.sum(e, axis=axis, keepdims=True)


def record(label, error: float) -> None:
    if label is not None:
        MAX_ERRORS[label] = max(MAX_ERRORS.get(label, 0.0), error)


def _describe(x, y, ref, axis, index, why) -> str:
    """The failing row, small enough to paste into a bug report."""
    xm, ym, rm = (np.moveaxis(a, axis, -1) for a in (x, y, ref))
    idx = tuple(np.delete(np.array(index), axis % x.ndim)) if x.ndim > 1 else ()
    row = xm[idx] if idx else xm
    position = index[axis % x.ndim]
    text = np.array2string(row if row.size <= 64 else row[max(0, position - 8):position + 8],
                           precision=9, threshold=64)
    return (f"{why} at {tuple(int(i) for i in index)} (axis {axis}, row length {x.shape[axis]}): "
            f"x = {float(x[index])!r}, got {float(y[index])!r}, reference {float(ref[index])!r};"
            f" row {tuple(int(i) for i in idx)} (around the element if long) = {text}")


def check_softmax(y: np.ndarray, x: np.ndarray, axis: int = -1, label=None,
                  ref: np.ndarray | None = None) -> float:
    """Assert y is an acceptable softmax of x along axis; return the largest relative error
    (over outputs whose reference is >= FLT_MIN)."""
    assert y.dtype == np.float32, y.dtype
    assert y.shape == x.shape, (y.shape, x.shape)
    if x.size == 0:
        return 0.0
    if ref is None:
        ref = reference(x, axis)
    nan_ref = np.isnan(ref)
    bad = np.isnan(y) != nan_ref
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise AssertionError(_describe(x, y, ref, axis, i, "NaN where the reference has none"
                                       if np.isnan(y[i]) else "a number in a row that must be NaN"))
    live = ~nan_ref
    bad = live & ~np.isfinite(y)
    if bad.any():
        raise AssertionError(_describe(x, y, ref, axis, tuple(np.argwhere(bad)[0]), "infinite output"))
    bad = live & (x == -np.inf) & ((y != 0) | np.signbit(y))
    if bad.any():
        raise AssertionError(_describe(x, y, ref, axis, tuple(np.argwhere(bad)[0]),
                                       "-inf input must give exactly +0.0"))
    bad = live & (y < 0)
    if bad.any():
        raise AssertionError(_describe(x, y, ref, axis, tuple(np.argwhere(bad)[0]), "negative output"))
    y64 = y.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(y64 - ref)
        normal = live & (ref >= FLT_MIN)
        relative = np.where(normal, error / np.where(normal, ref, 1.0), 0.0)
    worst = float(relative.max()) if normal.any() else 0.0
    if worst > RTOL:
        i = np.unravel_index(int(np.argmax(relative)), x.shape)
        raise AssertionError(_describe(x, y, ref, axis, i, f"relative error {worst:.3g} > {RTOL}"))
    tiny = live & ~normal & (error > FLT_MIN)
    if tiny.any():
        i = tuple(np.argwhere(tiny)[0])
        raise AssertionError(_describe(x, y, ref, axis, i,
                                       f"absolute error {float(error[i]):.3g} > FLT_MIN below FLT_MIN"))
    record(label, worst)
    return worst


def needs_three_pass(row: np.ndarray) -> bool:
    """A row the two-pass kernels must hand back (status 1): NaN, +inf, only -inf, or a maximum
    beyond the two-pass clamp (constants.TWO_PASS_X_LIMIT = 2^20, less a margin). Callers only
    use rows whose maximum is clearly inside (<= 1.03e6) or outside (>= 2e6) the clamp; the
    exact edge (about 2^20 - 1.4) is the kernels' business, not the contract."""
    row = np.asarray(row, np.float32)
    if row.size == 0:
        return False
    if np.isnan(row).any() or (row == np.inf).any() or (row == -np.inf).all():
        return True
    top = float(np.max(row))
    assert abs(top) <= 1.03e6 or abs(top) >= 2e6, f"row maximum {top} is too near the clamp to judge"
    return abs(top) >= 2e6


# ------------------------------------------------------------------------------- value makers
def uniform(rng, shape, scale):
    return rng.uniform(-scale, scale, shape).astype(np.float32)


def log_uniform(rng, shape, low=-45.0, high=38.5):
    """Magnitudes 10^U(low, high) with random signs (zeros and subnormals included at the low
    end), clipped to the finite float32 range."""
    mag = 10.0 ** rng.uniform(low, high, shape)
    sign = rng.choice([-1.0, 1.0], shape)
    return np.clip(sign * mag, -FLT_MAX, FLT_MAX).astype(np.float32)


def with_minus_inf(rng, x, fraction=None):
    """x with a random 0-90% (or `fraction`) of entries set to -inf (attention masks)."""
    x = x.copy()
    if x.size == 0:
        return x
    p = rng.uniform(0.0, 0.9) if fraction is None else fraction
    x[rng.random(x.shape) < p] = -np.inf
    return x


DISTRIBUTIONS = {
    "u1e-3": lambda rng, shape: uniform(rng, shape, 1e-3),
    "u1": lambda rng, shape: uniform(rng, shape, 1.0),
    "u100": lambda rng, shape: uniform(rng, shape, 100.0),
    "u1e4": lambda rng, shape: uniform(rng, shape, 1e4),
    "u1e6": lambda rng, shape: uniform(rng, shape, 1e6),
    "u1e20": lambda rng, shape: uniform(rng, shape, 1e20),
    "u1e38": lambda rng, shape: uniform(rng, shape, 1e38),
    "loguniform": lambda rng, shape: log_uniform(rng, shape),
    "loguniform_small": lambda rng, shape: log_uniform(rng, shape, -3.0, 2.5),
    "normal": lambda rng, shape: rng.standard_normal(shape).astype(np.float32),
    "neg_inf_mask": lambda rng, shape: with_minus_inf(rng, uniform(rng, shape, 30.0)),
    "neg_inf_mask_wide": lambda rng, shape: with_minus_inf(rng, log_uniform(rng, shape)),
}


def half_dtype(name: str) -> np.dtype:
    """The numpy dtype of a 16-bit format named "float16"/"f16" or "bfloat16"/"bf16"; a test
    of bfloat16 skips, saying why, where ml_dtypes is not installed."""
    if name in ("float16", "f16"):
        return np.dtype(np.float16)
    if name not in ("bfloat16", "bf16"):
        raise ValueError(f"half_dtype: not a 16-bit format: {name!r}")
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="bfloat16 needs ml_dtypes "
                                                        "(pip install softjit[bfloat16])")
    return np.dtype(ml_dtypes.bfloat16)
