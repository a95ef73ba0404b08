"""Building a missing cache entry and publishing it (the write half of cache.py's loading path).

Publishing never touches a file a process may have mapped: a build is written into a staging
directory inside the cache (same filesystem), opened for loading, renamed into the entry under a
fresh random name, and then meta.json is atomically replaced to point at it. A builder killed at
any point leaves either no meta.json change or a complete one. A per-key flock spares concurrent
processes duplicate builds, but the result is correct without it: racing builders each publish
complete, identical objects and the last meta.json wins. A concurrent `cache clear` cannot make a
load fail: a loader holds the descriptor of what it verified or built, and a removed entry is
simply a miss (rebuilt).

The build itself happens in a private scratch directory outside the cache (see assemble).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from softjit._version import __version__
from softjit.runtime.cachedir import (
    CACHE_DIR_REMEDY,
    FORMAT_VERSION,
    LOCKS_DIR_NAME,
    META_NAME,
    SO_NAME_PATTERN,
    STAGING_DIR_NAME,
)
from softjit.runtime.errors import AssemblerError
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
from softjit.runtime.toolchain import assemble_shared_object, toolchain_id

__all__ = ["assemble", "key_lock", "publish"]

#: A builder waits this long for another's lock, then builds anyway (the lock is only an economy).
_LOCK_WAIT_SECONDS = 120.0
#: How often a publisher retries when a concurrent clear removes the entry it is filling.
_PUBLISH_ATTEMPTS = 3
_SCRATCH_REMEDY = "or set TMPDIR to a directory only you can write"


def assemble(asm_text: str) -> bytes:
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


def publish(root: OpenDir, key: str, name: str, asm_text: str,
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
        "softjit_version": __version__,
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
                    write_new_file(staging, META_NAME, meta_bytes, mode=0o600)
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
                os.replace(META_NAME, META_NAME, src_dir_fd=staging.fd, dst_dir_fd=entry.fd)
                return
        except FileNotFoundError:
            continue


def _remove_staging(staging_parent: OpenDir, build_name: str) -> None:
    with contextlib.suppress(OSError):
        with open_private_subdir(staging_parent, build_name, create=False,
                                 remedy=CACHE_DIR_REMEDY) as staging:
            for child in os.listdir(staging.fd):
                if child == META_NAME or SO_NAME_PATTERN.fullmatch(child):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(child, dir_fd=staging.fd)
        os.rmdir(build_name, dir_fd=staging_parent.fd)


@contextlib.contextmanager
def key_lock(root: OpenDir, key: str) -> Iterator[None]:
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


