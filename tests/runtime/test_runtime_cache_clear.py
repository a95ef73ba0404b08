"""`cache clear` removes only what softjit made and refuses what is not a softjit cache; loaders
survive clears running beside them; the cache commands fail in one line; a relative
SOFTJIT_CACHE_DIR names one directory for the whole process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from softjit.runtime import cache, cache_admin
from softjit.runtime.errors import NotSoftjitCacheError

TWO_HOURS = 2 * 3600
KERNELS = 20  # per loader process in the concurrent-clear test


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def plant_user_files(directory: Path) -> list[Path]:
    """Files a user keeps in a directory, some under the names softjit uses for its own parts."""
    key_like = "ab" + "0" * 62
    files = {
        "notes.txt": "my notes",
        "locks/door.txt": "not a lock file",
        f"locks/{key_like}.lock.bak": "almost a lock file",
        "tmp/download.part": "old download",
        "tmp/build-report/summary.txt": "an old build report of mine",
        "ab/readme.txt": "a folder named like a shard",
        f"ab/{key_like}/meta.json.orig": "named like an entry",
    }
    planted = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        planted.append(path)
    for path in planted:
        age(path, TWO_HOURS)
    age(directory / "tmp" / "build-report", TWO_HOURS)
    return planted


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "softjit", *args], capture_output=True,
                          text=True, env=env or dict(os.environ), timeout=120)


def test_clear_refuses_a_directory_that_is_not_a_softjit_cache(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"  # SOFTJIT_CACHE_DIR=$HOME
    home.mkdir(mode=0o700)
    planted = plant_user_files(home)
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(home))
    before = sorted(p.relative_to(home) for p in home.rglob("*"))

    with pytest.raises(NotSoftjitCacheError) as raised:
        cache_admin.cache_clear()
    assert f"{home} is not a softjit cache" in str(raised.value)
    assert "'notes.txt'" in str(raised.value)

    cli = run_cli("cache", "clear")
    assert cli.returncode == 2, cli
    assert cli.stdout == ""
    assert len(cli.stderr.strip().splitlines()) == 1 and "Traceback" not in cli.stderr
    assert "nothing removed" in cli.stderr and "not a softjit cache" in cli.stderr
    assert sorted(p.relative_to(home) for p in home.rglob("*")) == before
    assert all(path.exists() for path in planted)


def test_kernels_are_not_written_into_a_foreign_directory(tmp_path, monkeypatch, make_add_asm,
                                                          call_add) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "notes.txt").write_text("my notes")
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(home))
    from softjit.runtime.errors import SoftjitWarning

    with pytest.warns(SoftjitWarning, match="is not a softjit cache"):
        path = cache.get_shared_object("adder", make_add_asm(2))
    assert not path.is_relative_to(home)
    assert call_add(path, 1, 1) == 4
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]


def test_clear_removes_only_what_softjit_made(cache_dir, make_add_asm) -> None:
    paths = [cache.get_shared_object(f"adder{i}", make_add_asm(i)) for i in range(3)]
    planted = plant_user_files(cache_dir)
    stray = paths[0].parent / "my-copy.txt"  # a user's file inside an entry
    stray.write_text("keep me")
    stale_build = cache_dir / "tmp" / "build-0123456789abcdef"  # a builder that died long ago
    stale_build.mkdir(mode=0o700)
    (stale_build / "kernel-0123456789abcdef.so").write_bytes(b"half")
    age(stale_build, TWO_HOURS)
    fresh_build = cache_dir / "tmp" / "build-fedcba9876543210"  # a build in flight
    fresh_build.mkdir(mode=0o700)

    report = cache_admin.cache_clear()

    assert report.directories == [cache_dir]
    assert report.removed == 2  # the third entry holds a file that is not softjit's
    assert not any(path.exists() for path in paths)
    assert not list((cache_dir / "locks").glob("*.lock"))
    assert not stale_build.exists() and fresh_build.exists()
    assert all(path.exists() for path in planted) and stray.exists()
    assert (cache_dir / "CACHEDIR.TAG").exists()
    kept = set(report.kept)
    assert stray in kept and cache_dir / "notes.txt" in kept
    assert cache_dir / "locks" / "door.txt" in kept


def test_cli_clear_reports_what_it_kept(cache_dir, make_add_asm) -> None:
    cache.get_shared_object("adder", make_add_asm())
    (cache_dir / "notes.txt").write_text("mine")
    result = run_cli("cache", "clear")
    assert result.returncode == 0, result.stderr
    assert f"removed 1 cache entries from {cache_dir}" in result.stdout
    assert f"kept 1 paths softjit did not create: {cache_dir / 'notes.txt'}" in result.stdout
    assert (cache_dir / "notes.txt").exists()


@pytest.mark.parametrize("command", ["clear", "info"])
def test_cache_commands_fail_in_one_line(cache_dir, command) -> None:
    cache_dir.mkdir()
    cache_dir.chmod(0o777)
    result = run_cli("cache", command)
    if command == "info":  # info reports the problem and succeeds
        assert result.returncode == 0, result.stderr
        assert "cache problem:" in result.stdout and "chmod 700" in result.stdout
        return
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"refusing to load kernels from {cache_dir}" in result.stderr


# A loader: loads its own fresh kernels one after another (each load builds or finds its entry
# while clears run) and checks every value; prints a JSON summary.
LOADER = r"""
import json, sys, time
from softjit.runtime.bindings import load_library

template, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
failures, values = [], 0
for offset in range(first, first + count):
    try:
        _ffi, lib = load_library(f"adder{offset}", template.format(offset=offset),
                                 "int softjit_test_add(int a, int b);")
        value = lib.softjit_test_add(1, 1)
        if value != offset + 2:
            failures.append(f"offset {offset}: got {value}")
        values += 1
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}")
print(json.dumps({"values": values, "failures": failures}))
"""

# A clearer: runs cache_clear in a loop until told to stop.
CLEARER = r"""
import json, os, sys
from softjit.runtime import cache_admin

stop, failures, clears = sys.argv[1], [], 0
while not os.path.exists(stop):
    try:
        cache_admin.cache_clear()
        clears += 1
    except Exception as error:
        failures.append(f"{type(error).__name__}: {error}")
print(json.dumps({"clears": clears, "failures": failures}))
"""


def test_loaders_survive_concurrent_clears(cache_dir, tmp_path, make_add_asm) -> None:
    """Processes loading kernels while others run cache_clear in a loop: every call returns the
    right value (a cleared entry is rebuilt or its descriptor already held), and no clear raises
    (e.g. "Directory not empty" while a loader publishes into an entry being removed)."""
    cache_dir.mkdir(mode=0o700)
    # Kernels shared by all loaders: each is built by one and looked up by the others, so clears
    # hit entries that are being published and read at the same time.
    template = make_add_asm(0).replace("+ 0]", "+ {offset}]")
    assert "{offset}" in template
    stop = tmp_path / "stop"
    clearers = [subprocess.Popen([sys.executable, "-c", CLEARER, str(stop)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    loaders = [subprocess.Popen([sys.executable, "-c", LOADER, template, "0", str(KERNELS)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(3)]
    try:
        loaded = [json.loads(child.communicate(timeout=300)[0]) for child in loaders]
    finally:
        stop.touch()
        cleared = [json.loads(child.communicate(timeout=60)[0] or "{}") for child in clearers]
    assert all(child.returncode == 0 for child in loaders + clearers)
    assert [summary["failures"] for summary in loaded] == [[]] * len(loaders)
    assert [summary["values"] for summary in loaded] == [KERNELS] * len(loaders)
    assert [summary["failures"] for summary in cleared] == [[]] * len(clearers)
    assert all(summary["clears"] > 0 for summary in cleared)


RELATIVE_CACHE = r"""
import os, sys
from softjit.runtime import cache_admin
from softjit.runtime.bindings import load_library

first, second = sys.argv[1], sys.argv[2]
template = sys.argv[3]
os.chdir(first)
load_library("one", template.format(offset=1), "int softjit_test_add(int a, int b);")
os.chdir(second)
load_library("two", template.format(offset=2), "int softjit_test_add(int a, int b);")
print(cache_admin.cache_info()["dir"])
"""


def test_relative_cache_dir_is_resolved_once(tmp_path, make_add_asm) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    template = make_add_asm(0).replace("+ 0]", "+ {offset}]")
    environment = {**os.environ, "SOFTJIT_CACHE_DIR": "relative-cache"}
    result = subprocess.run([sys.executable, "-c", RELATIVE_CACHE, str(first), str(second),
                             template], capture_output=True, text=True, env=environment,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(first / "relative-cache")
    assert len(list((first / "relative-cache").glob("*/*/kernel-*.so"))) == 2
    assert not (second / "relative-cache").exists()  # no second cache after the chdir
