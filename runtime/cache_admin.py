"""`softjit cache info` and `softjit cache clear`: what the cache holds, and emptying it.

`cache_clear` removes only what softjit made (its own names, in directories it tagged) and
refuses a directory that is not a softjit cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softjit.runtime.cachedir import (
    ASM_INDEX_DIR_NAME,
    CACHE_DIR_REMEDY,
    KEY_PATTERN,
    LOCK_NAME_PATTERN,
    LOCKS_DIR_NAME,
    META_NAME,
    SHARD_PATTERN,
    SO_NAME_PATTERN,
    STAGING_DIR_NAME,
    STAGING_NAME_PATTERN,
    check_softjit_cache,
    configured_cache_dir,
    fallback_dir,
    is_own_top_level_name,
)
from softjit.runtime.errors import NotSoftjitCacheError, UnsafeCacheError
from softjit.runtime.files import OpenDir, open_private_subdir, open_trusted_dir
from softjit.runtime.prebuilt import count_prebuilt, prebuilt_dirs

__all__ = ["ClearReport", "cache_clear", "cache_info"]

#: cache_clear removes staging directories older than this; younger ones may be builds in flight.
_STALE_STAGING_SECONDS = 3600.0


def _entries(root: Path) -> Iterator[Path]:
    """The entry directories under `root` (not following symbolic links)."""
    with contextlib.suppress(OSError):
        for shard in os.scandir(root):
            if not (SHARD_PATTERN.fullmatch(shard.name) and shard.is_dir(follow_symlinks=False)):
                continue
            with contextlib.suppress(OSError):
                for entry in os.scandir(shard.path):
                    if KEY_PATTERN.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False):
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
        if not KEY_PATTERN.fullmatch(name):
            report.kept.append(shard.path / name)
            continue
        _clear_directory(shard, name, report, _clear_entry)
    _remove_empty_dir(root, shard.path.name)


def _clear_entry(shard: OpenDir, entry: OpenDir, report: ClearReport) -> None:
    for name in os.listdir(entry.fd):
        if name == META_NAME or SO_NAME_PATTERN.fullmatch(name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=entry.fd)
        else:
            report.kept.append(entry.path / name)
    if _remove_empty_dir(shard, entry.path.name):
        report.removed += 1


def _clear_locks(_root: OpenDir, locks: OpenDir, report: ClearReport) -> None:
    # Unlinking a lock another process holds is harmless: the lock only spares duplicate builds.
    for name in os.listdir(locks.fd):
        if LOCK_NAME_PATTERN.fullmatch(name):
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
        if not STAGING_NAME_PATTERN.fullmatch(name):
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
        if name == META_NAME or SO_NAME_PATTERN.fullmatch(name):
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
