"""Loaded native functions: registered variants as cffi functions, and the row driver and pass
kernels of a softmax algorithm as Python callables on numpy arrays.

Generate (codegen/pipeline.py), find or build the shared object (cache.py), declare it to cffi
from the variant's own signatures (abi.Signature.cffi_declaration: pointers as void*) and open
it (ABI mode: no C compiler, just dlopen). Each library is loaded once per process; concurrent
first calls from many threads wait for one load and share its result. The memos live in
memo.py. cffi and the code generator are imported at first use, not with softjit: the generated
entries (runtime/entries.py, runtime/native.py) serve the common calls without them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from softjit.codegen import variants
from softjit.codegen.abi import (PASS_STATE, ROW_MARKED, ROW_STRIDES_CTYPE, ROW_STRIDES_INPUT_SCALE,
                                 ROW_STRIDES_SCALED_WORDS, STATUS_CTYPE)
from softjit.runtime import memo
from softjit.runtime.cache import verified_object
from softjit.runtime.cpu import check_platform
from softjit.runtime.files import sha256_text
from softjit.runtime.forksafe import ForkSafeLock

if TYPE_CHECKING:
    import cffi

# numpy types of the driver's row_strides pair and status words, and of one pass state
ROW_STRIDES_DTYPE = np.dtype(ROW_STRIDES_CTYPE.removesuffix("_t"))
STATUS_DTYPE = np.dtype(STATUS_CTYPE.removesuffix("_t"))
PASS_STATE_DTYPE = PASS_STATE.numpy_dtype()


# ---------------------------------------------------------------------------- modules, libraries
def module(variant):
    """The built Module of a variant (generation is deterministic, so memoising is exact)."""
    found = memo.BUILT_MODULES.get(variant)
    if found is None:
        found = memo.BUILT_MODULES.setdefault(variant, variant.build())
    return found


def assembly(variant) -> str:
    found = memo.ASSEMBLY.get(variant)
    if found is None:
        from softjit.codegen.pipeline import render_module  # (jinja2: at first use)

        found = memo.ASSEMBLY.setdefault(variant, render_module(module(variant)))
    return found


_load_lock = ForkSafeLock()



def load_library(name: str, asm_text: str, cdef: str) -> tuple[cffi.FFI, Any]:
    """(ffi, lib) for the module `name` built from `asm_text`, declared to cffi by `cdef`.

    The declarations are part of the memo key, so two different views of one object never
    share an FFI instance.
    """
    check_platform()
    key = (name, sha256_text(asm_text), sha256_text(cdef))
    # One lock for all modules: a first load costs milliseconds and happens once per process,
    # so serialising loads is cheaper to reason about than a lock per key.
    with _load_lock:
        loaded = memo.LIBRARIES.get(key)
        if loaded is None:
            import cffi  # here, not at import: only the general path declares functions to cffi

            ffi = cffi.FFI()
            ffi.cdef(cdef)
            loaded = (ffi, _open_shared_object(ffi, name, asm_text))
            memo.LIBRARIES[key] = loaded
        return loaded


def _open_shared_object(ffi: cffi.FFI, name: str, asm_text: str) -> Any:
    """The verified shared object of `asm_text` from the cache (built there if need be), opened.

    The path names the descriptor of the object the cache verified, so dlopen maps exactly
    that inode, whatever happens to the cache directory meanwhile (a clear, a rebuild)."""
    with verified_object(name, asm_text) as path:
        return ffi.dlopen(path)


def library(variant):
    """The cffi library of a variant's module."""
    return load_library(variant.name, assembly(variant), module(variant).cffi_cdef())[1]


def function(variant, symbol: str | None = None):
    """A native function of a variant's module (its main symbol by default)."""
    return getattr(library(variant), symbol or variant.name)


def default_function(op: str, isa: str):
    """The native function of the default variant of op on isa (loaded on first use)."""
    return function(variants.REGISTRY.for_op(op, isa))


# ---------------------------------------------------------------------------- numpy -> void*
_ffi = None  # the FFI that turns arrays into void* arguments, made at first use


def _pointer_ffi():
    global _ffi
    if _ffi is None:
        import cffi

        _ffi = cffi.FFI()
    return _ffi


def contiguous_pointer(array):
    """ffi.from_buffer(array): the fastest array -> void* for arrays known to be C-contiguous."""
    return _pointer_ffi().from_buffer(array)


def pointer(array):
    """numpy array -> void* argument: its first element's address. ffi.from_buffer is the fast
    way, but only for C-contiguous arrays; a view whose rows lie a stride apart (x[::2],
    x[:, :k], x[::-1]) is passed by its data address instead."""
    ffi = _pointer_ffi()
    if array.flags.c_contiguous:
        return ffi.from_buffer(array)
    return ffi.cast("void*", array.ctypes.data)


_STRIDES_KEPT = 64  # row lengths whose stride pairs are kept ready


def row_strides(row_bytes: int, input_scale=None):
    """A ready row_strides argument (x and y rows both `row_bytes` apart; for a scaled driver,
    the input scale after them), shared by all threads (the driver only reads it)."""
    key = row_bytes if input_scale is None else (row_bytes, int(input_scale.view(np.uint32)))
    found = memo.ROW_STRIDES.get(key)
    if found is None:
        if len(memo.ROW_STRIDES) >= _STRIDES_KEPT:
            memo.ROW_STRIDES.clear()  # bounded: a process calling with many row lengths
        array = strides_argument(row_bytes, row_bytes, input_scale)
        found = memo.ROW_STRIDES.setdefault(key, (array, contiguous_pointer(array)))
    return found[1]


