"""The assembly index: a warm start finds its objects by hash without generating assembly, and a
changed generator (another fingerprint) generates and rebuilds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from softjit.runtime import asm_index

# A child process that loads the entry module and the auto drivers through the generated entry,
# reporting whether any module's assembly was generated (Module.build of any variant, or the
# entry module) and where each object came from.
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from softjit.codegen import entries, variants
    built = []
    for cls in {type(v) for v in variants.VARIANTS}:
        original = cls.build
        cls.build = lambda self, original=original: (built.append(self.name), original(self))[1]
    original_entries = entries.build_module
    entries.build_module = lambda: (built.append("entries"), original_entries())[1]
    import softjit
    from softjit.runtime import cache
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    y = softjit.softmax(x)
    softjit.exp(x)
    assert abs(float(y.sum()) - 1) < 1e-5
    sources = {name: record.source for name, record in cache._records.items()}
    print(json.dumps({"built": built, "sources": sources}))
""")


def run_child(cache_dir, **environment):
    env = {**os.environ, "SOFTJIT_CACHE_DIR": str(cache_dir), **environment}
    env.pop("SOFTJIT_PREBUILT_DIR", None)
    result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_warm_start_generates_no_assembly(tmp_path):
    cold = run_child(tmp_path / "cache")
    assert cold["built"], "the first process had to generate"
    assert set(cold["sources"].values()) <= {"built", "cache"}
    warm = run_child(tmp_path / "cache")
    assert warm["built"] == []
    assert set(warm["sources"]) == set(cold["sources"])
    assert set(warm["sources"].values()) == {"cache"}


def test_an_index_of_another_generator_is_not_used(tmp_path):
    run_child(tmp_path / "cache")
    (index,) = (tmp_path / "cache" / "asm-index").glob("*.json")
    document = json.loads(index.read_text())
    document["generator"] = "0" * 64  # as if written by a different generator
    index.write_text(json.dumps(document))
    assert run_child(tmp_path / "cache")["built"]


def test_a_damaged_index_is_ignored(tmp_path):
    run_child(tmp_path / "cache")
    (index,) = (tmp_path / "cache" / "asm-index").glob("*.json")
    index.write_text("{ not json")
    again = run_child(tmp_path / "cache")
    assert again["built"]  # regenerated, and the index is whole again
    assert json.loads(index.read_text())["modules"]


def test_an_index_naming_another_modules_hash_regenerates(tmp_path):
    run_child(tmp_path / "cache")
    (index,) = (tmp_path / "cache" / "asm-index").glob("*.json")
    document = json.loads(index.read_text())
    entry_module, kernel = "cpython_entries", next(n for n in document["modules"] if "vexp" in n)
    document["modules"][kernel]["asm_sha256"] = document["modules"][entry_module]["asm_sha256"]
    index.write_text(json.dumps(document))
    result = run_child(tmp_path / "cache")  # would fail to find exp's kernel in that object
    assert result["built"] == [kernel]


def test_the_fingerprint_covers_every_generator_source(monkeypatch, tmp_path):
    import shutil

    copies = {}
    for package in ("softjit.codegen", "softjit.templates"):
        source = asm_index._package_dir(package)
        copies[package] = str(tmp_path / package)
        shutil.copytree(source, copies[package], ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(asm_index, "_package_dir", lambda package: copies[package])
    monkeypatch.setattr(asm_index, "_memo", {})
    before = asm_index.generator_fingerprint()
    for package, relative in (("softjit.codegen", "kernels/softmax.py"),
                              ("softjit.templates", "kernel.S.j2")):
        path = os.path.join(copies[package], relative)
        with open(path, "a") as stream:
            stream.write("\n# changed\n")
        asm_index._memo.clear()
        after = asm_index.generator_fingerprint()
        assert after != before, relative
        before = after
    (tmp_path / "softjit.codegen" / "notes.txt").write_text("not a source file")
    with open(os.path.join(copies["softjit.codegen"], "emulator", "machine.py"), "a") as stream:
        stream.write("\n# the emulator runs assembly, it does not generate any\n")
    asm_index._memo.clear()
    assert asm_index.generator_fingerprint() == before


@pytest.mark.parametrize("field, value", [("format", 99), ("version", "0.0.0")])
def test_an_index_of_another_format_or_version_reads_empty(tmp_path, field, value):
    path = tmp_path / "index.json"
    text = asm_index.document({"m": ("a" * 64, "void f(void);")})
    assert asm_index._read(path.with_name("missing.json")) == {}
    path.write_text(text)
    assert asm_index._read(path) == {"m": {"asm_sha256": "a" * 64, "cdef": "void f(void);"}}
    document = json.loads(text)
    document[field] = value
    path.write_text(json.dumps(document))
    assert asm_index._read(path) == {}


def test_cache_clear_removes_the_index(tmp_path, monkeypatch):
    from softjit.runtime import cache_admin

    run_child(tmp_path / "cache")
    assert list((tmp_path / "cache" / "asm-index").glob("*.json"))
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(tmp_path / "cache"))
    report = cache_admin.cache_clear()
    assert not list((tmp_path / "cache" / "asm-index").glob("*.json"))
    assert not [p for p in report.kept if "asm-index" in str(p)]
    assert run_child(tmp_path / "cache")["built"]  # and the next process generates again
