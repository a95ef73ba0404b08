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

Publishing never touches a file a process may have mapped: a build is written into a staging
directory inside the cache (same filesystem), opened for loading, renamed into the entry under a
fresh random name, and then meta.json is atomically replaced to point at it. A builder killed at
any point leaves either no meta.json change or a complete one. A per-key flock spares concurrent
processes duplicate builds, but the result is correct without it: racing builders each publish
complete, identical objects and the last meta.json wins. A concurrent `cache clear` cannot make a
load fail: a loader holds the descriptor of what it verified or built, and a removed entry is
simply a miss (rebuilt).

`cache_clear` removes only what softjit made (its own names, in directories it tagged) and
refuses a directory that is not a softjit cache.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softjit._version import __version__
from softjit.runtime.cachedir import (
    ASM_INDEX_DIR_NAME,
    CACHE_DIR_REMEDY,
    LOCKS_DIR_NAME,
    SHARD_PATTERN,
    STAGING_DIR_NAME,
    check_softjit_cache,
    configured_cache_dir,
    fallback_dir,
    is_own_top_level_name,
    open_cache_root,
    use_fallback,
)
from softjit.runtime.errors import AssemblerError, NotSoftjitCacheError, UnsafeCacheError
from softjit.runtime.files import (
    OpenDir,
    open_private_subdir,
    open_trusted_dir,
    open_trusted_file,
    read_fd,
    sha256_bytes,
    sha256_fd,
    sha256_text,
    write_new_file,
)
from softjit.runtime.prebuilt import (
    build_prebuilt,
    check_module_name,
    count_prebuilt,
    open_prebuilt,
    prebuilt_dirs,
)
from softjit.runtime.toolchain import assemble_shared_object, toolchain_id

__all__ = [
    "FORMAT_VERSION",
    "ClearReport",
    "SharedObject",
    "build_prebuilt",
    "cache_clear",
    "cache_info",
    "cache_key",
    "get_shared_object",
    "last_shared_object",
    "verified_object",
]

#: Bump when the entry layout or meta.json changes, so old entries are simply never looked up.
FORMAT_VERSION = 2

SOURCE_PREBUILT, SOURCE_CACHE, SOURCE_BUILT = "prebuilt", "cache", "built"

_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_SO_NAME_PATTERN = re.compile(r"kernel-[0-9a-f]{16}\.so")
_LOCK_NAME_PATTERN = re.compile(r"[0-9a-f]{64}\.lock")
# Staging directories: build-<16 hex> now, build-<8 chars> from tempfile.mkdtemp before.
_STAGING_NAME_PATTERN = re.compile(r"build-[A-Za-z0-9_]{8,16}")
_META_NAME = "meta.json"

#: A builder waits this long for another's lock, then builds anyway (the lock is only an economy).
_LOCK_WAIT_SECONDS = 120.0
#: cache_clear removes staging directories older than this; younger ones may be builds in flight.
_STALE_STAGING_SECONDS = 3600.0
#: How often a publisher retries when a concurrent clear removes the entry it is filling.
_PUBLISH_ATTEMPTS = 3
_SCRATCH_REMEDY = "or set TMPDIR to a directory only you can write"
_FD_DIR = Path("/proc/self/fd")


@dataclass(frozen=True)
class SharedObject:
    """A verified shared object and where it came from ("prebuilt", "cache" or "built")."""

    name: str
    path: Path
    source: str
    so_sha256: str


_state_lock = threading.Lock()
_records: dict[str, SharedObject] = {}
#: (st_dev, st_ino) -> the descriptor this process loads that object through. glibc recognises
#: an already loaded library by the path string it was opened by, so a descriptor number that
#: was closed and reused would make dlopen("/proc/self/fd/N") return the previous library; these
#: descriptors therefore stay open for the life of the process (one per object loaded).
_held_descriptors: dict[tuple[int, int], int] = {}


