"""A content-addressed cache of built kernel shared objects, safe across threads and processes.

Where a .so comes from, in order: a prebuilt object for exactly this assembly text (see
prebuilt.py), a verified entry of the user cache, or a fresh build published into the cache.

An entry is <cache dir>/<key[:2]>/<key>/ holding `kernel-<random>.so` and `meta.json`, where key is
the sha256 of everything that decides the bytes (assembly text, toolchain versions, softjit version,
entry format). meta.json names the .so and records its sha256; the .so is loaded only if its bytes
still have that hash, so a truncated or damaged entry is rebuilt and never loaded.

Publishing never touches a file a process may have mapped: a build is written in a staging
directory inside the cache (same filesystem), its .so is renamed into the entry under a fresh
random name, and then meta.json is atomically replaced to point at it. A builder killed at any
point leaves either no meta.json change or a complete one. A per-key flock spares concurrent
processes duplicate builds, but the result is correct without it: racing builders each publish
complete, identical objects and the last meta.json wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softjit._version import __version__

from .cachedir import (
    CACHE_DIR_REMEDY,
    active_cache_dir,
    configured_cache_dir,
    fallback_dir,
    use_fallback,
)
from .errors import AssemblerError, UnsafeCacheError
from .files import (
    check_private,
    make_private_dir,
    sha256_bytes,
    sha256_file,
    sha256_text,
    write_private_file,
)
from .prebuilt import (
    build_prebuilt,
    check_module_name,
    count_prebuilt,
    find_prebuilt,
    prebuilt_dirs,
)
from .toolchain import assemble_shared_object, toolchain_id

__all__ = [
    "FORMAT_VERSION",
    "SharedObject",
    "build_prebuilt",
    "cache_clear",
    "cache_info",
    "cache_key",
    "get_shared_object",
    "last_shared_object",
]

#: Bump when the entry layout or meta.json changes, so old entries are simply never looked up.
FORMAT_VERSION = 1

SOURCE_PREBUILT, SOURCE_CACHE, SOURCE_BUILT = "prebuilt", "cache", "built"

_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_SHARD_PATTERN = re.compile(r"[0-9a-f]{2}")
_SO_NAME_PATTERN = re.compile(r"kernel-[0-9a-f]{16}\.so")
_META_NAME = "meta.json"
_STAGING_DIR, _LOCKS_DIR = "tmp", "locks"

#: A builder waits this long for another's lock, then builds anyway (the lock is only an economy).
_LOCK_WAIT_SECONDS = 120.0
#: cache_clear removes staging directories older than this; younger ones may be builds in flight.
_STALE_STAGING_SECONDS = 3600.0


@dataclass(frozen=True)
class SharedObject:
    """A verified shared object and where it came from ("prebuilt", "cache" or "built")."""

    name: str
    path: Path
    source: str
    so_sha256: str


_records_lock = threading.Lock()
_records: dict[str, SharedObject] = {}


def softjit_version() -> str:
    """softjit's version (softjit/_version.py), part of every cache key."""
    return __version__


def cache_key(asm_text: str) -> str:
    """sha256 over what decides the behaviour of the .so built from `asm_text`.

    The assembler's version is recorded in meta.json but is not part of the key: the assembly
    text fixes every instruction, so two binutils builds give the same machine code up to
    encoding choices, and a host whose binutils were removed keeps its cached kernels."""
    fields = [FORMAT_VERSION, softjit_version(), asm_text]
    return sha256_text(json.dumps(fields, ensure_ascii=False))


def get_shared_object(name: str, asm_text: str) -> Path:
    """The path of a verified .so built from `asm_text`: prebuilt, cached, or built now.

    Raises ToolchainMissingError or AssemblerError when a build is needed and fails, and
    UnsafeCacheError when the cache could have been written by someone else.
    """
    check_module_name(name)
    prebuilt_path = find_prebuilt(name, asm_text)
    if prebuilt_path is not None:
        found = SharedObject(name, prebuilt_path, SOURCE_PREBUILT, sha256_file(prebuilt_path))
    else:
        found = _cached_or_built(name, asm_text)
    with _records_lock:
        _records[name] = found
    return found.path


def last_shared_object(name: str) -> SharedObject | None:
    """What the latest get_shared_object(name, ...) of this process returned, and from where."""
    with _records_lock:
        return _records.get(name)


