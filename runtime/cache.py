"""A content-addressed cache of built kernel shared objects, safe across threads and processes and
against other users of the machine.

Where a .so comes from, in order: a prebuilt object for exactly this assembly text (see
prebuilt.py), a verified entry of the user cache, or a fresh build published into the cache.

Threat model. Trusted: this process's user and root. The attacker is any other local user: they
can create, rename and replace whatever lies in directories they may write (world-writable ones
such as /tmp, or a shared folder), at any moment, racing softjit. Out of scope: root and this same
user (they can change the process or softjit itself), and the programs found on PATH (as, ld).
What holds against the attacker: softjit loads no code that another user wrote. Every directory
from / down to the cache entry is verified (owned by us or root, closed to writes by others, or a
sticky directory whose next component is ours; see files.py), walked with directory descriptors
and O_NOFOLLOW so nothing is re-resolved by name, and the .so is opened relative to its verified
entry, checked through that descriptor (regular file, ours, not writable by others, the sha256
recorded in meta.json) and loaded through that same descriptor (/proc/self/fd/N): the inode that
was checked is the one dlopen maps. meta.json may be trusted because it sits in that verified
chain, where only we can write; its sha256 was computed by the process that assembled the object
in a private, verified scratch directory, so it guards against damage (a truncated or flipped
file is rebuilt), while ownership of the chain is what keeps others out. When the chain is not
safe, nothing is loaded from it: UnsafeCacheError says which directory and how to fix it.

An entry is <cache dir>/<key[:2]>/<key>/ holding `kernel-<random>.so` and `meta.json`, where key is
the sha256 of everything that decides the bytes (assembly text, softjit version, entry format).

Building and publishing a missing entry is cache_build.py's job; `softjit cache info` and
`softjit cache clear` are cache_admin.py's.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softjit._version import __version__
from softjit.codegen.lazy import LazyModule
from softjit.runtime.cachedir import (
    CACHE_DIR_REMEDY,
    FORMAT_VERSION,
    META_NAME,
    SO_NAME_PATTERN,
    configured_cache_dir,
    open_cache_root,
    use_fallback,
)
from softjit.runtime.errors import UnsafeCacheError
from softjit.runtime.forksafe import ForkSafeLock
from softjit.runtime.files import (
    OpenDir,
    open_private_subdir,
    open_trusted_dir,
    open_trusted_file,
    read_fd,
    sha256_bytes,
    sha256_fd,
    sha256_text,
)
from softjit.runtime.prebuilt import check_module_name, open_prebuilt

# Building (the assembler, the linker, publishing) is imported when an object must be built, not
# with the cache that finds built ones (`import softjit` opens the built entry module).
cache_build = LazyModule("softjit.runtime.cache_build")

__all__ = [
    "SharedObject",
    "cache_key",
    "get_shared_object",
    "last_shared_object",
    "softjit_version",
    "verified_known_object",
    "verified_object",
]

SOURCE_PREBUILT, SOURCE_CACHE, SOURCE_BUILT = "prebuilt", "cache", "built"

_FD_DIR = Path("/proc/self/fd")


@dataclass(frozen=True)
class SharedObject:
    """A verified shared object and where it came from ("prebuilt", "cache" or "built")."""

    name: str
    path: Path
    source: str
    so_sha256: str


_state_lock = ForkSafeLock()
_records: dict[str, SharedObject] = {}
#: (st_dev, st_ino) -> the descriptor this process loads that object through. glibc recognises
#: an already loaded library by the path string it was opened by, so a descriptor number that
#: was closed and reused would make dlopen("/proc/self/fd/N") return the previous library; these
#: descriptors therefore stay open for the life of the process (one per object loaded).
_held_descriptors: dict[tuple[int, int], int] = {}



def softjit_version() -> str:
    """softjit's version (softjit/_version.py), part of every cache key."""
    return __version__


