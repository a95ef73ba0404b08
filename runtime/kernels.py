"""Registered variants as callable native functions: generate, build or find, load (once each)."""
from __future__ import annotations

import functools

from softjit.codegen import variants
from softjit.codegen.pipeline import render_module
from softjit.runtime.loader import load_library


@functools.lru_cache(maxsize=None)
def module(variant):
    """The built Module of a variant (generation is deterministic, so memoising is exact)."""
    return variant.build()


@functools.lru_cache(maxsize=None)
def assembly(variant) -> str:
    return render_module(module(variant))


@functools.lru_cache(maxsize=None)
def library(variant):
    """The cffi library of a variant's module; its functions take addresses as ints."""
    _, lib = load_library(variant.name, assembly(variant), module(variant).cffi_cdef())
    return lib


def function(variant, symbol: str | None = None):
    return getattr(library(variant), symbol or variant.name)


@functools.lru_cache(maxsize=None)
def default_function(op: str, isa: str):
    """The native function of the default variant of op on isa (loaded on first use)."""
    return function(variants.REGISTRY.for_op(op, isa))


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
