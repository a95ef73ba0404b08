"""The names of the softmax and log_softmax algorithms, and which element formats each has
modules for: what the variants (codegen/kernel_variants.py re-exports these) and the runtime's
argument checks share, without the variant classes."""
from __future__ import annotations

from softjit.codegen.element_formats import F32

ALGORITHMS = ("two-pass", "three-pass-reload", "three-pass-recompute")
LOG_SOFTMAX_ALGORITHMS = ("two-pass", "three-pass")
# three-pass-reload stores exp(x - m) into y and scales it in place: with 16-bit y the values
# would be rounded twice (to 16 bits, then the product again), so it has no 16-bit modules.
RELOAD = "three-pass-reload"


def algorithms_for(element: str) -> tuple:
    """The softmax algorithms with modules for x and y of element format `element`."""
    return ALGORITHMS if element == F32.name else tuple(a for a in ALGORITHMS if a != RELOAD)