def cache_key(asm_text: str | None = None, *, asm_sha256: str | None = None) -> str:
    """sha256 over what decides the behaviour of the .so built from `asm_text` (given, or known
    by its sha256 alone: the key depends on the text through its hash, so a module whose hash
    was remembered is found without generating its text again, see asm_index.py).

    The assembler's version is recorded in meta.json but is not part of the key: the assembly
    text fixes every instruction, so two binutils builds give the same machine code up to
    encoding choices, and a host whose binutils were removed keeps its cached kernels."""
    if asm_sha256 is None:
        asm_sha256 = sha256_text(asm_text)
    fields = [FORMAT_VERSION, softjit_version(), asm_sha256]
    return sha256_text(json.dumps(fields, ensure_ascii=False))


@contextlib.contextmanager
def verified_object(name: str, asm_text: str) -> Iterator[str]:
    """A path that loads exactly the verified .so built from `asm_text` (prebuilt, cached, or
    built now): `/proc/self/fd/N`, where N is a descriptor of the object that was checked.

        with verified_object(name, asm_text) as path:
            library = ffi.dlopen(path)

    The descriptor outlives the block (see _held_descriptors), so a later `cache clear` or a
    rebuild under a new name never changes what a path handed out here loads. Raises
    ToolchainMissingError or AssemblerError when a build is needed and fails, and
    UnsafeCacheError when the cache could have been written by someone else.
    """
    if not _FD_DIR.is_dir():
        raise UnsafeCacheError(
            _FD_DIR, "it is missing, so a verified kernel cannot be loaded by its descriptor",
            "mount /proc (softjit loads every kernel through /proc/self/fd)")
    descriptor, found = _open_object(name, asm_text)
    with _state_lock:
        _records[name] = found
    yield str(_FD_DIR / str(_hold(descriptor)))


@contextlib.contextmanager
def verified_known_object(name: str, asm_sha256: str) -> Iterator[str | None]:
    """Like verified_object for the assembly text whose sha256 is `asm_sha256`, without the
    text: a prebuilt or cached object only, never a build; None when there is none (the caller
    then generates the text and asks verified_object)."""
    if not _FD_DIR.is_dir():
        raise UnsafeCacheError(
            _FD_DIR, "it is missing, so a verified kernel cannot be loaded by its descriptor",
            "mount /proc (softjit loads every kernel through /proc/self/fd)")
    check_module_name(name)
    found = open_prebuilt(name, asm_sha256=asm_sha256)
    if found is not None:
        descriptor, path, so_sha256 = found
        record = SharedObject(name, path, SOURCE_PREBUILT, so_sha256)
    else:
        root = open_cache_root()
        try:
            hit = _open_entry(root, cache_key(asm_sha256=asm_sha256), name)
        finally:
            root.close()
        if hit is None:
            yield None
            return
        descriptor, record = hit
    with _state_lock:
        _records[name] = record
    yield str(_FD_DIR / str(_hold(descriptor)))


def _hold(descriptor: int) -> int:
    """Keep `descriptor` open for the life of the process and return the descriptor to load
    through: an already held one of the same inode (then `descriptor` is closed), or itself."""
    info = os.fstat(descriptor)
    identity = (info.st_dev, info.st_ino)
    with _state_lock:
        held = _held_descriptors.get(identity)
        if held is None:
            _held_descriptors[identity] = descriptor
            return descriptor
    os.close(descriptor)
    return held


def get_shared_object(name: str, asm_text: str) -> Path:
    """The path of a verified .so built from `asm_text`: prebuilt, cached, or built now.

    For inspection and tests: a path can be changed after it is returned, so code that loads a
    kernel goes through verified_object instead. Raises as verified_object does.
    """
    descriptor, found = _open_object(name, asm_text)
    os.close(descriptor)
    with _state_lock:
        _records[name] = found
    return found.path


