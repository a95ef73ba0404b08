"""Where the kernel cache lives, and what to do when that place cannot be used.

The configured directory is SOFTJIT_CACHE_DIR, else $XDG_CACHE_HOME/softjit, else ~/.cache/softjit.
It is created with mode 0700 and must be ours and closed to writes by others (else
UnsafeCacheError). When it cannot be created or written (read-only, full, a path under a file),
this process switches to a private temporary directory with a SoftjitWarning instead of failing.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

from .errors import SoftjitWarning
from .files import check_private, make_private_dir

CACHE_ENV_VARIABLE = "SOFTJIT_CACHE_DIR"

CACHE_DIR_REMEDY = f"or set {CACHE_ENV_VARIABLE} to a directory only you can write"

_fallback_lock = threading.Lock()
#: configured directory -> the private temporary directory this process uses in its place.
_fallback_dirs: dict[Path, Path] = {}


def configured_cache_dir() -> Path:
    """The cache directory the environment asks for (it may not exist yet)."""
    explicit = os.environ.get(CACHE_ENV_VARIABLE)
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg_cache_home = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
    if xdg_cache_home and os.path.isabs(xdg_cache_home):
        return Path(xdg_cache_home) / "softjit"
    return Path.home() / ".cache" / "softjit"


def fallback_dir(configured: Path) -> Path | None:
    """The temporary directory standing in for `configured` in this process, if there is one."""
    with _fallback_lock:
        return _fallback_dirs.get(configured)


def active_cache_dir() -> Path:
    """The directory to read and write kernels in now: the configured one, created and checked,
    or this process's fallback for it.

    Raises UnsafeCacheError when the configured directory exists but others could write to it.
    """
    configured = configured_cache_dir()
    replacement = fallback_dir(configured)
    if replacement is not None:
        return replacement
    try:
        make_private_dir(configured)
    except OSError as error:
        return use_fallback(configured, error)
    # The configured root may be a link the user made on purpose; what it points at is checked.
    check_private(configured, directory=True, remedy=CACHE_DIR_REMEDY, follow_symlinks=True)
    return configured


def use_fallback(configured: Path, error: OSError) -> Path:
    """Switch this process from `configured` to a private temporary directory, with a warning."""
    with _fallback_lock:
        existing = _fallback_dirs.get(configured)
        if existing is not None:
            return existing
        replacement = Path(tempfile.mkdtemp(prefix="softjit-cache-"))  # mkdtemp makes it 0700
        _fallback_dirs[configured] = replacement
    # Loaded kernels survive the removal: the loader's mapping keeps the file's inode alive.
    atexit.register(shutil.rmtree, replacement, ignore_errors=True)
    warnings.warn(
        f"softjit cannot use the cache directory {configured} ({error}); kernels are built in "
        f"{replacement} for this process only and rebuilt next time. "
        f"Make it writable, or set {CACHE_ENV_VARIABLE} to a writable directory.",
        SoftjitWarning,
        stacklevel=3,
    )
    return replacement
