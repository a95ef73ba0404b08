"""Filesystem access for the code softjit loads: hashes, a directory walk that accepts only what
no other user could have changed, and files opened relative to directories already verified.

Loading a shared object runs its code, so softjit must load only bytes that it (this user) or root
wrote, and must load exactly the file it checked. Three rules give that:

- A directory is trusted when it is owned by this user or root and no one else may write to it:
  mode without group or other write, or a sticky directory (like /tmp) owned by a trusted user
  whose next component on our path is itself owned by a trusted user (the sticky bit stops others
  renaming or deleting what they do not own). Every directory from / down to the one used is
  checked, because whoever can write to any of them can swap what lies below. Above the directory
  itself, group write is also accepted when no one outside this user and root belongs to the
  group (a user-private group, as umask 002 systems give ~/.cache mode 0775); the directories
  softjit makes and uses stay closed to any group.
- Paths are walked one component at a time with directory descriptors: each component is opened
  with O_NOFOLLOW relative to the already verified directory, so no symbolic link is followed by
  accident and nothing is re-resolved later by name. A symbolic link on the way is followed only
  when it sits in a verified directory (then no one else can repoint it), and its target is walked
  by the same rules.
- A file is opened with O_NOFOLLOW relative to its verified directory and checked (regular, owner,
  mode, and by the callers its sha256) through that descriptor; the caller then loads that very
  descriptor, so what runs is the inode that was checked.
"""

from __future__ import annotations

import errno
import functools
import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Collection
from pathlib import Path

from softjit.runtime.errors import UnsafeCacheError

_HASH_CHUNK_BYTES = 1 << 20
#: As the kernel's own limit on symbolic links followed while resolving one path.
_MAX_SYMLINKS = 40
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted under a file's name must not hang (it is refused after fstat).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


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


