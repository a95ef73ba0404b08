"""Where the kernel cache lives, how it is opened safely, and what to do when it cannot be used.

The configured directory is SOFTJIT_CACHE_DIR, else $XDG_CACHE_HOME/softjit, else ~/.cache/softjit.
A relative SOFTJIT_CACHE_DIR is made absolute against the working directory the first time this
process uses it, and that answer is kept: a later os.chdir does not move the cache.

The directory is opened by open_trusted_dir (files.py): it and every directory above it must be
safe from other users, else UnsafeCacheError. It is created with mode 0700 and marked as softjit's
with a CACHEDIR.TAG file; an existing directory that holds anything else and has no such mark is
not a softjit cache, and softjit neither writes kernels into it nor clears it. When the directory
cannot be created or written (read-only, full, a path under a file) or is not a softjit cache,
this process switches to a private temporary directory with a SoftjitWarning instead of failing.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import warnings
from pathlib import Path

from softjit.runtime.errors import NotSoftjitCacheError, SoftjitWarning
from softjit.runtime.files import OpenDir, open_trusted_dir, write_new_file
from softjit.runtime.forksafe import ForkSafeLock

CACHE_ENV_VARIABLE = "SOFTJIT_CACHE_DIR"

CACHE_DIR_REMEDY = f"or set {CACHE_ENV_VARIABLE} to a directory only you can write"

#: The mark of a softjit cache directory. The first line is the Cache Directory Tagging
#: signature, which also tells backup tools that the directory can be rebuilt.
TAG_NAME = "CACHEDIR.TAG"
TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file marks a cache of kernels built by softjit; `softjit cache clear` empties it.\n"
)

#: What softjit itself puts at the top of its cache directory (cache_build.py and tuning.py).
STAGING_DIR_NAME, LOCKS_DIR_NAME, TUNING_FILE_NAME = "tmp", "locks", "tuning.json"
SHARD_PATTERN = re.compile(r"[0-9a-f]{2}")
_TUNING_TEMPORARY_PATTERN = re.compile(r"\.tuning-.*\.tmp")
ASM_INDEX_DIR_NAME = "asm-index"  # remembered assembly hashes (runtime/asm_index.py)
_OWN_TOP_LEVEL_NAMES = {TAG_NAME, STAGING_DIR_NAME, LOCKS_DIR_NAME, TUNING_FILE_NAME,
                        ASM_INDEX_DIR_NAME}

# An entry: <cache dir>/<key[:2]>/<key>/ holding kernel-<16 hex>.so and meta.json (cache.py reads
# it, cache_build.py writes it, cache_admin.py clears it).
#: Bump when the entry layout or meta.json changes, so old entries are simply never looked up.
FORMAT_VERSION = 2
KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
SO_NAME_PATTERN = re.compile(r"kernel-[0-9a-f]{16}\.so")
META_NAME = "meta.json"
#: <cache dir>/locks/<key>.lock: the per-key build lock.
LOCK_NAME_PATTERN = re.compile(r"[0-9a-f]{64}\.lock")
#: <cache dir>/tmp/build-...: staging directories, build-<16 hex> now, build-<8 chars> from
#: tempfile.mkdtemp before.
STAGING_NAME_PATTERN = re.compile(r"build-[A-Za-z0-9_]{8,16}")

_state_lock = ForkSafeLock()
#: configured directory -> the private temporary directory this process uses in its place.
_fallback_dirs: dict[Path, Path] = {}
#: (SOFTJIT_CACHE_DIR, XDG_CACHE_HOME, HOME) -> the absolute directory they named at first use.
_resolved_dirs: dict[tuple[str | None, str | None, str | None], Path] = {}



def configured_cache_dir() -> Path:
    """The absolute cache directory the environment asks for (it may not exist yet)."""
    explicit = os.environ.get(CACHE_ENV_VARIABLE) or None
    xdg_cache_home = os.environ.get("XDG_CACHE_HOME") or None
    settings = (explicit, xdg_cache_home, os.environ.get("HOME"))
    with _state_lock:
        resolved = _resolved_dirs.get(settings)
        if resolved is None:
            resolved = _resolve(explicit, xdg_cache_home)
            _resolved_dirs[settings] = resolved
    return resolved


def _resolve(explicit: str | None, xdg_cache_home: str | None) -> Path:
    if explicit:
        # abspath also folds "..", so the same setting always names the same directory.
        return Path(os.path.abspath(os.path.expanduser(explicit)))
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    if xdg_cache_home and os.path.isabs(xdg_cache_home):
        return Path(xdg_cache_home) / "softjit"
    return Path(os.path.abspath(Path.home() / ".cache" / "softjit"))


def fallback_dir(configured: Path) -> Path | None:
    """The temporary directory standing in for `configured` in this process, if there is one."""
    with _state_lock:
        return _fallback_dirs.get(configured)


def is_own_top_level_name(name: str) -> bool:
    """Whether softjit puts files or directories of this name at the top of its cache."""
    return (name in _OWN_TOP_LEVEL_NAMES or SHARD_PATTERN.fullmatch(name) is not None
            or _TUNING_TEMPORARY_PATTERN.fullmatch(name) is not None)


def has_softjit_tag(root: OpenDir) -> bool:
    try:
        descriptor = os.open(TAG_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                             dir_fd=root.fd)
    except OSError:
        return False
    try:
        return os.read(descriptor, len(TAG_TEXT) + 1) == TAG_TEXT.encode("ascii")
    except OSError:
        return False
    finally:
        os.close(descriptor)


def check_softjit_cache(root: OpenDir) -> None:
    """Raise NotSoftjitCacheError unless `root` carries softjit's CACHEDIR.TAG or holds nothing
    but names softjit uses (an empty directory, or a cache made before the tag existed)."""
    if has_softjit_tag(root):
        return
    foreign = sorted(name for name in os.listdir(root.fd) if not is_own_top_level_name(name))
    if foreign:
        raise NotSoftjitCacheError(root.path, foreign, TAG_NAME, CACHE_ENV_VARIABLE)


def mark_softjit_cache(root: OpenDir) -> None:
    """Make sure `root` is a softjit cache and carries the tag (NotSoftjitCacheError if not)."""
    check_softjit_cache(root)
    if not has_softjit_tag(root):
        # FileExistsError: another process tagged it meanwhile. Other errors (a read-only or
        # full filesystem) leave an untagged cache that still serves what it holds; its writes
        # fail later and fall back on their own.
        with contextlib.suppress(OSError):
            write_new_file(root, TAG_NAME, TAG_TEXT.encode("ascii"), 0o644)


def open_cache_root(*, create: bool = True) -> OpenDir:
    """The cache directory to read and write kernels in now, opened and verified: the configured
    one (created and tagged when `create`), or this process's fallback for it.

    Raises UnsafeCacheError when the configured directory, or any directory above it, could be
    changed by another user: that is not worked around, since it may be an attack.
    """
    configured = configured_cache_dir()
    replacement = fallback_dir(configured)
    if replacement is None:
        try:
            root = open_trusted_dir(configured, remedy=CACHE_DIR_REMEDY, create=create)
        except OSError as error:
            if not create:
                raise
            replacement = use_fallback(configured, str(error))
        else:
            try:
                if create:
                    mark_softjit_cache(root)
                else:
                    check_softjit_cache(root)
                return root
            except NotSoftjitCacheError as error:
                root.close()
                if not create:
                    raise
                replacement = use_fallback(configured, str(error))
            except BaseException:
                root.close()
                raise
    return open_trusted_dir(replacement, remedy=CACHE_DIR_REMEDY, create=False)


def active_cache_dir() -> Path:
    """The path of the directory open_cache_root would give now (created, checked, tagged)."""
    with open_cache_root() as root:
        return root.path


def use_fallback(configured: Path, reason: str) -> Path:
    """Switch this process from `configured` to a private temporary directory, with a warning."""
    with _state_lock:
        existing = _fallback_dirs.get(configured)
        if existing is not None:
            return existing
        import shutil  # (here: a fallback directory is rare, and these cost a millisecond
        import tempfile  # at import)

        replacement = Path(tempfile.mkdtemp(prefix="softjit-cache-"))  # mkdtemp makes it 0700
        _fallback_dirs[configured] = replacement
    # Loaded kernels survive the removal: their descriptors and mappings keep the inodes alive.
    atexit.register(shutil.rmtree, replacement, ignore_errors=True)
    warnings.warn(
        f"softjit cannot use the cache directory {configured} ({reason}); kernels are built in "
        f"{replacement} for this process only and rebuilt next time. "
        f"Make it writable, or set {CACHE_ENV_VARIABLE} to a writable directory.",
        SoftjitWarning,
        stacklevel=3,
    )
    return replacement
