"""The committed generated/ folder: one NAME.S per registered variant, kernels.h and manifest.json.

`python -m softjit generate` writes it and tests/codegen/test_generated.py checks that the committed
copy is what the code generates now, byte for byte. Everything here is a pure function of the
registry, so every machine produces the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import variants
from .emit import REGENERATE, render_header, render_module

HEADER_NAME = "kernels.h"
MANIFEST_NAME = "manifest.json"
ASSEMBLY_SUFFIX = ".S"


def default_out_dir() -> Path:
    """The directory of the softjit.generated package (the repository's generated/ folder)."""
    from .. import generated

    return Path(generated.__file__).parent


def expected_files() -> dict[str, str]:
    """{file name: text} of everything generated/ must hold, in registry order."""
    modules = [v.build() for v in variants.VARIANTS]
    files = {}
    kernels = []
    for variant, module in zip(variants.VARIANTS, modules):
        text = render_module(module)
        files[variant.name + ASSEMBLY_SUFFIX] = text
        kernels.append({"name": variant.name, "isa": variant.isa, "op": variant.op,
                        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()})
    files[HEADER_NAME] = render_header(modules)
    manifest = {"regenerate": REGENERATE, "kernels": sorted(kernels, key=lambda k: k["name"])}
    files[MANIFEST_NAME] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return files


def stale_files(out_dir: Path, expected: dict[str, str]) -> list[Path]:
    """The .S files in out_dir that no registered variant produces any more."""
    return sorted(p for p in Path(out_dir).glob("*" + ASSEMBLY_SUFFIX) if p.name not in expected)


def write_generated(out_dir: Path | None = None) -> list[Path]:
    """Bring out_dir up to date; return the files written or removed (unchanged ones are left
    alone, so their mtimes do not move)."""
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    changed = []
    for name, text in expected.items():
        path = out_dir / name
        data = text.encode("utf-8")
        if path.is_file() and path.read_bytes() == data:
            continue
        staging = path.with_name(f".{name}.tmp")
        staging.write_bytes(data)
        os.replace(staging, path)
        changed.append(path)
    for path in stale_files(out_dir, expected):
        path.unlink()
        changed.append(path)
    return changed