def _reset_lock_in_child() -> None:
    global _state_lock
    _state_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


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
            with _key_lock(root, key):
                # Another process may have built it while this one waited for the lock.
                hit = _open_entry(root, key, name)
                if hit is not None:
                    return hit
                if so_bytes is None:
                    so_bytes = _assemble(asm_text)
                try:
                    descriptor, path = _publish(root, key, name, asm_text, so_bytes)
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
        descriptor, _info = open_trusted_file(entry, _META_NAME, owners={os.geteuid()},
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
        and _SO_NAME_PATTERN.fullmatch(meta["so_name"]) is not None
        and isinstance(meta.get("so_sha256"), str)
        and isinstance(meta.get("so_size"), int)
    )
    return meta if valid else None


def _assemble(asm_text: str) -> bytes:
    """Build the .so in a private scratch directory and return its bytes.

    The scratch directory is not in the cache, so a failing toolchain and an unwritable cache are
    told apart: only the cache's own writes can send the build to the fallback directory. Its
    whole path is verified like the cache's (no one else may swap it while as and ld write their
    files there by name), and the result is read back through a checked descriptor.
    """
    workdir = Path(tempfile.mkdtemp(prefix="softjit-build-"))
    try:
        with open_trusted_dir(workdir.absolute(), remedy=_SCRATCH_REMEDY, create=False) as scratch:
            assemble_shared_object(asm_text, workdir / "kernel.so", workdir=workdir)
            descriptor, _info = open_trusted_file(scratch, "kernel.so", owners={os.geteuid()},
                                                  remedy=_SCRATCH_REMEDY)
            try:
                so_bytes = read_fd(descriptor)
            finally:
                os.close(descriptor)
    except AssemblerError:
        raise  # keep workdir: the error names the assembly source kept in it
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    return so_bytes


def _publish(root: OpenDir, key: str, name: str, asm_text: str,
             so_bytes: bytes) -> tuple[int, Path]:
    """Put a complete entry for `key` into `root` atomically; returns a checked read-only
    descriptor of the new .so (opened before it was published, so no one can have changed it) and
    the path it was published at."""
    so_name = f"kernel-{secrets.token_hex(8)}.so"
    so_sha256 = sha256_bytes(so_bytes)
    meta = {
        "format": FORMAT_VERSION,
        "key": key,
        "name": name,
        "so_name": so_name,
        "so_sha256": so_sha256,
        "so_size": len(so_bytes),
        "asm_sha256": sha256_text(asm_text),
        "asm_size": len(asm_text.encode("utf-8")),
        "toolchain": toolchain_id(),
        "softjit_version": softjit_version(),
    }
    meta_bytes = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8")
    build_name = f"build-{secrets.token_hex(8)}"
    with open_private_subdir(root, STAGING_DIR_NAME, create=True,
                             remedy=CACHE_DIR_REMEDY) as staging_parent:
        os.mkdir(build_name, 0o700, dir_fd=staging_parent.fd)
        try:
            with open_private_subdir(staging_parent, build_name, create=False,
                                     remedy=CACHE_DIR_REMEDY) as staging:
                # No fsync: the hash check already turns a file cut short by a power loss into a
                # rebuild.
                write_new_file(staging, so_name, so_bytes, mode=0o500)
                descriptor, _info = open_trusted_file(staging, so_name, owners={os.geteuid()},
                                                      remedy=CACHE_DIR_REMEDY)
                try:
                    if sha256_fd(descriptor) != so_sha256:
                        raise OSError(errno.EIO, f"{staging.path / so_name} does not read back "
                                                 f"as written")
                    write_new_file(staging, _META_NAME, meta_bytes, mode=0o600)
                    _move_into_entry(root, key, staging, so_name)
                except BaseException:
                    os.close(descriptor)
                    raise
        finally:
            _remove_staging(staging_parent, build_name)
    return descriptor, root.path / key[:2] / key / so_name


