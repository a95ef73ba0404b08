"""softjit: generated x86-64 AVX2 / AVX-512 kernels for float32 softmax and exp.

    import numpy as np, softjit
    y = softjit.exp(np.linspace(-5, 5, 11, dtype=np.float32))
"""
import importlib.util as _importlib_util

# The repository keeps the card's top-level folders (codegen/, runtime/, templates/, ...); only an
# install (package-dir in pyproject.toml) maps them into softjit.*. A checkout that is not
# installed finds this package but none of its subpackages: say what to do instead of failing
# with "No module named 'softjit.runtime'".
if _importlib_util.find_spec("softjit.runtime") is None:
    raise ImportError(
        "softjit is not installed: this is a source checkout whose folders (codegen/, runtime/, "
        "...) become softjit.* only when installed; run `python -m pip install -e .` in the "
        "repository root, then import softjit again")

from softjit._version import __version__
from softjit.runtime.api import assembly, exp, host_isas, softmax
from softjit.runtime.log_softmax import log_softmax, logsumexp
from softjit.runtime.errors import (AssemblerError, SoftjitError, SoftjitWarning,
                                    ToolchainMissingError, UnsafeCacheError, UnsupportedISAError,
                                    UnsupportedPlatformError)

# softjit.jit and its names load the code generator and the pipeline: at first use (PEP 562),
# so that `import softjit` stays small (tests/test_import_cost.py).
_JIT_NAMES = frozenset({"In", "InOut", "JitKernel", "Out", "Size", "jit", "specialize"})


def __getattr__(name: str):
    if name in _JIT_NAMES:
        from softjit.runtime import jit as jit_module

        value = getattr(jit_module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'softjit' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | _JIT_NAMES)


__all__ = ["softmax", "log_softmax", "logsumexp", "exp", "assembly", "host_isas", "jit", "In",
           "Out", "InOut", "Size", "specialize", "JitKernel", "SoftjitError", "SoftjitWarning",
           "UnsupportedISAError",
           "UnsupportedPlatformError", "ToolchainMissingError", "AssemblerError", "UnsafeCacheError"]
