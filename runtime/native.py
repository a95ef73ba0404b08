"""Kernel modules loaded for the addresses of their functions: what the generated entries call.

No declarations are parsed (ctypes opens the verified object; cffi, the interface of the general
path, is not needed for an address), and a module whose assembly hash is remembered
(runtime/asm_index.py) is found in the prebuilt objects or the cache without generating its
assembly: the first call of a process with a warm cache costs a lookup, a hash check and a
dlopen per module. A module not found so is generated, built or fetched, and remembered.
"""
from __future__ import annotations

import ctypes

from softjit.runtime import asm_index, memo
from softjit.runtime.forksafe import ForkSafeLock

_lock = ForkSafeLock()



def load(name: str, build_module, *, generate: bool = False):
    """The loaded module `name` (build_module() -> its codegen Module, called only when the
    assembly must be generated; generate=True: whatever the index says)."""
    found = None if generate else memo.NATIVE_MODULES.get(name)
    if found is None:
        with _lock:
            found = None if generate else memo.NATIVE_MODULES.get(name)
            if found is None:
                found = memo.NATIVE_MODULES[name] = _open(name, build_module, generate)
    return found


def _open(name: str, build_module, generate: bool):

    from softjit.runtime import cache
    from softjit.runtime.cpu import check_platform

    check_platform()
    known = None if generate else asm_index.lookup(name)
    if known is not None:
        with cache.verified_known_object(name, known[0]) as path:
            if path is not None:
                return ctypes.CDLL(path)
    from softjit.codegen.pipeline import render_module
    from softjit.runtime.files import sha256_text

    module = build_module()
    text = render_module(module)
    with cache.verified_object(name, text) as path:
        handle = ctypes.CDLL(path)
    asm_index.remember(name, sha256_text(text), module.cdef())
    return handle


def function_address(variant, symbol: str | None = None) -> int:
    """The address of a function of a registered variant's module (its own symbol by default)."""

    return _address(variant.name, variant.build, symbol or variant.name,
                    lambda handle, symbol: ctypes.cast(getattr(handle, symbol), ctypes.c_void_p))


def data_address(name: str, build_module, symbol: str) -> int:
    """The address of a data symbol of module `name`."""

    return _address(name, build_module, symbol,
                    lambda handle, symbol: ctypes.c_void_p(
                        ctypes.addressof(ctypes.c_char.in_dll(handle, symbol))))


def _address(name, build_module, symbol, find) -> int:
    try:
        return find(load(name, build_module), symbol).value
    except (AttributeError, ValueError):
        # The object the index pointed at lacks the symbol (an index edited by hand): generate
        # the module's assembly and load what it builds to.
        return find(load(name, build_module, generate=True), symbol).value