def _move_into_entry(root: OpenDir, key: str, staging: OpenDir, so_name: str) -> None:
    """Rename the staged .so, then meta.json (the commit point), into the entry for `key`.

    A concurrent clear may remove the shard or entry directory between its opening and the
    renames (ENOENT): then the directories are made again. If the clear keeps winning, the entry
    is left unpublished, which costs the next process a build and this one nothing: it loads the
    descriptor it opened before publishing."""
    for _attempt in range(_PUBLISH_ATTEMPTS):
        try:
            with open_private_subdir(root, key[:2], create=True,
                                     remedy=CACHE_DIR_REMEDY) as shard, \
                    open_private_subdir(shard, key, create=True, remedy=CACHE_DIR_REMEDY) as entry:
                # A fresh random name: no existing file, possibly mapped by some process, is
                # replaced.
                os.rename(so_name, so_name, src_dir_fd=staging.fd, dst_dir_fd=entry.fd)
                # The commit point: readers see the old meta.json or the new one, never a mix.
                os.replace(_META_NAME, _META_NAME, src_dir_fd=staging.fd, dst_dir_fd=entry.fd)
                return
        except FileNotFoundError:
            continue


def _remove_staging(staging_parent: OpenDir, build_name: str) -> None:
    with contextlib.suppress(OSError):
        with open_private_subdir(staging_parent, build_name, create=False,
                                 remedy=CACHE_DIR_REMEDY) as staging:
            for child in os.listdir(staging.fd):
                if child == _META_NAME or _SO_NAME_PATTERN.fullmatch(child):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(child, dir_fd=staging.fd)
        os.rmdir(build_name, dir_fd=staging_parent.fd)


@contextlib.contextmanager
def _key_lock(root: OpenDir, key: str) -> Iterator[None]:
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


def _open_lock_file(root: OpenDir, key: str) -> int | None:
    try:
        with open_private_subdir(root, LOCKS_DIR_NAME, create=True,
                                 remedy=CACHE_DIR_REMEDY) as locks:
            flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
            return os.open(f"{key}.lock", flags, 0o600, dir_fd=locks.fd)
    except OSError:
        return None  # e.g. a file in the way: build without the lock (UnsafeCacheError is raised)


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
    with contextlib.suppress(OSError):
        for shard in os.scandir(root):
            if not (SHARD_PATTERN.fullmatch(shard.name) and shard.is_dir(follow_symlinks=False)):
                continue
            with contextlib.suppress(OSError):
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


