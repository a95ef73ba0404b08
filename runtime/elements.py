"""The array dtypes softmax, log_softmax and logsumexp take, and the kernels' element format of
each (codegen/abi.py ElementFormat):

    numpy.float32                     "f32"
    numpy.float16                     "f16"   converted in the kernels' registers
    ml_dtypes.bfloat16                "bf16"  (the optional extra softjit[bfloat16])

The kernels compute in float32 whatever the format and round each 16-bit result to nearest even
from the float32 result, so a float16 / bfloat16 call gives exactly what the float32 kernels
give on the widened input, rounded once. three-pass-reload has no 16-bit kernels (it would round
twice): "auto" picks three-pass-recompute where it would pick three-pass-reload, and rows the
two-pass kernels leave for recomputation go through three-pass-recompute.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.algorithms import RELOAD, algorithms_for
from softjit.codegen.element_formats import ELEMENT_FORMATS, F32, ElementFormat
from softjit.runtime.errors import SoftjitError

_BY_DTYPE_NAME = {e.dtype_name: e for e in ELEMENT_FORMATS.values()}
#: What a 16-bit row's recomputation (and "auto" in place of three-pass-reload) runs.
HALF_THREE_PASS = "three-pass-recompute"


def element_of(dtype: np.dtype) -> ElementFormat | None:
    """The element format of arrays of `dtype` (None: the kernels do not take it). bfloat16 is
    recognised by name: ml_dtypes registers it with numpy, and an array of it implies it is
    installed."""
    return _BY_DTYPE_NAME.get(dtype.name) if dtype.kind in "fV" else None


def element_named(dtype, function: str) -> ElementFormat:
    """The element format of a dtype given by name ("bfloat16") or as a dtype (numpy.float16)."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or getattr(
        dtype, "__name__", repr(dtype))
    found = _BY_DTYPE_NAME.get(name)
    if found is None:
        raise ValueError(f"softjit.{function}: dtype={dtype!r} has no kernels; valid: "
                         f"{accepted_dtypes()}")
    return found


def accepted_dtypes() -> str:
    return ", ".join(e.dtype_name for e in ELEMENT_FORMATS.values())


def check_algorithm(algorithm: str, element: ElementFormat, function: str) -> None:
    """A named algorithm must have kernels for the element format."""
    if algorithm != "auto" and algorithm not in algorithms_for(element.name):
        raise ValueError(
            f"softjit.{function}: algorithm={algorithm!r} has no {element.dtype_name} kernels "
            f"(it writes exp(x - max) into the output and scales it there, which would round "
            f"twice in 16 bits); use one of: auto, {', '.join(algorithms_for(element.name))}")


def algorithm_for(algorithm: str, element: ElementFormat) -> str:
    """The algorithm a 16-bit call runs where the float32 choice was three-pass-reload."""
    if element is not F32 and algorithm == RELOAD:
        return HALF_THREE_PASS
    return algorithm


def recompute_algorithm(element: ElementFormat) -> str:
    """What redoes the rows the two-pass kernels mark: any input, any element format."""
    return RELOAD if element is F32 else HALF_THREE_PASS


def check_host_features(module_features, name: str) -> None:
    """A kernel module may use a feature beyond its ISA's required ones (F16C for float16 on
    AVX2: codegen/isa.py Target.extensions): refuse it, saying so, on a host without it."""
    from softjit.runtime import cpu

    missing = set(module_features) - cpu.host_features()
    if missing:
        raise SoftjitError(
            f"the kernel {name} needs CPU features this host lacks: {', '.join(sorted(missing))}"
            f" (float16 on AVX2 needs F16C); convert the input with x.astype(numpy.float32)")
