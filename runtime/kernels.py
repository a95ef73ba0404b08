"""Registered variants as callable native functions: generate, build or find, load (once each)."""
from __future__ import annotations

import functools
import re

from ..codegen import variants
from ..codegen.emit import render_module
from .loader import load_library


@functools.lru_cache(maxsize=None)
def module(variant):
    """The built Module of a variant (generation is deterministic, so memoising is exact)."""
    return variant.build()


@functools.lru_cache(maxsize=None)
def assembly(variant) -> str:
    return render_module(module(variant))


def fast_cdef(cdef: str) -> str:
    """The declarations with every pointer parameter as void*.

    Callers pass ffi.from_buffer(array), the cheapest way from a numpy array to a pointer
    (about 0.3 us, where reading the address through __array_interface__ takes 1.5 us); cffi
    accepts that buffer for void* parameters only. The C header keeps the real types.
    """
    return re.sub(r"\b(const\s+)?\w+\s*\*\s*(\w+)(?=[,)])", r"void* \2", cdef)


@functools.lru_cache(maxsize=None)
def library(variant):
    """The cffi library of a variant's module; its functions take addresses as ints."""
    _, lib = load_library(variant.name, assembly(variant), fast_cdef(module(variant).cdef()))
    return lib


def function(variant, symbol: str | None = None):
    return getattr(library(variant), symbol or variant.name)


@functools.lru_cache(maxsize=None)
def default_function(op: str, isa: str):
    """The native function of the default variant of op on isa (loaded on first use)."""
    return function(variants.default(op, isa))


@functools.lru_cache(maxsize=None)
def contiguous_buffer_function():
    """ffi.from_buffer itself: the fastest array -> void* for arrays known C-contiguous."""
    import cffi

    return cffi.FFI().from_buffer


@functools.lru_cache(maxsize=None)
def buffer_function():
    """numpy array -> void* argument: its first element's address.

    ffi.from_buffer is the fast way, but only for C-contiguous arrays; a view whose rows lie
    a stride apart (x[::2], x[:, :k], x[::-1]) is passed by its data address instead.
    """
    import cffi

    ffi = cffi.FFI()
    from_buffer, cast = ffi.from_buffer, ffi.cast

    def pointer(array):
        if array.flags.c_contiguous:
            return from_buffer(array)
        return cast("void*", array.ctypes.data)

    return pointer