def _cached_or_built(name: str, asm_text: str) -> SharedObject:
    key = cache_key(asm_text)
    configured = configured_cache_dir()
    root = active_cache_dir()
    hit = _verified_entry(root, key)
    if hit is not None:
        return SharedObject(name, hit[0], SOURCE_CACHE, hit[1])
    so_bytes: bytes | None = None
    while True:
        with _key_lock(root, key):
            # Another process may have built it while this one waited for the lock.
            hit = _verified_entry(root, key)
            if hit is not None:
                return SharedObject(name, hit[0], SOURCE_CACHE, hit[1])
            if so_bytes is None:
                so_bytes = _assemble(asm_text)
            try:
                path = _publish(root, key, name, asm_text, so_bytes)
            except OSError as error:
                if root != configured:
                    raise
                root = use_fallback(configured, error)
                continue
            return SharedObject(name, path, SOURCE_BUILT, sha256_bytes(so_bytes))


def _entry_dir(root: Path, key: str) -> Path:
    return root / key[:2] / key


def _verified_entry(root: Path, key: str) -> tuple[Path, str] | None:
    """(path, sha256) of the entry's .so if it is complete, ours, and has its recorded hash."""
    entry = _entry_dir(root, key)
    try:
        check_private(entry.parent, directory=True, remedy=CACHE_DIR_REMEDY)
        check_private(entry, directory=True, remedy=CACHE_DIR_REMEDY)
    except FileNotFoundError:
        return None
    meta = _read_meta(entry / _META_NAME, key)
    if meta is None:
        return None
    so_path = entry / meta["so_name"]
    try:
        check_private(so_path, directory=False, remedy=CACHE_DIR_REMEDY)
        if so_path.stat().st_size == meta["so_size"] and sha256_file(so_path) == meta["so_sha256"]:
            return so_path, meta["so_sha256"]
    except FileNotFoundError:
        return None
    # Entries only ever receive complete files by rename, so wrong bytes mean later damage:
    # drop the file (a process that has it mapped keeps its inode) and let the caller rebuild.
    with contextlib.suppress(OSError):
        so_path.unlink()
    return None


