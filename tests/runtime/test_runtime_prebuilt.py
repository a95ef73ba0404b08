"""Prebuilt objects: the layout build_prebuilt writes, and the load order prebuilt -> cache -> build
(with the toolchain hidden from PATH to prove that a prebuilt object needs none)."""

from __future__ import annotations

import json

import pytest

from softjit.runtime import cache, cache_admin, prebuilt
from softjit.runtime.errors import SoftjitWarning, ToolchainMissingError, UnsafeCacheError
from softjit.runtime.files import sha256_file, sha256_text


@pytest.fixture
def prebuilt_dir(tmp_path, monkeypatch):
    directory = tmp_path / "prebuilt"
    monkeypatch.setenv("SOFTJIT_PREBUILT_DIR", str(directory))
    return directory


def test_build_prebuilt_layout(tmp_path, make_add_asm) -> None:
    modules = {"adder_one": make_add_asm(1), "adder_two": make_add_asm(2)}
    manifest_path = prebuilt.build_prebuilt(modules, tmp_path / "out")
    assert manifest_path == tmp_path / "out" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert sorted(manifest) == ["adder_one", "adder_two"]
    for name, asm in modules.items():
        so_path = tmp_path / "out" / f"{name}.so"
        assert manifest[name]["asm_sha256"] == sha256_text(asm)
        assert manifest[name]["so_sha256"] == sha256_file(so_path)
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_prebuilt_loads_without_a_toolchain(prebuilt_dir, make_add_asm, call_add, monkeypatch,
                                            empty_path_dir) -> None:
    asm = make_add_asm(5)
    prebuilt.build_prebuilt({"adder": asm}, prebuilt_dir)
    monkeypatch.setenv("PATH", str(empty_path_dir))
    path = cache.get_shared_object("adder", asm)
    assert path == prebuilt_dir / "adder.so"
    assert cache.last_shared_object("adder").source == "prebuilt"
    assert call_add(path, 2, 3) == 10
    info = cache_admin.cache_info()
    assert info["entries"] == 0
    assert {"dir": str(prebuilt_dir), "count": 1} in info["prebuilt"]


def test_prebuilt_for_other_assembly_is_not_used(prebuilt_dir, make_add_asm, call_add,
                                                 monkeypatch, empty_path_dir) -> None:
    prebuilt.build_prebuilt({"adder": make_add_asm(5)}, prebuilt_dir)
    wanted = make_add_asm(6)
    with monkeypatch.context() as hidden:
        hidden.setenv("PATH", str(empty_path_dir))
        with pytest.raises(ToolchainMissingError):
            cache.get_shared_object("adder", wanted)
    path = cache.get_shared_object("adder", wanted)
    assert cache.last_shared_object("adder").source == "built"
    assert call_add(path, 2, 3) == 11


def test_prebuilt_comes_before_the_cache(prebuilt_dir, make_add_asm) -> None:
    asm = make_add_asm()
    cache.get_shared_object("adder", asm)
    assert cache.last_shared_object("adder").source == "built"
    prebuilt.build_prebuilt({"adder": asm}, prebuilt_dir)
    assert cache.get_shared_object("adder", asm) == prebuilt_dir / "adder.so"
    assert cache.last_shared_object("adder").source == "prebuilt"


def test_damaged_prebuilt_is_skipped_with_a_warning(prebuilt_dir, make_add_asm, call_add) -> None:
    asm = make_add_asm(7)
    prebuilt.build_prebuilt({"adder": asm}, prebuilt_dir)
    so_path = prebuilt_dir / "adder.so"
    so_path.write_bytes(so_path.read_bytes()[:100])
    with pytest.warns(SoftjitWarning, match="does not match its manifest"):
        path = cache.get_shared_object("adder", asm)
    assert cache.last_shared_object("adder").source == "built"
    assert call_add(path, 2, 3) == 12


def test_unreadable_manifest_is_ignored_with_a_warning(prebuilt_dir, make_add_asm) -> None:
    prebuilt_dir.mkdir()
    (prebuilt_dir / "manifest.json").write_text("{truncated")
    with pytest.warns(SoftjitWarning, match="ignoring prebuilt manifest"):
        cache.get_shared_object("adder", make_add_asm())
    assert cache.last_shared_object("adder").source == "built"


def test_world_writable_prebuilt_dir_is_refused(prebuilt_dir, make_add_asm) -> None:
    asm = make_add_asm()
    prebuilt.build_prebuilt({"adder": asm}, prebuilt_dir)
    prebuilt_dir.chmod(0o777)
    with pytest.raises(UnsafeCacheError, match="SOFTJIT_PREBUILT_DIR"):
        cache.get_shared_object("adder", asm)


def test_rebuilding_prebuilt_replaces_files_by_rename(prebuilt_dir, make_add_asm) -> None:
    prebuilt.build_prebuilt({"adder": make_add_asm(1)}, prebuilt_dir)
    before = (prebuilt_dir / "adder.so").stat().st_ino
    prebuilt.build_prebuilt({"adder": make_add_asm(2)}, prebuilt_dir)
    # A new inode: a process that mapped the old file keeps its bytes.
    assert (prebuilt_dir / "adder.so").stat().st_ino != before


def test_bad_names_are_refused(tmp_path, make_add_asm) -> None:
    with pytest.raises(ValueError, match="module name"):
        prebuilt.build_prebuilt({"../escape": make_add_asm()}, tmp_path / "out")