def cache_info() -> dict[str, Any]:
    """A summary for `softjit info` / `softjit cache info`; never raises for an unusable cache.

    Keys: dir (the cache directory in use), configured_dir, fallback (True when this process uses
    a temporary directory instead), entries, bytes, problem (why the cache is unsafe or not a
    softjit cache, or None), prebuilt (a list of {"dir", "count"}, in search order).
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
    try:
        with open_trusted_dir(in_use, remedy=CACHE_DIR_REMEDY, create=False) as root:
            check_softjit_cache(root)
    except (UnsafeCacheError, NotSoftjitCacheError) as error:
        info["problem"] = str(error)
    except OSError:
        pass  # not there yet: an empty cache
    entries = list(_entries(in_use))
    info["entries"] = len(entries)
    info["bytes"] = sum(_tree_bytes(entry) for entry in entries)
    return info


@dataclass
class ClearReport:
    """What cache_clear did: the cache directories it emptied, how many entries it removed, and
    the paths it found inside them but left alone because softjit did not make them."""

    directories: list[Path] = field(default_factory=list)
    removed: int = 0
    kept: list[Path] = field(default_factory=list)


def cache_clear() -> ClearReport:
    """Remove every cache entry (of the configured directory and this process's fallback).

    Removes only what softjit made, recognised by its names: entry directories with their .so and
    meta.json, lock files, and staging directories older than an hour (younger ones may be builds
    in flight). Anything else is left in place and listed in the report. Raises
    NotSoftjitCacheError, touching nothing, for a directory that is not a softjit cache, and
    UnsafeCacheError for one that others could write. Safe beside running processes: one that
    loaded a kernel keeps it, one that is loading finds a miss and rebuilds.
    """
    report = ClearReport()
    configured = configured_cache_dir()
    roots: list[OpenDir] = []
    try:
        # Every directory is checked before anything is removed from any of them.
        for directory in (configured, fallback_dir(configured)):
            if directory is None:
                continue
            try:
                roots.append(open_trusted_dir(directory, remedy=CACHE_DIR_REMEDY, create=False))
            except FileNotFoundError:
                continue
            check_softjit_cache(roots[-1])
        for root in roots:
            report.directories.append(root.path)
            _clear_root(root, report)
    finally:
        for root in roots:
            root.close()
    return report


def _clear_root(root: OpenDir, report: ClearReport) -> None:
    for name in sorted(os.listdir(root.fd)):
        if SHARD_PATTERN.fullmatch(name):
            _clear_directory(root, name, report, _clear_shard)
        elif name == LOCKS_DIR_NAME:
            _clear_directory(root, name, report, _clear_locks)
        elif name == STAGING_DIR_NAME:
            _clear_directory(root, name, report, _clear_staging)
        elif name == ASM_INDEX_DIR_NAME:
            _clear_directory(root, name, report, _clear_asm_index)
        elif not is_own_top_level_name(name):
            report.kept.append(root.path / name)
    # The tag and the tuning table stay: the first marks the directory, the second is a
    # measurement rather than a build.


def _clear_directory(parent: OpenDir, name: str, report: ClearReport,
                     clear: Callable[[OpenDir, OpenDir, ClearReport], None]) -> None:
    """Open the subdirectory `name` safely and hand it to `clear`; one that is not a directory,
    not ours, or a link is left alone and reported."""
    try:
        directory = open_private_subdir(parent, name, create=False, remedy=CACHE_DIR_REMEDY)
    except FileNotFoundError:
        return  # removed meanwhile by another clear
    except (NotADirectoryError, UnsafeCacheError):
        report.kept.append(parent.path / name)
        return
    with directory:
        clear(parent, directory, report)


def _clear_shard(root: OpenDir, shard: OpenDir, report: ClearReport) -> None:
    for name in sorted(os.listdir(shard.fd)):
        if not _KEY_PATTERN.fullmatch(name):
            report.kept.append(shard.path / name)
            continue
        _clear_directory(shard, name, report, _clear_entry)
    _remove_empty_dir(root, shard.path.name)


def _clear_entry(shard: OpenDir, entry: OpenDir, report: ClearReport) -> None:
    for name in os.listdir(entry.fd):
        if name == _META_NAME or _SO_NAME_PATTERN.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=entry.fd)
        else:
            report.kept.append(entry.path / name)
    if _remove_empty_dir(shard, entry.path.name):
        report.removed += 1


def _clear_locks(_root: OpenDir, locks: OpenDir, report: ClearReport) -> None:
    # Unlinking a lock another process holds is harmless: the lock only spares duplicate builds.
    for name in os.listdir(locks.fd):
        if _LOCK_NAME_PATTERN.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=locks.fd)
        else:
            report.kept.append(locks.path / name)


def _clear_asm_index(_root: OpenDir, index: OpenDir, report: ClearReport) -> None:
    # The index only names assembly hashes: without it the next load generates again.
    for name in os.listdir(index.fd):
        if name.endswith((".json", ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=index.fd)
        else:
            report.kept.append(index.path / name)


def _clear_staging(_root: OpenDir, staging: OpenDir, report: ClearReport) -> None:
    now = time.time()
    for name in os.listdir(staging.fd):
        if not _STAGING_NAME_PATTERN.fullmatch(name):
            report.kept.append(staging.path / name)
            continue
        try:
            info = os.stat(name, dir_fd=staging.fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(info.st_mode):
            report.kept.append(staging.path / name)
        elif now - info.st_mtime >= _STALE_STAGING_SECONDS:
            _clear_directory(staging, name, report, _clear_build)


def _clear_build(staging: OpenDir, build: OpenDir, report: ClearReport) -> None:
    for name in os.listdir(build.fd):
        if name == _META_NAME or _SO_NAME_PATTERN.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=build.fd)
        else:
            report.kept.append(build.path / name)
    _remove_empty_dir(staging, build.path.name)


def _remove_empty_dir(parent: OpenDir, name: str) -> bool:
    """rmdir; False when the directory is gone already (another clear) or not empty (files
    softjit did not make, or an entry a concurrent build just published)."""
    try:
        os.rmdir(name, dir_fd=parent.fd)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True
