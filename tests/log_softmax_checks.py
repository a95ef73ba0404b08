"""The float64 references of log_softmax and logsumexp and the checks against them (shared by
tests/api and tests/emulator)."""
from __future__ import annotations

import numpy as np

LOG_SOFTMAX_TOLERANCE = 2e-6  # absolute, times max(1, |y|)
LOGSUMEXP_TOLERANCE = 1e-6  # absolute, times max(1, |c|)


def reference_logsumexp(x: np.ndarray, axis=-1, keepdims: bool = False) -> np.ndarray:
    """ln(sum(exp(x))) in float64 on the float32 inputs: NaN rows NaN, +inf rows +inf, rows of
    only -inf (or empty) -inf."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(m), m, 0.0)
        c = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    return c if keepdims else np.squeeze(c, axis=axis)


def reference_log_softmax(x: np.ndarray, axis=-1) -> np.ndarray:
    """(x - m) - ln(sum(exp(x - m))) in float64 (x - c would lose ln(sum) next to m ~ FLT_MAX);
    rows whose logsumexp is not finite are NaN throughout."""
    x = np.asarray(x, np.float64)
    c = reference_logsumexp(x, axis, keepdims=True)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(m), m, 0.0)
        y = (x - shift) - np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True))
    return np.where(np.isfinite(c), y, np.nan)


def close(got: np.ndarray, want: np.ndarray, tolerance: float) -> np.ndarray:
    """Where got is within tolerance * max(1, |want|) of want (want rounded to float32 first, so
    that a result past the float32 range must be the infinity it rounds to); NaN and infinities
    must match exactly."""
    with np.errstate(over="ignore"):
        want32 = np.asarray(want).astype(np.float32).astype(np.float64)
    got = np.asarray(got, np.float64)
    with np.errstate(all="ignore"):
        error = np.abs(got - np.asarray(want, np.float64))
        ok = error <= tolerance * np.maximum(1.0, np.abs(np.asarray(want, np.float64)))
    special = ~np.isfinite(want32)
    same = (np.isnan(got) & np.isnan(want32)) | (got == want32)
    return np.where(special, same, ok & np.isfinite(got))


def check_log_softmax(y, x, axis=-1) -> None:
    want = reference_log_softmax(x, axis)
    ok = close(y, want, LOG_SOFTMAX_TOLERANCE)
    if not ok.all():
        i = tuple(np.argwhere(~ok)[0])
        raise AssertionError(f"log_softmax at {i}: got {np.asarray(y)[i]!r}, want {want[i]!r} "
                             f"(x there {np.asarray(x)[i]!r}, shape {np.shape(x)}, axis {axis})")


def check_logsumexp(c, x, axis=-1, keepdims=False) -> None:
    want = reference_logsumexp(x, axis, keepdims)
    assert np.shape(c) == np.shape(want), (np.shape(c), np.shape(want))
    ok = close(c, want, LOGSUMEXP_TOLERANCE)
    if not ok.all():
        i = tuple(np.argwhere(~np.atleast_1d(ok))[0])
        raise AssertionError(f"logsumexp at {i}: got {np.atleast_1d(c)[i]!r}, want "
                             f"{np.atleast_1d(want)[i]!r} (shape {np.shape(x)}, axis {axis})")
