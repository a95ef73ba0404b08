"""The element formats of kernels' x and y buffers (float32, float16, bfloat16): what the
generators and the runtime's dtype checks share, apart from the rest of the ABI (codegen/abi.py
re-exports them), so that the runtime checks a dtype without importing the generator's ABI."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ElementFormat:
    """How the elements of a kernel's x and y buffers are stored. Kernels compute in float32
    whatever the format: a 16-bit element is widened as it is loaded and rounded to nearest
    even as it is stored (codegen/kernels/elements.py)."""

    name: str  # the prefix of the variant and symbol names: f32_softmax_..., bf16_softmax_...
    size: int  # bytes per element
    ctype: str  # the element's C type in kernels.h (16-bit formats: their bits, uint16_t)
    dtype_name: str  # the numpy dtype's name (bfloat16: ml_dtypes' dtype)


F32 = ElementFormat("f32", 4, "float", "float32")
F16 = ElementFormat("f16", 2, "uint16_t", "float16")
BF16 = ElementFormat("bf16", 2, "uint16_t", "bfloat16")
#: Every element format, by name.
ELEMENT_FORMATS = {e.name: e for e in (F32, F16, BF16)}


def element_format(name: str) -> ElementFormat:
    try:
        return ELEMENT_FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown element format {name!r}; valid: "
                         f"{', '.join(ELEMENT_FORMATS)}") from None
