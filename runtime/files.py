"""File helpers shared by the kernel cache and the prebuilt objects: hashes, private files and the
ownership/permission check that decides whether a directory's code may be loaded.

Loading a shared object runs its code, so a file anyone else could have written must never be
loaded: the directory holding it and the file itself must belong to us and be closed to writes by
group and others.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection
from pathlib import Path

from .errors import UnsafeCacheError

_HASH_CHUNK_BYTES = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def make_private_dir(path: Path) -> Path:
    """Create `path` with mode 0700 if it does not exist yet (missing parents get the default
    mode, as with mkdir -p: they are the user's own directories such as ~/.cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def write_private_file(path: Path, data: bytes, mode: int) -> None:
    """Write a new file that did not exist before (O_EXCL), then give it `mode`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(descriptor, "wb", closefd=False) as stream:
            stream.write(data)
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)


def check_private(
    path: Path,
    *,
    directory: bool,
    remedy: str,
    owners: Collection[int] | None = None,
    follow_symlinks: bool = False,
) -> None:
    """Raise UnsafeCacheError unless `path` is ours and closed to writes by group and others.

    `owners` are the acceptable owner uids (default: only the current user). `remedy` completes
    the fix text with the alternative to repairing the path (e.g. choosing another directory).
    Symbolic links are refused unless `follow_symlinks`, since a link can be repointed.
    """
    uid = os.geteuid()
    owners = {uid} if owners is None else set(owners)
    info = os.stat(path) if follow_symlinks else os.lstat(path)
    kind = "directory" if directory else "file"
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeCacheError(path, "it is a symbolic link", f"remove it, {remedy}")
    if directory != stat.S_ISDIR(info.st_mode) or not (directory or stat.S_ISREG(info.st_mode)):
        raise UnsafeCacheError(path, f"it is not a regular {kind}", f"remove it, {remedy}")
    if info.st_uid not in owners:
        expected = " or ".join(f"uid {owner}" for owner in sorted(owners))
        raise UnsafeCacheError(
            path,
            f"the {kind} is owned by uid {info.st_uid}, not by {expected}",
            f"run `chown -R {uid} {path}` if it is yours, {remedy}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        wanted = "700" if directory else "go-w"
        raise UnsafeCacheError(
            path,
            f"its mode {stat.S_IMODE(info.st_mode):04o} lets group or others write to it",
            f"run `chmod {wanted} {path}`, {remedy}",
        )