def sha256_fd(descriptor: int) -> str:
    """sha256 of the whole file open at `descriptor` (read with pread: the offset is untouched)."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(descriptor, _HASH_CHUNK_BYTES, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def read_fd(descriptor: int) -> bytes:
    chunks = []
    offset = 0
    while chunk := os.pread(descriptor, _HASH_CHUNK_BYTES, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def trusted_owners() -> frozenset[int]:
    """The uids whose files softjit may load: this user and root (root can replace anything)."""
    return frozenset({os.geteuid(), 0})


class OpenDir:
    """A directory descriptor that passed the checks, with the path it was reached by (for
    messages and for tools that need a path). Close it, or use it as a context manager."""

    def __init__(self, descriptor: int, path: Path) -> None:
        self.fd = descriptor
        self.path = path

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenDir:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o}"


def _owner_error(path: Path, info: os.stat_result, owners: Collection[int], kind: str,
                 remedy: str) -> UnsafeCacheError:
    expected = " or ".join(f"uid {owner}" for owner in sorted(owners))
    return UnsafeCacheError(
        path,
        f"the {kind} is owned by uid {info.st_uid}, not by {expected}",
        f"run `chown -R {os.geteuid()} {path}` if it is yours, {remedy}",
    )


def _check_owner(path: Path, info: os.stat_result, owners: Collection[int], kind: str,
                 remedy: str) -> None:
    if info.st_uid not in owners:
        raise _owner_error(path, info, owners, kind, remedy)


def _check_closed(path: Path, info: os.stat_result, kind: str, remedy: str) -> None:
    """Refuse a file or directory that group or others may write to."""
    if info.st_mode & _OTHERS_WRITE:
        wanted = "700" if kind == "directory" else "go-w"
        raise UnsafeCacheError(
            path,
            f"its mode {_mode(info)} lets group or others write to it",
            f"run `chmod {wanted} {path}`, {remedy}",
        )


@functools.lru_cache(maxsize=64)
def _group_members(gid: int) -> frozenset[int] | None:
    """The uids that belong to group `gid` (listed members and users whose primary group it is),
    or None when the group database cannot say (then the group counts as open)."""
    try:
        members = {pwd.getpwnam(name).pw_uid for name in grp.getgrgid(gid).gr_mem}
        members |= {user.pw_uid for user in pwd.getpwall() if user.pw_gid == gid}
    except (KeyError, OSError):
        return None
    return frozenset(members)


def _only_trusted_may_write(info: os.stat_result) -> bool:
    """No user outside trusted_owners() may write to a directory with this stat: no write for
    others, and group write only for a group whose members are all trusted."""
    if info.st_mode & stat.S_IWOTH:
        return False
    if not info.st_mode & stat.S_IWGRP:
        return True
    members = _group_members(info.st_gid)
    return members is not None and members <= trusted_owners()


def _check_passage(path: Path, info: os.stat_result, child: Path,
                   child_info: os.stat_result | None, remedy: str) -> None:
    """May `child` (a component inside the directory `path`) be trusted to stay what it is?

    Yes when no one else may write `path`, or when `path` is a sticky directory owned by a
    trusted user and `child` is owned by a trusted user too (then only they can move it).
    With `child_info` None (the child is not looked at yet) only the first half is decided:
    a directory that fails it is refused before anything is created in it."""
    if _only_trusted_may_write(info):
        return
    owners = trusted_owners()
    sticky_and_trusted = bool(info.st_mode & stat.S_ISVTX) and info.st_uid in owners
    if sticky_and_trusted and (child_info is None or child_info.st_uid in owners):
        return
    if sticky_and_trusted:
        assert child_info is not None
        why = f"and {child} in it belongs to uid {child_info.st_uid}, who could replace it"
        fix = f"remove {child} if you do not trust uid {child_info.st_uid}, {remedy}"
    else:
        why = f"so another user could replace {child}"
        fix = (f"run `chmod go-w {path}` (or `chmod +t {path}` for a shared directory such "
               f"as /tmp), {remedy}")
    raise UnsafeCacheError(
        path, f"its mode {_mode(info)} lets group or others write to it, {why}", fix)


def open_trusted_dir(path: Path, *, remedy: str, create: bool,
                     final_owners: Collection[int] | None = None) -> OpenDir:
    """Open the directory `path`, verifying every directory from / down to it.

    `path` must be absolute. Missing components are created with mode 0700 when `create` (else
    FileNotFoundError). The directory itself must be owned by one of `final_owners` (default: this
    user) and closed to writes by group and others. Raises UnsafeCacheError when anything on the
    way could be changed by someone else, and OSError for a path that cannot be walked (a file in
    the way, a permission or I/O error).
    """
    path = Path(path)
    if not path.is_absolute():
        raise ValueError(f"open_trusted_dir needs an absolute path, not {str(path)!r}")
    owners = trusted_owners()
    final_owners = frozenset({os.geteuid()} if final_owners is None else final_owners)
    root_fd = os.open("/", _DIRECTORY_FLAGS)
    # The verified directories from / down to the current one, with their stat and path.
    stack: list[tuple[int, os.stat_result, Path]] = [(root_fd, os.fstat(root_fd), Path("/"))]
    try:
        _check_owner(Path("/"), stack[0][1], owners, "directory", remedy)
        pending = list(reversed(path.parts[1:]))  # popped from the end: the next component last
        links_followed = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            parent_fd, parent_info, parent_path = stack[-1]
            child_path = parent_path / name
            _check_passage(parent_path, parent_info, child_path, None, remedy)
            try:
                info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o700, dir_fd=parent_fd)
                except FileExistsError:
                    pass  # made by someone else meanwhile: checked below like anything found
                info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            _check_passage(parent_path, parent_info, child_path, info, remedy)
            if stat.S_ISLNK(info.st_mode):
                links_followed += 1
                if links_followed > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path))
                # The link sits in a verified directory, so no one else can repoint it now.
                target = os.readlink(name, dir_fd=parent_fd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                pending.extend(reversed(Path(target).parts[1 if target.startswith("/") else 0:]))
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(child_path))
            child_fd = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent_fd)
            child_info = os.fstat(child_fd)
            stack.append((child_fd, child_info, child_path))
            # The descriptor is what counts from here on: check what was opened, not what was
            # seen by name a moment before.
            _check_passage(parent_path, parent_info, child_path, child_info, remedy)
            _check_owner(child_path, child_info, owners, "directory", remedy)
        final_fd, final_info, final_path = stack[-1]
        _check_owner(final_path, final_info, final_owners, "directory", remedy)
        _check_closed(final_path, final_info, "directory", remedy)
        stack.pop()
        return OpenDir(final_fd, path)
    finally:
        for descriptor, _info, _path in stack:
            os.close(descriptor)


def open_private_subdir(parent: OpenDir, name: str, *, create: bool, remedy: str) -> OpenDir:
    """Open (and with `create`, first make, mode 0700) the directory `name` inside `parent`,
    without following a symbolic link; it must be ours and closed to writes by group and others.

    FileNotFoundError when it is missing and not `create`; NotADirectoryError when something else
    has the name; UnsafeCacheError for a symbolic link, another owner or an open mode.
    """
    path = parent.path / name
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent.fd)
        except FileExistsError:
            pass  # an existing one is checked like any other
    try:
        descriptor = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent.fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            _refuse_link(parent, name, path, remedy)
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
        raise
    try:
        info = os.fstat(descriptor)
        _check_owner(path, info, {os.geteuid()}, "directory", remedy)
        _check_closed(path, info, "directory", remedy)
    except BaseException:
        os.close(descriptor)
        raise
    return OpenDir(descriptor, path)


def _refuse_link(parent: OpenDir, name: str, path: Path, remedy: str) -> None:
    try:
        info = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
    except OSError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeCacheError(path, "it is a symbolic link", f"remove it, {remedy}")


def open_trusted_file(parent: OpenDir, name: str, *, owners: Collection[int],
                      remedy: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the regular file `name` in `parent` and its fstat, opened without
    following a symbolic link and checked through the descriptor: owned by one of `owners` and
    closed to writes by group and others. FileNotFoundError when there is none."""
    path = parent.path / name
    try:
        descriptor = os.open(name, _FILE_FLAGS, dir_fd=parent.fd)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeCacheError(path, "it is a symbolic link", f"remove it, {remedy}") from None
        raise
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeCacheError(path, "it is not a regular file", f"remove it, {remedy}")
        _check_owner(path, info, owners, "file", remedy)
        _check_closed(path, info, "file", remedy)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, info


def write_new_file(parent: OpenDir, name: str, data: bytes, mode: int) -> None:
    """Write the file `name` in `parent`, which must not exist yet (O_EXCL), then give it `mode`."""
    descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=parent.fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)


def write_private_file(path: Path, data: bytes, mode: int) -> None:
    """Write a new file that did not exist before (O_EXCL, not through a symbolic link), then
    give it `mode`."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600)
    try:
        with os.fdopen(descriptor, "wb", closefd=False) as stream:
            stream.write(data)
        os.fchmod(descriptor, mode)
    finally:
        os.close(descriptor)
