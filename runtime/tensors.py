"""torch CPU tensors in softjit's functions: tensor in, tensor out, no copy.

A tensor's memory is handed to the kernels as a numpy array viewing it (Tensor.numpy(): the
same memory, with the tensor's strides, so a strided view works as a strided numpy array does);
results made by softjit come back as tensors over the result array's memory
(torch.from_numpy), and an `out` tensor is written where it lies. torch is never imported by
softjit itself: a value is a tensor only when the caller's process has imported torch already.

What is refused, with a TypeError naming the problem: a tensor that requires grad (softjit
computes no gradients), one on another device than the CPU, a sparse or otherwise non-strided
one, a dtype softjit does not compute (integers, complex; float64 follows runtime/inputs.py's
rule: dtype=numpy.float32 converts it), an `out` tensor whose elements share memory (an
expanded tensor), and an `out` tensor beside an x that is not one.
"""
from __future__ import annotations

import sys

import numpy as np

# torch dtypes whose tensors are viewed as numpy arrays (bfloat16 through ml_dtypes); the
# numpy rule (runtime/inputs.py) then decides what is computed
_VIEWED_DTYPES = ("float32", "float64", "float16", "bfloat16")


def is_tensor(value) -> bool:
    """A torch tensor (False without importing torch when the process has not imported it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def as_array(t, function: str, what: str = "x") -> np.ndarray:
    """A CPU tensor's memory as a numpy array (no copy)."""
    if t.requires_grad:
        raise TypeError(f"softjit.{function}: {what} is a torch tensor that requires grad; softjit "
                        f"computes no gradients: pass {what}.detach() (or call it under "
                        f"torch.no_grad())")
    if t.device.type != "cpu":
        raise TypeError(f"softjit.{function}: {what} is a torch tensor on {t.device}; softjit "
                        f"runs on the CPU: pass {what}.cpu()")
    import torch

    if t.layout != torch.strided:
        raise TypeError(f"softjit.{function}: {what} is a {t.layout} torch tensor; softjit reads "
                        f"dense tensors: pass {what}.to_dense()")
    name = str(t.dtype).removeprefix("torch.")
    if name not in _VIEWED_DTYPES:
        raise TypeError(f"softjit.{function}: {what} is a torch tensor of dtype {t.dtype}; softjit "
                        f"computes in float32: pass {what}.float()")
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise TypeError(f"softjit.{function}: bfloat16 tensors need ml_dtypes "
                            f"(pip install softjit[bfloat16])") from None
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def as_tensor(a: np.ndarray):
    """The tensor over a result array's memory."""
    import torch

    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def through_tensors(function: str, x, out, call):
    """call(x_array, out_array) on the tensors' memory; the result as a tensor (out itself when
    given: the kernels wrote into its memory)."""
    if not is_tensor(x):
        raise TypeError(f"softjit.{function}: out is a torch tensor but x is not; pass both as "
                        f"tensors or both as arrays")
    xa = as_array(x, function)
    oa = None
    if out is not None:
        if not is_tensor(out):
            raise TypeError(f"softjit.{function}: x is a torch tensor but out is a "
                            f"{type(out).__name__}; pass out as a tensor (or leave it out)")
        oa = as_array(out, function, "out")
        if any(stride == 0 and size > 1 for stride, size in zip(oa.strides, oa.shape)):
            raise ValueError(f"softjit.{function}: out is a torch tensor whose elements share "
                             f"memory (an expanded tensor, strides {tuple(out.stride())}); pass "
                             f"a tensor with one element per place, e.g. torch.empty_like(x)")
    result = call(xa, oa)
    return out if out is not None else as_tensor(np.asarray(result))
