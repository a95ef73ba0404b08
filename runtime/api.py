"""The public functions: softjit.exp, softjit.host_isas (softmax arrives with its kernels)."""
from __future__ import annotations

import numpy as np

import os

from softjit.runtime import cpu, kernels
from softjit.runtime.arrays import as_float32_array, check_out, writes_directly

_resolved: dict = {}
# os.environ.get costs ~1 us a call (it encodes the key); the dict behind it is read directly
# when this CPython has it, so the per-call cost of honouring SOFTJIT_ISA stays ~0.1 us.
_environ_data = getattr(os.environ, "_data", None)
if _environ_data is not None:
    _ISA_KEY, _environ_get = os.environ.encodekey(cpu.ISA_ENV_VARIABLE), _environ_data.get
else:
    _ISA_KEY, _environ_get = cpu.ISA_ENV_VARIABLE, os.environ.get


def _isa_setting():
    return _environ_get(_ISA_KEY)


def resolve_isa(isa: str) -> str:
    """cpu.resolve_isa, memoised per (isa, SOFTJIT_ISA): it reads /proc once, not per call."""
    key = (isa, _isa_setting())
    found = _resolved.get(key)
    if found is None:
        found = _resolved[key] = cpu.resolve_isa(isa)
    return found


def host_isas() -> tuple:
    """The ISAs this host runs, best first (SOFTJIT_ISA caps it)."""
    return cpu.host_isas()


_NDARRAY = np.ndarray
_FLOAT32 = np.dtype(np.float32)
_empty = np.empty
_entries: dict = {}  # (isa argument, SOFTJIT_ISA) -> the exp entry, for validated arguments


def exp(x, *, isa: str = "auto", out=None) -> np.ndarray:
    """y = exp(x) elementwise on float32 arrays of any shape, with the kernel for `isa`.

    Within 2 ULP of the correctly rounded result wherever that is a normal float; subnormal
    results rounded once; exp(-inf) = 0, exp(+inf) = +inf, NaN stays NaN.
    """
    # First path: the generated entry (registered once the general path validated this isa);
    # whatever it refuses goes to the general path, which raises what a bad argument deserves.
    try:
        entry = _entries.get((isa, _environ_get(_ISA_KEY)))
    except TypeError:  # an unhashable isa
        entry = None
    if entry is not None:
        if out is not None:
            if entry(x, out) is not NotImplemented:
                return out
        elif x.__class__ is _NDARRAY:
            y = _empty(x.shape, _FLOAT32)
            if entry(x, y) is not NotImplemented:
                return y
    return _exp_general(x, isa, out)


def _exp_general(x, isa, out) -> np.ndarray:
    isa_argument = isa
    x = as_float32_array(x, "exp")
    isa = resolve_isa(isa)
    from softjit.runtime import entry_tables

    entry = entry_tables.exp_entry(isa)
    if entry is not None and isinstance(isa_argument, str):
        _entries[(isa_argument, _isa_setting())] = entry
    out = np.empty(x.shape, np.float32) if out is None else check_out(out, x.shape, "exp")
    if x.size == 0:
        return out
    if entry is not None and entry(x, out) is not NotImplemented:
        return out  # a call the first path did not take (the first of its kind, a list)
    src = np.ascontiguousarray(x)
    dst = out if writes_directly(out, src) else np.empty(x.shape, np.float32)
    run = kernels.default_function("vexp", isa)
    buffer = kernels.buffer_function()
    run(buffer(src), buffer(dst), src.size)
    if dst is not out:
        np.copyto(out, dst)
    return out
