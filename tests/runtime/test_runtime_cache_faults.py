"""Faults that need more than a damaged file: builders killed part-way (in child processes) and
cache directories on a filesystem that is full or read-only (real tmpfs mounts, root only)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from softjit.runtime import cache
from softjit.runtime.errors import SoftjitWarning

# Runs one build in a child that dies (os._exit, like a kill: no cleanup, no finally blocks) at
# the point named by argv[2].
DYING_BUILDER = r"""
import os, sys
from pathlib import Path
from softjit.runtime import cache, cache_build

asm = Path(sys.argv[1]).read_text()
point = sys.argv[2]
real_write = cache_build.write_new_file

def write_half_of_the_so(directory, name, data, mode):
    if name.endswith(".so"):
        real_write(directory, name, data[: len(data) // 2], mode)
        os._exit(3)
    real_write(directory, name, data, mode)

def die(*args, **kwargs):
    os._exit(3)

if point == "writing-so":
    cache_build.write_new_file = write_half_of_the_so
elif point == "before-meta":
    cache_build.os.replace = die  # the .so is in the entry; meta.json would be replaced next
elif point == "assembling":
    cache_build.assemble = die  # while holding the per-key lock
cache.get_shared_object("adder", asm)
os._exit(0)
"""


@pytest.mark.parametrize("point", ["writing-so", "before-meta", "assembling"])
def test_killed_builder_leaves_nothing_loadable(cache_dir, tmp_path, make_add_asm, call_add,
                                               run_python, point) -> None:
    asm = make_add_asm(11)
    asm_file = tmp_path / "adder.S"
    asm_file.write_text(asm)
    child = run_python(DYING_BUILDER, str(asm_file), point)
    assert child.returncode == 3, child.stderr

    key = cache.cache_key(asm)
    entry = cache_dir / key[:2] / key
    assert not (entry / "meta.json").exists()
    if point == "writing-so":
        leftovers = list((cache_dir / "tmp").glob("*/kernel-*.so"))
        assert len(leftovers) == 1  # the half-written .so, left where no lookup goes
    if point == "before-meta":
        assert len(list(entry.glob("kernel-*.so"))) == 1  # published .so, never referenced

    started = time.monotonic()
    path = cache.get_shared_object("adder", asm)
    assert time.monotonic() - started < 10  # a dead builder's lock died with it
    assert cache.last_shared_object("adder").source == "built"
    assert path.parent == entry
    assert call_add(path, 2, 3) == 16

    # A later process finds the repaired entry and does not build again.
    check = run_python(
        "import sys; from pathlib import Path; from softjit.runtime import cache;"
        "cache.get_shared_object('adder', Path(sys.argv[1]).read_text());"
        "print(cache.last_shared_object('adder').source)",
        str(asm_file),
    )
    assert check.stdout.strip() == "cache", check.stderr


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount a small tmpfs (mode 0700, owned by us) and unmount it afterwards; skip where
    mounting is not allowed (not root, or a container without CAP_SYS_ADMIN)."""
    mounts = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        # Lazy: a kernel this process dlopened from the mount keeps it busy until exit.
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_full_cache_filesystem_falls_back(tmpfs, monkeypatch, make_add_asm, call_add) -> None:
    mount_point = tmpfs("size=64k,mode=0700")
    with pytest.raises(OSError):
        (mount_point / "filler").write_bytes(bytes(1 << 20))  # fills it: ENOSPC
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(mount_point / "cache"))
    with pytest.warns(SoftjitWarning, match="No space left on device"):
        path = cache.get_shared_object("adder", make_add_asm(12))
    assert not path.is_relative_to(mount_point)
    assert call_add(path, 2, 3) == 17


def test_read_only_cache_serves_hits_and_falls_back_for_builds(
    tmpfs, monkeypatch, make_add_asm, call_add
) -> None:
    mount_point = tmpfs("size=1m,mode=0700")
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(mount_point))
    cached_asm = make_add_asm(13)
    cached_path = cache.get_shared_object("cached", cached_asm)
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)

    assert cache.get_shared_object("cached", cached_asm) == cached_path
    assert cache.last_shared_object("cached").source == "cache"

    with pytest.warns(SoftjitWarning, match="Read-only file system"):
        new_path = cache.get_shared_object("new", make_add_asm(14))
    assert not new_path.is_relative_to(mount_point)
    assert call_add(new_path, 2, 3) == 19
