"""softjit: generated x86-64 AVX2 / AVX-512 kernels for float32 softmax and exp.

    import numpy as np, softjit
    y = softjit.exp(np.linspace(-5, 5, 11, dtype=np.float32))
"""
from softjit._version import __version__
from .runtime.api import exp, host_isas
from .runtime.softmax import assembly, softmax
from .runtime.errors import (AssemblerError, SoftjitError, SoftjitWarning, ToolchainMissingError,
                             UnsafeCacheError, UnsupportedISAError, UnsupportedPlatformError)

__all__ = ["softmax", "exp", "assembly", "host_isas", "SoftjitError", "SoftjitWarning", "UnsupportedISAError",
           "UnsupportedPlatformError", "ToolchainMissingError", "AssemblerError", "UnsafeCacheError"]
