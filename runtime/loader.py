"""Load a kernel module as a cffi library (ABI mode: no C compiler, just dlopen).

Each (name, assembly, declarations) is loaded once per process; concurrent first calls from many
threads wait for one load and share its result.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cffi

from softjit.runtime.cache import verified_object
from softjit.runtime.cpu import check_platform
from softjit.runtime.files import sha256_text

_load_lock = threading.Lock()
_loaded: dict[tuple[str, str, str], tuple[cffi.FFI, Any]] = {}


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
        loaded = _loaded.get(key)
        if loaded is None:
            import cffi  # here, not at import: only the general path declares functions to cffi

            ffi = cffi.FFI()
            ffi.cdef(cdef)
            loaded = (ffi, _dlopen(ffi, name, asm_text))
            _loaded[key] = loaded
        return loaded


def _dlopen(ffi: cffi.FFI, name: str, asm_text: str) -> Any:
    # The path names the descriptor of the object the cache verified, so dlopen maps exactly
    # that inode, whatever happens to the cache directory meanwhile (a clear, a rebuild).
    with verified_object(name, asm_text) as path:
        return ffi.dlopen(path)
