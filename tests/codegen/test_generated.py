"""The committed generated/ folder is exactly what the code generates now, byte for byte."""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softjit.codegen import generate

GENERATED_DIR = Path(__file__).resolve().parents[2] / "generated"
REMEDY = "run python -m softjit generate and commit generated/"
EXPECTED = generate.expected_files()


def _first_differences(committed: str, expected: str, lines: int = 20) -> str:
    diff = difflib.unified_diff(committed.splitlines(), expected.splitlines(),
                                "committed", "generated now", lineterm="")
    return "\n".join(list(diff)[:lines])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_file_is_fresh(name: str) -> None:
    path = GENERATED_DIR / name
    assert path.is_file(), f"{path} is missing; {REMEDY}"
    committed = path.read_bytes()
    expected = EXPECTED[name].encode("utf-8")
    assert committed == expected, (
        f"{path} is not what the code generates now; {REMEDY}\n"
        + _first_differences(committed.decode("utf-8", "replace"), EXPECTED[name]))


def test_no_stale_or_unknown_assembly_is_committed() -> None:
    extra = generate.stale_files(GENERATED_DIR, EXPECTED) + generate.foreign_files(
        GENERATED_DIR, EXPECTED)
    assert not extra, f"no registered variant produces {[p.name for p in extra]}; {REMEDY}"


def test_manifest_names_every_variant_with_its_hash() -> None:
    manifest = json.loads(EXPECTED[generate.MANIFEST_NAME])
    listed = [k["name"] for k in manifest["kernels"]] + [e["name"] for e in manifest["entries"]]
    assert sorted(listed) == sorted(
        name.removesuffix(".S") for name in EXPECTED if name.endswith(".S"))


def test_generation_does_not_depend_on_hash_seed() -> None:
    source = ("import sys; from softjit.codegen import generate; "
              "sys.stdout.write(generate.expected_files()['manifest.json'])")
    for seed in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                                env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
        assert result.stdout == EXPECTED[generate.MANIFEST_NAME], f"PYTHONHASHSEED={seed}"


def test_write_generated_reports_and_removes_only_what_changed(tmp_path: Path) -> None:
    first = generate.write_generated(tmp_path)
    assert sorted(p.name for p in first.written) == sorted(EXPECTED)
    assert first.removed == [] and first.foreign == []
    assert generate.write_generated(tmp_path).changed == []

    some_kernel = next(name for name in EXPECTED if name.endswith(".S"))
    (tmp_path / some_kernel).write_text("# edited by hand\n")
    # A variant generated earlier and retired since: the manifest on disk still lists it.
    manifest = json.loads((tmp_path / generate.MANIFEST_NAME).read_text())
    manifest["kernels"].append({"name": "f32_retired__avx2", "isa": "avx2", "op": "vexp",
                                "sha256": "0" * 64})
    (tmp_path / generate.MANIFEST_NAME).write_text(json.dumps(manifest))
    (tmp_path / "f32_retired__avx2.S").write_text("# no longer registered\n")
    (tmp_path / "my_kernel.S").write_text("# the user's own\n")
    (tmp_path / "notes.txt").write_text("not ours\n")
    report = generate.write_generated(tmp_path)

    assert sorted(p.name for p in report.written) == sorted([some_kernel, generate.MANIFEST_NAME])
    assert [p.name for p in report.removed] == ["f32_retired__avx2.S"]
    assert [p.name for p in report.foreign] == ["my_kernel.S"]
    assert not (tmp_path / "f32_retired__avx2.S").exists()
    assert (tmp_path / "my_kernel.S").read_text() == "# the user's own\n"
    assert (tmp_path / "notes.txt").exists()
    assert (tmp_path / some_kernel).read_text() == EXPECTED[some_kernel]
    assert (tmp_path / generate.MANIFEST_NAME).read_text() == EXPECTED[generate.MANIFEST_NAME]


def test_without_a_manifest_no_assembly_is_removed(tmp_path: Path) -> None:
    retired = tmp_path / "f32_retired__avx2.S"
    retired.write_text("# not listed by any manifest here\n")
    report = generate.write_generated(tmp_path)
    assert report.removed == [] and report.foreign == [retired]
    assert retired.exists()
