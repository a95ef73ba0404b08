"""Ahead-of-time built kernels, so that hosts without binutils can still run softjit.

A prebuilt directory holds `<name>.so` files and a `manifest.json` mapping each name to
{"asm_sha256": sha256 of the exact assembly text it was built from, "so_sha256": sha256 of the .so,
"toolchain": the assembler and linker that built it}. A prebuilt object is used only when its
asm_sha256 equals that of the assembly wanted now and the .so still has its recorded hash, so a
stale or damaged prebuilt is never loaded.

Directories searched, in order: $SOFTJIT_PREBUILT_DIR, then `prebuilt/` inside the installed
softjit.generated package (filled by `python -m softjit build` when a wheel is made).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import secrets
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

from .errors import SoftjitWarning
from .files import check_private, sha256_file, sha256_text, write_private_file
from .toolchain import assemble_shared_object, toolchain_id

PREBUILT_ENV_VARIABLE = "SOFTJIT_PREBUILT_DIR"
MANIFEST_NAME = "manifest.json"

#: Module names become file names, so they may not hold path separators or start with a dot.
MODULE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

# An installed package is usually owned by root (system site-packages) rather than by the user.
_TRUSTED_OWNERS = {os.geteuid(), 0}
_PREBUILT_REMEDY = f"or unset {PREBUILT_ENV_VARIABLE} / reinstall softjit"


def check_module_name(name: str) -> str:
    if not MODULE_NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"kernel module name {name!r} must match {MODULE_NAME_PATTERN.pattern} "
            f"(it becomes a file name)"
        )
    return name


def prebuilt_dirs() -> list[Path]:
    """The prebuilt directories that exist, in the order they are searched."""
    candidates = []
    explicit = os.environ.get(PREBUILT_ENV_VARIABLE)
    if explicit:
        candidates.append(Path(explicit).expanduser())
    packaged = importlib.resources.files("softjit.generated") / "prebuilt"
    # Only a real directory can be dlopened from; a zipped install has none to offer.
    if isinstance(packaged, Path):
        candidates.append(packaged)
    return [directory for directory in candidates if directory.is_dir()]


def read_manifest(directory: Path) -> dict[str, dict[str, str]]:
    """The manifest of `directory`; an absent or unreadable one counts as empty (with a warning
    for a damaged one, since a prebuilt install that silently stops working is hard to notice)."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring prebuilt manifest {path}: {error}", SoftjitWarning, stacklevel=2)
        return {}
    if not isinstance(manifest, dict):
        warnings.warn(f"ignoring prebuilt manifest {path}: not a JSON object", SoftjitWarning)
        return {}
    return {name: entry for name, entry in manifest.items() if isinstance(entry, dict)}


def find_prebuilt(name: str, asm_text: str) -> Path | None:
    """The verified prebuilt .so for exactly this assembly text, or None."""
    check_module_name(name)
    asm_sha256 = sha256_text(asm_text)
    for directory in prebuilt_dirs():
        entry = read_manifest(directory).get(name)
        if entry is None or entry.get("asm_sha256") != asm_sha256:
            continue
        so_path = directory / f"{name}.so"
        check_private(directory, directory=True, remedy=_PREBUILT_REMEDY,
                      owners=_TRUSTED_OWNERS, follow_symlinks=True)
        if not so_path.is_file():
            warnings.warn(f"prebuilt {so_path} is listed in its manifest but missing",
                          SoftjitWarning, stacklevel=2)
            continue
        check_private(so_path, directory=False, remedy=_PREBUILT_REMEDY, owners=_TRUSTED_OWNERS)
        if sha256_file(so_path) != entry.get("so_sha256"):
            warnings.warn(f"prebuilt {so_path} does not match its manifest's so_sha256; "
                          f"not loading it", SoftjitWarning, stacklevel=2)
            continue
        return so_path
    return None


def count_prebuilt(directory: Path) -> int:
    """How many objects the manifest of `directory` lists."""
    return len(read_manifest(directory))


def build_prebuilt(modules: Mapping[str, str], out_dir: Path) -> Path:
    """Assemble every {name: asm_text} module into `out_dir` with its manifest; returns the
    manifest's path. Files are replaced by rename, so a process that has an older object loaded
    keeps running on it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    staging = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        write_private_file(staging, data, mode)
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink()