def strides_argument(x_stride: int, y_stride: int, input_scale=None) -> np.ndarray:
    """A driver's row_strides array: the (x, y) row strides in bytes and, for a scaled driver
    (input_scale a numpy.float32), the scale after them (abi.ROW_STRIDES_INPUT_SCALE)."""
    if input_scale is None:
        return np.array([x_stride, y_stride], ROW_STRIDES_DTYPE)
    words = np.zeros(ROW_STRIDES_SCALED_WORDS, ROW_STRIDES_DTYPE)
    words[0], words[1] = x_stride, y_stride
    words.view(np.float32)[ROW_STRIDES_INPUT_SCALE // 4] = input_scale
    return words


# One status word all single-row calls share: written by every such call and never read (for
# one row the driver's return value, 0 or 1, says all there is to know). Batches get a status
# array of their own. Building these per call would cost more than a 1000-element kernel.
_status_word = np.zeros(1, STATUS_DTYPE)
#: What a single row's status is when the driver marked it.
SINGLE_ROW_MARKED = np.full(1, ROW_MARKED, STATUS_DTYPE)


# ---------------------------------------------------------------------------- softmax
def _check_features(variant) -> None:
    """Refuse a module that uses a CPU feature this host lacks (beyond its ISA's own)."""
    from softjit.runtime.elements import check_host_features

    check_host_features(module(variant).features, variant.name)


class RowDriver:
    """A loaded softmax row driver (abi.DRIVER_PARAMS): call(x2d, y2d, status, strides) ->
    number of rows marked for recomputation."""

    def __init__(self, variant):
        _check_features(variant)
        self.variant = variant
        self.function = function(variant, variant.driver_symbol)
        self.element_size = variant.format.size

    def __call__(self, x2d: np.ndarray, y2d: np.ndarray, status: np.ndarray,
                 strides: np.ndarray) -> int:
        p = pointer
        return self.function(p(x2d), p(y2d), x2d.shape[1], x2d.shape[0], p(strides), p(status))

    def contiguous(self, x: np.ndarray, y: np.ndarray, rows: int, n: int, input_scale=None):
        """Rows packed back to back in x and y (C-contiguous): (marked rows, status array).
        input_scale: a scaled driver's scale (a numpy.float32)."""
        b = contiguous_pointer
        strides = row_strides(self.element_size * n, input_scale)
        if rows == 1:
            marked = self.function(b(x), b(y), n, 1, strides, b(_status_word))
            return marked, SINGLE_ROW_MARKED
        status = np.empty(rows, STATUS_DTYPE)
        return self.function(b(x), b(y), n, rows, strides, b(status)), status


class Passes:
    """The pass kernels of one softmax algorithm (abi.PASS_PARAMS), callable on pieces of a
    row: run(index, x, y, state) with state a PASS_STATE_DTYPE array of one element."""

    def __init__(self, variant):
        _check_features(variant)
        self.variant = variant
        self.functions = [function(variant, p.symbol) for p in variant.passes]
        # pointer arithmetic in elements of x and y (their C type)
        self.element_pointer = f"{variant.format.ctype} *"

    def run(self, index: int, x: np.ndarray, y: np.ndarray, state: np.ndarray) -> int:
        p = pointer
        return self.functions[index](p(x), p(y), x.shape[0], p(state))

    def run_pieces(self, index: int, x: np.ndarray, y: np.ndarray, states: np.ndarray,
                   bounds: list) -> list:
        """run(index, x[a:b], y[a:b], states[i:i+1]) for the i-th (a, b) of bounds, x and y
        1-D with unit stride; the return codes. The pointers are computed once and offset per
        piece (a numpy slice and its buffer per piece would cost more than a 100K-element
        piece's kernel call)."""
        function = self.functions[index]
        cast = _pointer_ffi().cast
        x_buffer, y_buffer, state_buffer = pointer(x), pointer(y), pointer(states)
        x_floats = cast(self.element_pointer, x_buffer)
        y_floats = cast(self.element_pointer, y_buffer)
        state_bytes = cast("char *", state_buffer)
        size = states.itemsize
        return [function(x_floats + a, y_floats + a, b - a, state_bytes + i * size)
                for i, (a, b) in enumerate(bounds)]


def driver(algorithm: str, isa: str, nontemporal: bool = False,
           element: str = "f32", scaled: bool = False) -> RowDriver:
    """The row driver of an algorithm for x and y of element format `element`; nontemporal asks
    for the variant with non-temporal output stores and gets the plain one where none is
    registered; scaled, the one of scale * x (its row_strides from strides_argument with the
    scale)."""
    key = (algorithm, isa, nontemporal) if element == "f32" else \
        (algorithm, isa, nontemporal, element)
    if scaled:
        key += ("scaled",)
    found = memo.DRIVERS.get(key)
    if found is None:
        variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal, element,
                                                     scaled)
        found = memo.DRIVERS.setdefault(key, RowDriver(variant))
    return found


def passes(algorithm: str, isa: str, nontemporal: bool = False, element: str = "f32",
           scaled: bool = False) -> Passes:
    """The pass kernels of an algorithm (non-temporal stores, elements and scaled as for
    driver(); the scaled passes read the scale from the state's "input_scale")."""
    key = (algorithm, isa, nontemporal) if element == "f32" else \
        (algorithm, isa, nontemporal, element)
    if scaled:
        key += ("scaled",)
    found = memo.PASSES.get(key)
    if found is None:
        variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal, element,
                                                     scaled)
        found = memo.PASSES.setdefault(key, Passes(variant))
    return found
