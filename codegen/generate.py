"""The committed generated/ folder: one NAME.S per registered variant, the CPython entry module
(cpython_entries.S, see entries.py), kernels.h and manifest.json.

`python -m softjit generate` writes it and tests/codegen/test_generated.py checks that the committed
copy is what the code generates now, byte for byte. Everything here is a pure function of the
registry, so every machine produces the same bytes.

The folder may hold other files (a user's own kernels, notes): generation writes only the files it
generates and removes only .S files that the manifest.json it wrote before lists and no
registered variant produces any more. Other .S files it leaves alone and reports.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from softjit.codegen import entries, variants
from softjit.codegen.emit import REGENERATE
from softjit.codegen.pipeline import render_header, render_module

HEADER_NAME = "kernels.h"
MANIFEST_NAME = "manifest.json"
ASSEMBLY_SUFFIX = ".S"
PROJECT_FILE = "pyproject.toml"
PROJECT_NAME_LINE = 'name = "softjit"'


@dataclass
class GenerateReport:
    """What write_generated did to a directory."""

    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)  # .S files not ours, left alone

    @property
    def changed(self) -> list[Path]:
        return self.written + self.removed


def package_dir() -> Path:
    """The directory of the softjit.generated package in use."""
    from softjit import generated

    return Path(generated.__file__).parent


def source_checkout_dir() -> Path | None:
    """The generated/ folder of the source checkout softjit runs from (an editable install or
    the repository on sys.path), or None when softjit runs from an installed package."""
    directory = package_dir()
    project = directory.parent / PROJECT_FILE
    try:
        is_checkout = PROJECT_NAME_LINE in project.read_text(encoding="utf-8")
    except OSError:
        return None
    if not (is_checkout and (directory.parent / "codegen" / "generate.py").is_file()):
        return None
    return directory


def default_out_dir() -> Path | None:
    """Where `softjit generate` writes without --out: the checkout's generated/, or None."""
    return source_checkout_dir()


def expected_files() -> dict[str, str]:
    """{file name: text} of everything generated/ must hold, in registry order."""
    registered = tuple(variants.REGISTRY)
    modules = [v.build() for v in registered]
    files = {}
    kernels = []
    for variant, module in zip(registered, modules):
        text = render_module(module)
        files[variant.name + ASSEMBLY_SUFFIX] = text
        kernels.append({"name": variant.name, "isa": variant.isa, "op": variant.op,
                        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()})
    files[HEADER_NAME] = render_header(modules)
    entry_module = entries.build_module()
    entry_text = render_module(entry_module)
    files[entry_module.name + ASSEMBLY_SUFFIX] = entry_text
    manifest = {"regenerate": REGENERATE, "kernels": sorted(kernels, key=lambda k: k["name"]),
                "entries": [{"name": entry_module.name, "imports": list(entry_module.imports),
                             "sha256": hashlib.sha256(entry_text.encode("utf-8")).hexdigest()}]}
    files[MANIFEST_NAME] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return files


def manifest_kernel_names(out_dir: Path) -> set[str]:
    """The kernel names the manifest.json in out_dir lists (none when it is absent or is not a
    manifest this generator wrote)."""
    try:
        manifest = json.loads((Path(out_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))
        return ({str(kernel["name"]) for kernel in manifest["kernels"]}
                | {str(entry["name"]) for entry in manifest.get("entries", ())})
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def stale_files(out_dir: Path, expected: dict[str, str]) -> list[Path]:
    """The .S files in out_dir that out_dir's manifest lists but no registered variant produces
    any more: generated earlier, so generation removes them."""
    listed = {name + ASSEMBLY_SUFFIX for name in manifest_kernel_names(out_dir)}
    return sorted(p for p in Path(out_dir).glob("*" + ASSEMBLY_SUFFIX)
                  if p.name in listed and p.name not in expected)


def foreign_files(out_dir: Path, expected: dict[str, str]) -> list[Path]:
    """The .S files in out_dir that neither a registered variant nor out_dir's manifest names."""
    listed = {name + ASSEMBLY_SUFFIX for name in manifest_kernel_names(out_dir)}
    return sorted(p for p in Path(out_dir).glob("*" + ASSEMBLY_SUFFIX)
                  if p.name not in listed and p.name not in expected)


def write_generated(out_dir: Path) -> GenerateReport:
    """Bring out_dir up to date. Unchanged files are left alone (their mtimes do not move). The
    manifest is replaced last, after the stale .S files are gone, so a run interrupted at any
    point still finds every .S file it generated named by the manifest on disk."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    report = GenerateReport(removed=stale_files(out_dir, expected),
                            foreign=foreign_files(out_dir, expected))
    for name in expected:
        if name != MANIFEST_NAME:
            _write_if_changed(out_dir / name, expected[name], report)
    for path in report.removed:
        path.unlink()
    _write_if_changed(out_dir / MANIFEST_NAME, expected[MANIFEST_NAME], report)
    return report


def _write_if_changed(path: Path, text: str, report: GenerateReport) -> None:
    data = text.encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(data)
    os.replace(staging, path)
    report.written.append(path)
