"""Ahead-of-time built kernels, so that hosts without binutils can still run softjit.

A prebuilt directory holds `<name>.so` files and a `manifest.json` mapping each name to
{"asm_sha256": sha256 of the exact assembly text it was built from, "so_sha256": sha256 of the .so,
"toolchain": the assembler and linker that built it}. A prebuilt object is used only when its
asm_sha256 equals that of the assembly wanted now and the .so still has its recorded hash, so a
stale or damaged prebuilt is never loaded. It is loaded from the descriptor that was checked,
like a cached kernel (see files.py for the rules).

Directories searched, in order: $SOFTJIT_PREBUILT_DIR, then `prebuilt/` inside the installed
softjit.generated package (filled by `python -m softjit build` when a wheel is made).
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from softjit.runtime.errors import SoftjitWarning, UnsafeCacheError
from softjit.runtime.files import (
    OpenDir,
    open_trusted_dir,
    open_trusted_file,
    read_fd,
    sha256_fd,
    sha256_file,
    sha256_text,
    trusted_owners,
    write_private_file,
)

PREBUILT_ENV_VARIABLE = "SOFTJIT_PREBUILT_DIR"
MANIFEST_NAME = "manifest.json"

#: Module names become file names, so they may not hold path separators or start with a dot.
MODULE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

_PREBUILT_REMEDY = f"or unset {PREBUILT_ENV_VARIABLE} / reinstall softjit"


def check_module_name(name: str) -> str:
    if not MODULE_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"kernel module name {name!r} must match {MODULE_NAME_PATTERN.pattern} "
            f"(it becomes a file name)"
        )
    return name


def _explicit_dir() -> Path | None:
    explicit = os.environ.get(PREBUILT_ENV_VARIABLE)
    return Path(os.path.abspath(os.path.expanduser(explicit))) if explicit else None


@functools.lru_cache(maxsize=None)
def _packaged_dir() -> Path | None:
    """prebuilt/ inside the installed softjit.generated package (looked up once, from the
    package's own file: importlib.resources costs milliseconds). Inside a zipped install the
    path is no directory, and prebuilt_dirs leaves it out."""
    import softjit.generated

    location = getattr(softjit.generated, "__file__", None)
    return Path(location).parent / "prebuilt" if location else None


def prebuilt_dirs() -> list[Path]:
    """The prebuilt directories that exist, in the order they are searched."""
    candidates = []
    explicit = _explicit_dir()
    if explicit is not None:
        candidates.append(explicit)
    packaged = _packaged_dir()
    # Only a real directory can be dlopened from; a zipped install has none to offer.
    if packaged is not None:
        candidates.append(packaged)
    return [directory for directory in candidates if directory.is_dir()]


def read_manifest(directory: Path) -> dict[str, dict[str, str]]:
    """The manifest of `directory`; an absent or unreadable one counts as empty (with a warning
    for a damaged one, since a prebuilt install that silently stops working is hard to notice)."""
    path = directory / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring prebuilt manifest {path}: {error}", SoftjitWarning, stacklevel=2)
        return {}
    manifest = _parse_manifest(text)
    if manifest is None:
        warnings.warn(f"ignoring prebuilt manifest {path}: not a JSON object", SoftjitWarning,
                      stacklevel=2)
        return {}
    return manifest


def _parse_manifest(text: str) -> dict[str, dict[str, str]] | None:
    """The entries of a manifest's text, or None when it is not a JSON object."""
    try:
        manifest = json.loads(text)
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    return {name: entry for name, entry in manifest.items() if isinstance(entry, dict)}


def open_prebuilt(name: str, asm_text: str | None = None, *,
                  asm_sha256: str | None = None) -> tuple[int, Path, str] | None:
    """(descriptor, path, sha256) of the verified prebuilt .so for exactly this assembly text
    (or the text whose sha256 is asm_sha256), or None. The caller owns the descriptor and loads
    through it (see cache.verified_object).

    The directory is walked from / like the cache (files.open_trusted_dir), except that it may
    belong to root as well as to this user: an installed package usually does. The manifest and
    the .so are opened without following links relative to that verified directory and checked
    through their descriptors. An unsafe $SOFTJIT_PREBUILT_DIR raises UnsafeCacheError; an unsafe
    directory inside the installed package is skipped with a warning (softjit then builds).
    """
    check_module_name(name)
    if asm_sha256 is None:
        asm_sha256 = sha256_text(asm_text)
    explicit = _explicit_dir()
    for directory in prebuilt_dirs():
        # A cheap look by path first: only a directory that claims this exact kernel is verified,
        # so an unrelated or stale prebuilt directory costs nothing and never raises.
        entry = read_manifest(directory).get(name)
        if entry is None or entry.get("asm_sha256") != asm_sha256:
            continue
        try:
            verified = open_trusted_dir(directory.absolute(), remedy=_PREBUILT_REMEDY,
                                        create=False, final_owners=trusted_owners())
        except UnsafeCacheError as error:
            if directory == explicit:
                raise
            warnings.warn(f"not loading prebuilt kernels: {error}", SoftjitWarning, stacklevel=2)
            continue
        with verified:
            found = _open_verified_object(verified, name, asm_sha256)
        if found is not None:
            return found
    return None


def _open_verified_object(directory: OpenDir, name: str,
                          asm_sha256: str) -> tuple[int, Path, str] | None:
    owners = trusted_owners()
    try:
        manifest_fd, _info = open_trusted_file(directory, MANIFEST_NAME, owners=owners,
                                               remedy=_PREBUILT_REMEDY)
    except FileNotFoundError:
        return None
    try:
        manifest = _parse_manifest(read_fd(manifest_fd).decode("utf-8", "replace"))
    finally:
        os.close(manifest_fd)
    entry = manifest.get(name) if manifest is not None else None
    if entry is None or entry.get("asm_sha256") != asm_sha256:
        return None  # it changed since the look by path: only what was verified counts
    so_path = directory.path / f"{name}.so"
    try:
        so_fd, _info = open_trusted_file(directory, so_path.name, owners=owners,
                                         remedy=_PREBUILT_REMEDY)
    except FileNotFoundError:
        warnings.warn(f"prebuilt {so_path} is listed in its manifest but missing",
                      SoftjitWarning, stacklevel=3)
        return None
    so_sha256 = sha256_fd(so_fd)
    if so_sha256 != entry.get("so_sha256"):
        os.close(so_fd)
        warnings.warn(f"prebuilt {so_path} does not match its manifest's so_sha256; "
                      f"not loading it", SoftjitWarning, stacklevel=3)
        return None
    return so_fd, so_path, so_sha256


def count_prebuilt(directory: Path) -> int:
    """How many objects the manifest of `directory` lists."""
    return len(read_manifest(directory))


def build_prebuilt(modules: Mapping[str, str], out_dir: Path) -> Path:
    """Assemble every {name: asm_text} module into `out_dir` with its manifest; returns the
    manifest's path. Files are replaced by rename, so a process that has an older object loaded
    keeps running on it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    import tempfile

    from softjit.runtime.toolchain import assemble_shared_object, toolchain_id

    toolchain = toolchain_id()
    manifest: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="softjit-prebuild-") as workdir:
        for name, asm_text in sorted(modules.items()):
            check_module_name(name)
            module_workdir = Path(workdir) / name
            module_workdir.mkdir()
            built = assemble_shared_object(asm_text, module_workdir / "kernel.so",
                                           workdir=module_workdir)
            _replace_file(out_dir / f"{name}.so", built.read_bytes(), mode=0o755)
            manifest[name] = {
                "asm_sha256": sha256_text(asm_text),
                "so_sha256": sha256_file(out_dir / f"{name}.so"),
                "toolchain": toolchain,
            }
    manifest_text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _replace_file(out_dir / MANIFEST_NAME, manifest_text.encode("utf-8"), mode=0o644)
    return out_dir / MANIFEST_NAME


def _replace_file(path: Path, data: bytes, mode: int) -> None:
    import secrets

    staging = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write_private_file(staging, data, mode)
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink()
