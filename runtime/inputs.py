"""What softjit's functions take as x: the one dtype rule of softmax, log_softmax, logsumexp and
exp (torch tensors are turned into arrays first, by runtime/tensors.py).

- float32 arrays are computed as they are;
- float16 and bfloat16 (ml_dtypes) arrays are taken as they are where a function's kernels read
  them (`halves=True`: softmax, log_softmax, logsumexp): the kernels widen them to float32 in
  registers and round the results back (runtime/elements.py);
- lists and tuples carry no dtype of their own: their numbers become float32 (as
  torch.tensor([...]) makes float32), whatever numpy would have made of them;
- any other dtype (float64 above all) is refused with a TypeError naming dtype=numpy.float32,
  which converts it to float32 first: numpy's ufunc convention, dtype= names the dtype the
  computation runs in, so the result is float32;
- masked arrays are refused (the kernels would read the masked-out values as data).
"""
from __future__ import annotations

import sys

import numpy as np

from softjit.runtime.elements import element_of

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)


def requested_dtype(dtype, function: str, allowed: tuple = (FLOAT32,)) -> np.dtype:
    """dtype= as a numpy dtype, one of `allowed` (numpy dtypes and torch.float32 and friends are
    accepted); anything else raises a TypeError listing what is."""
    names = " or ".join(f"numpy.{d.name}" for d in allowed)
    try:
        wanted = np.dtype(_numpy_name(dtype))
    except TypeError:
        raise TypeError(f"softjit.{function}: dtype={dtype!r} is not a dtype; pass {names} or "
                        f"leave dtype out") from None
    if wanted not in allowed:
        raise TypeError(f"softjit.{function}: dtype={dtype!r} is not supported; softjit computes "
                        f"in float32: pass {names} or leave dtype out")
    return wanted


def _numpy_name(dtype):
    """torch.float32 -> "float32" (torch dtypes are not numpy dtypes); anything else as it is."""
    if type(dtype).__module__ == "torch" and str(dtype).startswith("torch."):
        return str(dtype).removeprefix("torch.")
    return dtype


def compute_input(x, dtype, function: str, *, halves: bool = False) -> np.ndarray:
    """x as an array to compute on (halves: a float16 / bfloat16 array as it is).

    dtype: None or float32 (checked by the caller with requested_dtype): with float32, whatever
    numpy can convert becomes float32."""
    masked = sys.modules.get("numpy.ma")  # (not imported: then x cannot be a masked array, and
    if masked is not None and isinstance(x, masked.MaskedArray):  # importing it costs 20 ms)
        raise TypeError(
            f"softjit.{function} does not take masked arrays (the mask would be ignored); pass "
            f"x.filled(-numpy.inf) for softmax (masked entries get probability 0) or x.filled(v)")
    if dtype is not None or isinstance(x, (list, tuple)):
        return _converted(x, function)
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype == FLOAT32:
        return x
    if halves and element_of(x.dtype) is not None:
        return x  # read and written by the kernels in their own dtype
    raise TypeError(
        f"softjit.{function} computes in float32 and got dtype {x.dtype}; pass "
        f"dtype=numpy.float32 to compute in float32 (a float32 result), or convert with "
        f"x.astype(numpy.float32)")


def _converted(x, function: str) -> np.ndarray:
    """x as float32: a list's numbers whatever they are, an array's values by numpy's same_kind
    casting (as a ufunc's dtype= converts: floats and integers, not complex numbers or strings)."""
    try:
        if isinstance(x, (list, tuple)):
            return np.asarray(x, dtype=np.float32)
        return np.asarray(x).astype(np.float32, casting="same_kind", copy=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"softjit.{function}: x cannot be converted to float32 ({error})") from None


def as_float32_array(x, function: str, dtype=None) -> np.ndarray:
    """x as a float32 array by the rule above, for functions that take no half dtypes."""
    if dtype is not None:
        requested_dtype(dtype, function)
    return compute_input(x, dtype, function)
