"""The kernel cache: hits, layout, permission checks, damaged entries, unusable directories,
info and clear. Every fault is made for real on the filesystem."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pytest

from softjit.runtime import cache, cache_admin, cache_build, cachedir
from softjit.runtime.errors import SoftjitWarning, ToolchainMissingError, UnsafeCacheError


def entry_of(cache_dir: Path, asm: str) -> Path:
    key = cache.cache_key(asm)
    return cache_dir / key[:2] / key


def meta_of(entry: Path) -> dict:
    return json.loads((entry / "meta.json").read_text())


def test_first_use_builds_then_hits(cache_dir, make_add_asm, call_add) -> None:
    asm = make_add_asm(1)
    path = cache.get_shared_object("adder", asm)
    assert cache.last_shared_object("adder").source == "built"
    assert call_add(path, 2, 3) == 6
    built_mtime = path.stat().st_mtime_ns

    again = cache.get_shared_object("adder", asm)
    assert again == path
    assert cache.last_shared_object("adder").source == "cache"
    assert again.stat().st_mtime_ns == built_mtime


def test_entry_layout_and_modes(cache_dir, make_add_asm) -> None:
    asm = make_add_asm()
    path = cache.get_shared_object("adder", asm)
    entry = entry_of(cache_dir, asm)
    assert path.parent == entry
    meta = meta_of(entry)
    assert meta["key"] == entry.name and meta["so_name"] == path.name
    assert meta["so_sha256"] == cache.last_shared_object("adder").so_sha256
    assert meta["so_size"] == path.stat().st_size
    assert "GNU assembler" in meta["toolchain"]
    for directory in (cache_dir, entry.parent, entry):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) & 0o022 == 0


def test_key_covers_text_and_version_not_toolchain(make_add_asm, monkeypatch) -> None:
    asm = make_add_asm()
    key = cache.cache_key(asm)
    assert cache.cache_key(asm) == key
    assert cache.cache_key(asm + "\n") != key
    monkeypatch.setattr(cache, "softjit_version", lambda: "9.9.9")
    assert cache.cache_key(asm) != key
    monkeypatch.undo()
    monkeypatch.setattr(cache_build, "toolchain_id", lambda: "GNU assembler 9.99 | GNU ld 9.99")
    assert cache.cache_key(asm) == key


def test_cached_kernel_loads_after_the_toolchain_is_gone(monkeypatch, empty_path_dir, make_add_asm,
                                                        call_add) -> None:
    asm = make_add_asm(4)
    built = cache.get_shared_object("adder", asm)
    monkeypatch.setenv("PATH", str(empty_path_dir))
    assert cache.get_shared_object("adder", asm) == built
    assert call_add(built, 2, 3) == 9


def test_cache_dir_location(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SOFTJIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cachedir.configured_cache_dir() == tmp_path / "xdg" / "softjit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cachedir.configured_cache_dir() == tmp_path / "home" / ".cache" / "softjit"


def test_world_writable_cache_dir_is_refused(cache_dir, make_add_asm) -> None:
    cache_dir.mkdir(mode=0o700)
    cache_dir.chmod(0o777)
    with pytest.raises(UnsafeCacheError) as raised:
        cache.get_shared_object("adder", make_add_asm())
    assert "0777" in str(raised.value) and f"chmod 700 {cache_dir}" in str(raised.value)
    assert "SOFTJIT_CACHE_DIR" in str(raised.value)
    assert not list(cache_dir.iterdir())  # nothing was built there either


def test_group_writable_entry_dir_is_refused(cache_dir, make_add_asm) -> None:
    asm = make_add_asm()
    cache.get_shared_object("adder", asm)
    entry = entry_of(cache_dir, asm)
    entry.chmod(0o770)
    with pytest.raises(UnsafeCacheError, match="lets group or others write"):
        cache.get_shared_object("adder", asm)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_cache_dir_of_another_user_is_refused(cache_dir, make_add_asm) -> None:
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, 12345, 12345)
    with pytest.raises(UnsafeCacheError, match="owned by uid 12345"):
        cache.get_shared_object("adder", make_add_asm())


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_shared_object_of_another_user_is_refused(cache_dir, make_add_asm) -> None:
    asm = make_add_asm()
    path = cache.get_shared_object("adder", asm)
    os.chown(path, 12345, 12345)
    with pytest.raises(UnsafeCacheError, match="owned by uid 12345"):
        cache.get_shared_object("adder", asm)


def test_symlinked_shared_object_is_refused(cache_dir, make_add_asm, tmp_path) -> None:
    asm = make_add_asm()
    path = cache.get_shared_object("adder", asm)
    elsewhere = tmp_path / "elsewhere.so"
    path.rename(elsewhere)
    path.symlink_to(elsewhere)
    with pytest.raises(UnsafeCacheError, match="symbolic link"):
        cache.get_shared_object("adder", asm)


def truncate(path: Path) -> None:
    path.chmod(0o600)
    with open(path, "r+b") as stream:
        stream.truncate(path.stat().st_size // 2)


def flip_bytes(path: Path) -> None:
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    for offset in range(0x1000, 0x1010):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))  # same size: only the hash can tell


def delete(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize("damage", [truncate, flip_bytes, delete])
def test_damaged_shared_object_is_rebuilt(cache_dir, make_add_asm, call_add, damage) -> None:
    asm = make_add_asm(2)
    first = cache.get_shared_object("adder", asm)
    damage(first)
    rebuilt = cache.get_shared_object("adder", asm)
    assert cache.last_shared_object("adder").source == "built"
    assert rebuilt != first  # a new file name: the damaged one was never overwritten in place
    assert not first.exists()
    assert call_add(rebuilt, 2, 3) == 7
    assert meta_of(rebuilt.parent)["so_name"] == rebuilt.name


@pytest.mark.parametrize(
    "meta_text",
    [
        "",
        "{not json",
        '["a list"]',
        json.dumps({"format": 1, "key": "0" * 64, "so_name": "kernel-0000000000000000.so",
                    "so_sha256": "0" * 64, "so_size": 1}),
    ],
    ids=["empty", "garbage", "list", "other-key"],
)
def test_damaged_meta_is_rebuilt(cache_dir, make_add_asm, call_add, meta_text) -> None:
    asm = make_add_asm(3)
    cache.get_shared_object("adder", asm)
    (entry_of(cache_dir, asm) / "meta.json").write_text(meta_text)
    rebuilt = cache.get_shared_object("adder", asm)
    assert cache.last_shared_object("adder").source == "built"
    assert call_add(rebuilt, 2, 3) == 8


def test_meta_cannot_point_outside_its_entry(cache_dir, make_add_asm, tmp_path) -> None:
    asm = make_add_asm()
    path = cache.get_shared_object("adder", asm)
    meta = meta_of(path.parent)
    outside = tmp_path / "kernel-0123456789abcdef.so"
    outside.write_bytes(path.read_bytes())
    meta["so_name"] = f"../../../{outside.name}"
    (path.parent / "meta.json").write_text(json.dumps(meta))
    rebuilt = cache.get_shared_object("adder", asm)
    assert rebuilt.parent == path.parent
    assert cache.last_shared_object("adder").source == "built"


def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path, monkeypatch, make_add_asm,
                                                        call_add) -> None:
    # Running as root ignores permission bits, so make the directory impossible to create:
    # a path under a regular file fails for everyone.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(blocker / "cache"))
    asm = make_add_asm(4)
    with pytest.warns(SoftjitWarning, match="cannot use the cache directory") as warned:
        path = cache.get_shared_object("adder", asm)
    assert str(blocker / "cache") in str(warned[0].message)
    assert not path.is_relative_to(blocker)
    assert call_add(path, 2, 3) == 9
    assert cache_admin.cache_info()["fallback"] is True

    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        # The fallback is remembered: it serves hits, and the warning is not repeated.
        assert cache.get_shared_object("adder", asm) == path
    assert not later
    assert cache.last_shared_object("adder").source == "cache"


def test_cache_dir_that_fails_while_publishing_falls_back(cache_dir, make_add_asm,
                                                          call_add) -> None:
    cache_dir.mkdir(mode=0o700)
    (cache_dir / "tmp").write_text("the staging directory cannot be created")
    with pytest.warns(SoftjitWarning, match="Not a directory|File exists"):
        path = cache.get_shared_object("adder", make_add_asm(5))
    assert not path.is_relative_to(cache_dir)
    assert call_add(path, 2, 3) == 10


def test_missing_toolchain_with_cold_cache(monkeypatch, empty_path_dir, make_add_asm) -> None:
    monkeypatch.setenv("PATH", str(empty_path_dir))
    with pytest.raises(ToolchainMissingError, match=r"apt-get install binutils"):
        cache.get_shared_object("adder", make_add_asm())


def test_bad_module_names_are_refused(make_add_asm) -> None:
    for name in ("../evil", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="module name"):
            cache.get_shared_object(name, make_add_asm())


def test_info_and_clear(cache_dir, make_add_asm, call_add) -> None:
    assert cache_admin.cache_info()["entries"] == 0
    paths = [cache.get_shared_object(f"adder{i}", make_add_asm(i)) for i in range(3)]
    info = cache_admin.cache_info()
    assert info["dir"] == str(cache_dir) and info["fallback"] is False
    assert info["entries"] == 3 and info["problem"] is None
    assert info["bytes"] >= sum(path.stat().st_size for path in paths)

    from softjit.runtime.bindings import load_library

    _ffi, lib = load_library("adder-loaded", make_add_asm(40), "int softjit_test_add(int, int);")
    assert cache_admin.cache_clear().removed == 4
    assert cache_admin.cache_info()["entries"] == 0
    assert not any(path.exists() for path in paths)
    assert lib.softjit_test_add(1, 1) == 42  # still mapped after its file was removed


def test_info_reports_an_unsafe_cache_without_raising(cache_dir) -> None:
    cache_dir.mkdir()
    cache_dir.chmod(0o777)
    assert "chmod 700" in cache_admin.cache_info()["problem"]
    with pytest.raises(UnsafeCacheError):
        cache_admin.cache_clear()


def test_build_works_when_no_lock_can_be_taken(cache_dir, make_add_asm, call_add) -> None:
    cache_dir.mkdir(mode=0o700)
    (cache_dir / "locks").write_text("lock files cannot be created under a file")
    path = cache.get_shared_object("adder", make_add_asm(6))
    assert cache.last_shared_object("adder").source == "built"
    assert path.is_relative_to(cache_dir)  # the lock is an economy, not a reason to fall back
    assert call_add(path, 2, 3) == 11