def _read_meta(path: Path, key: str) -> dict[str, Any] | None:
    """meta.json if it is well formed and describes `key`, else None (so the entry is rebuilt)."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    valid = (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT_VERSION
        and meta.get("key") == key
        and isinstance(meta.get("so_name"), str)
        and _SO_NAME_PATTERN.fullmatch(meta["so_name"]) is not None
        and isinstance(meta.get("so_sha256"), str)
        and isinstance(meta.get("so_size"), int)
    )
    return meta if valid else None


def _assemble(asm_text: str) -> bytes:
    """Build the .so in a private scratch directory and return its bytes.

    The scratch directory is not in the cache, so a failing toolchain and an unwritable cache are
    told apart: only the cache's own writes can send the build to the fallback directory.
    """
    workdir = Path(tempfile.mkdtemp(prefix="softjit-build-"))
    try:
        so_path = assemble_shared_object(asm_text, workdir / "kernel.so", workdir=workdir)
        so_bytes = so_path.read_bytes()
    except AssemblerError:
        raise  # keep workdir: the error names the assembly source kept in it
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return so_bytes


def _publish(root: Path, key: str, name: str, asm_text: str, so_bytes: bytes) -> Path:
    """Put a complete entry for `key` into `root` atomically; returns the published .so path."""
    staging = Path(tempfile.mkdtemp(prefix="build-", dir=make_private_dir(root / _STAGING_DIR)))
    try:
        so_name = f"kernel-{secrets.token_hex(8)}.so"
        meta = {
            "format": FORMAT_VERSION,
            "key": key,
            "name": name,
            "so_name": so_name,
            "so_sha256": sha256_bytes(so_bytes),
            "so_size": len(so_bytes),
            "asm_sha256": sha256_text(asm_text),
            "asm_size": len(asm_text.encode("utf-8")),
            "toolchain": toolchain_id(),
            "softjit_version": softjit_version(),
        }
        # No fsync: the hash check already turns a file cut short by a power loss into a rebuild.
        write_private_file(staging / so_name, so_bytes, mode=0o500)
        meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8")
        write_private_file(staging / _META_NAME, meta_bytes, mode=0o600)
        entry = _entry_dir(root, key)
        make_private_dir(entry.parent)
        make_private_dir(entry)
        # A fresh random name: no existing file, possibly mapped by some process, is replaced.
        os.rename(staging / so_name, entry / so_name)
        # The commit point: readers see the old meta.json or the new one, never a mix.
        os.replace(staging / _META_NAME, entry / _META_NAME)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry / so_name


@contextlib.contextmanager
def _key_lock(root: Path, key: str) -> Iterator[None]:
    """Hold an exclusive flock on <root>/locks/<key>.lock, or proceed without it when the lock
    cannot be created or waited for: it only avoids duplicate builds."""
    descriptor = _open_lock_file(root, key)
    try:
        if descriptor is not None:
            _wait_for_flock(descriptor)
        yield
    finally:
        if descriptor is not None:
            os.close(descriptor)  # closing the descriptor releases the flock


def _open_lock_file(root: Path, key: str) -> int | None:
    try:
        lock_path = make_private_dir(root / _LOCKS_DIR) / f"{key}.lock"
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(lock_path, flags, 0o600)
    except OSError:
        return None


def _wait_for_flock(descriptor: int) -> None:
    deadline = time.monotonic() + _LOCK_WAIT_SECONDS
    pause = 0.002
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
        except OSError:
            return  # e.g. ENOLCK on a filesystem without locks
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _entries(root: Path) -> Iterator[Path]:
    """The entry directories under `root` (not following symbolic links)."""
    with contextlib.suppress(FileNotFoundError):
        for shard in os.scandir(root):
            if not (_SHARD_PATTERN.fullmatch(shard.name) and shard.is_dir(follow_symlinks=False)):
                continue
            for entry in os.scandir(shard.path):
                if _KEY_PATTERN.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
                    yield Path(entry.path)


def _tree_bytes(directory: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(directory):
        for filename in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, filename)).st_size
    return total


def _cache_roots() -> list[Path]:
    configured = configured_cache_dir()
    roots = [configured, fallback_dir(configured)]
    return [root for root in roots if root is not None and root.is_dir()]


def cache_info() -> dict[str, Any]:
    """A summary for `softjit info` / `softjit cache info`; never raises for an unusable cache.

    Keys: dir (the cache directory in use), configured_dir, fallback (True when this process uses
    a temporary directory instead), entries, bytes, problem (why the cache is unsafe, or None),
    prebuilt (a list of {"dir", "count"}, in search order).
    """
    configured = configured_cache_dir()
    in_use = fallback_dir(configured) or configured
    info: dict[str, Any] = {
        "dir": str(in_use),
        "configured_dir": str(configured),
        "fallback": in_use != configured,
        "entries": 0,
        "bytes": 0,
        "problem": None,
        "prebuilt": [
            {"dir": str(directory), "count": count_prebuilt(directory)}
            for directory in prebuilt_dirs()
        ],
    }
    if in_use.is_dir():
        try:
            check_private(in_use, directory=True, remedy=CACHE_DIR_REMEDY, follow_symlinks=True)
        except UnsafeCacheError as error:
            info["problem"] = str(error)
        entries = list(_entries(in_use))
        info["entries"] = len(entries)
        info["bytes"] = sum(_tree_bytes(entry) for entry in entries)
    return info


def cache_clear() -> int:
    """Remove every cache entry (of the configured directory and this process's fallback) and
    return how many were removed. Safe while other processes have kernels loaded: an unlinked
    .so stays mapped until they exit."""
    removed = 0
    for root in _cache_roots():
        check_private(root, directory=True, remedy=CACHE_DIR_REMEDY, follow_symlinks=True)
        for entry in list(_entries(root)):
            _remove_tree(entry)
            removed += 1
            with contextlib.suppress(OSError):
                entry.parent.rmdir()  # only succeeds once the shard is empty
        _remove_children(root / _LOCKS_DIR, older_than=0.0)
        _remove_children(root / _STAGING_DIR, older_than=_STALE_STAGING_SECONDS)
    return removed


def _remove_children(directory: Path, older_than: float) -> None:
    """Remove the files and trees in `directory` last modified more than `older_than` s ago."""
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for child in os.scandir(directory):
            with contextlib.suppress(FileNotFoundError):
                if now - child.stat(follow_symlinks=False).st_mtime < older_than:
                    continue
                if child.is_dir(follow_symlinks=False):
                    _remove_tree(Path(child.path))
                else:
                    os.unlink(child.path)


def _remove_tree(directory: Path) -> None:
    # Another cache_clear may be removing the same tree; what it removed first is no error.
    def ignore_missing(_function: Any, _path: str, exc_info: Any) -> None:
        if not isinstance(exc_info[1], FileNotFoundError):
            raise exc_info[1]

    shutil.rmtree(directory, onerror=ignore_missing)