def last_shared_object(name: str) -> SharedObject | None:
    """What the latest load of module `name` in this process used, and where it came from."""
    with _state_lock:
        return _records.get(name)


def _open_object(name: str, asm_text: str) -> tuple[int, SharedObject]:
    check_module_name(name)
    prebuilt = open_prebuilt(name, asm_text)
    if prebuilt is not None:
        descriptor, path, so_sha256 = prebuilt
        return descriptor, SharedObject(name, path, SOURCE_PREBUILT, so_sha256)
    return _cached_or_built(name, asm_text)


def _cached_or_built(name: str, asm_text: str) -> tuple[int, SharedObject]:
    key = cache_key(asm_text)
    configured = configured_cache_dir()
    root = open_cache_root()
    try:
        in_fallback = root.path != configured
        hit = _open_entry(root, key, name)
        if hit is not None:
            return hit
        so_bytes: bytes | None = None
        while True:
            with cache_build.key_lock(root, key):
                # Another process may have built it while this one waited for the lock.
                hit = _open_entry(root, key, name)
                if hit is not None:
                    return hit
                if so_bytes is None:
                    so_bytes = cache_build.assemble(asm_text)
                try:
                    descriptor, path = cache_build.publish(root, key, name, asm_text, so_bytes)
                except OSError as error:
                    if in_fallback:
                        raise  # the fallback failed too: nothing else to try
                    in_fallback = True
                    replacement = use_fallback(configured, str(error))
                    root.close()
                    root = open_trusted_dir(replacement, remedy=CACHE_DIR_REMEDY, create=False)
                    continue
                return descriptor, SharedObject(name, path, SOURCE_BUILT, sha256_bytes(so_bytes))
    finally:
        root.close()


def _open_entry(root: OpenDir, key: str, name: str) -> tuple[int, SharedObject] | None:
    """A descriptor of the entry's .so if the entry is complete, ours, and the file has its
    recorded size and hash; else None (missing, damaged or being cleared: the caller rebuilds)."""
    try:
        with open_private_subdir(root, key[:2], create=False, remedy=CACHE_DIR_REMEDY) as shard, \
                open_private_subdir(shard, key, create=False, remedy=CACHE_DIR_REMEDY) as entry:
            meta = _read_meta(entry, key)
            if meta is None:
                return None
            so_name = meta["so_name"]
            descriptor, info = open_trusted_file(entry, so_name, owners={os.geteuid()},
                                                 remedy=CACHE_DIR_REMEDY)
            if info.st_size == meta["so_size"] and sha256_fd(descriptor) == meta["so_sha256"]:
                found = SharedObject(name, entry.path / so_name, SOURCE_CACHE, meta["so_sha256"])
                return descriptor, found
            os.close(descriptor)
            # Entries only ever receive complete files by rename, so wrong bytes mean later
            # damage: drop the file (a process that loaded it keeps its inode) and rebuild.
            with contextlib.suppress(OSError):
                os.unlink(so_name, dir_fd=entry.fd)
            return None
    except (FileNotFoundError, NotADirectoryError):
        return None


def _read_meta(entry: OpenDir, key: str) -> dict[str, Any] | None:
    """meta.json if it is well formed and describes `key`, else None (so the entry is rebuilt)."""
    try:
        descriptor, _info = open_trusted_file(entry, META_NAME, owners={os.geteuid()},
                                              remedy=CACHE_DIR_REMEDY)
    except FileNotFoundError:
        return None
    try:
        meta = json.loads(read_fd(descriptor).decode("utf-8"))
    except ValueError:
        return None
    finally:
        os.close(descriptor)
    valid = (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT_VERSION
        and meta.get("key") == key
        and isinstance(meta.get("so_name"), str)
        and SO_NAME_PATTERN.fullmatch(meta["so_name"]) is not None
        and isinstance(meta.get("so_sha256"), str)
        and isinstance(meta.get("so_size"), int)
    )
    return meta if valid else None


