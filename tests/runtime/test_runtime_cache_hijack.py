"""Another local user tries to get code loaded into a softjit process through the kernel cache.

The attacker is a real process running as uid 65534 (nobody), racing a victim process (this test
runs as root) that builds and loads kernels in a loop. The attacker's shared object exports the
victim's symbol returning 666 and carries an ELF constructor that creates a marker file the moment
it is loaded, so loading it is seen even if the symbol is never called.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from softjit.runtime import cache

NOBODY = 65534
ATTACK_SECONDS = 3.0
FOREIGN_VALUE = 666

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="running the attacker as another user needs root (as in CI)")

ADD_CDEF = "int softjit_test_add(int a, int b);"

_VICTIM_TEMPLATE = """\
# victim {tag}
.intel_syntax noprefix
.text
.globl softjit_test_add
.type softjit_test_add, @function
softjit_test_add:
    lea eax, [rdi + rsi + {offset}]
    ret
.section .note.GNU-stack,"",@progbits
"""

# The foreign object: softjit_test_add returns 666, and a constructor (an .init_array entry) opens
# the marker path with O_WRONLY | O_CREAT, so the file exists as soon as ld.so runs the object.
_FOREIGN_SOURCE = """\
.intel_syntax noprefix
.text
.globl softjit_test_add
.type softjit_test_add, @function
softjit_test_add:
    mov eax, {value}
    ret
.type announce, @function
announce:
    mov eax, 2
    lea rdi, [rip + marker]
    mov esi, 0x41
    mov edx, 0x1a4
    syscall
    ret
.section .init_array, "aw"
.balign 8
.quad announce
.section .rodata
marker:
    .asciz "{marker}"
.section .note.GNU-stack,"",@progbits
"""

# Runs as root with the test's softjit: loads every kernel of the list through the loader (the path
# every public function takes) and prints one JSON line per kernel.
VICTIM = r"""
import json, sys, time
from softjit.runtime.errors import UnsafeCacheError
from softjit.runtime.bindings import load_library

config = json.loads(sys.argv[1])
deadline = time.monotonic() + config["seconds"]
for index, asm in enumerate(config["asms"]):
    if time.monotonic() > deadline:
        break
    try:
        _ffi, lib = load_library(f"victim{index}", asm, config["cdef"])
        result = {"index": index, "value": lib.softjit_test_add(1, 1)}
    except UnsafeCacheError as error:
        result = {"index": index, "refused": str(error)}
    except Exception as error:
        result = {"index": index, "error": f"{type(error).__name__}: {error}"}
    print(json.dumps(result), flush=True)
"""

def attack(config: dict) -> dict:
    """The attacker, run as nobody in a forked child (see fork_as_nobody).

    Owns a tree of 0777 directories with the victim's shard and entry names pre-created (each
    entry a link to one directory it watches) and a pool of copies of the foreign object. Whenever
    the victim starts assembling (a softjit-build-* directory appears in its TMPDIR), it swaps the
    cache directory for a link to that tree, replaces every .so the victim publishes there with a
    foreign one, and swaps back. Between builds it tries the rest: renaming the cache's
    subdirectories and linking them to its own, planting 0777 directories where the victim looks.
    Every step may fail: where the directories are safe, they all do."""
    base, tree, scratch = config["base"], config["tree"], config["victim_tmp"]
    cache_dir = os.path.join(base, "cache")
    held = os.path.join(base, "cache.real")
    deadline = time.monotonic() + config["seconds"]
    os.umask(0)
    with open(config["foreign"], "rb") as stream:
        foreign = stream.read()

    def attempt(action, *args) -> bool:
        try:
            action(*args)
            return True
        except OSError:
            return False

    for sub in ("", "tmp", "locks", "E", "pool"):
        attempt(os.mkdir, os.path.join(tree, sub), 0o777)
    for key in config["keys"]:
        attempt(os.mkdir, os.path.join(tree, key[:2]), 0o777)
        attempt(os.symlink, os.path.join(tree, "E"), os.path.join(tree, key[:2], key))
    pool = []
    for number in range(400):
        path = os.path.join(tree, "pool", f"foreign-{number}")
        with open(path, "wb") as stream:
            stream.write(foreign)
        os.chmod(path, 0o777)
        pool.append(path)
    summary = {"swaps": 0, "replacements": 0, "planted": 0}
    replaced: set[str] = set()

    def replace_published(watch_seconds: float) -> None:
        end = time.monotonic() + watch_seconds
        while time.monotonic() < end:
            try:
                names = os.listdir(os.path.join(tree, "E"))
            except OSError:
                return
            fresh = [n for n in names if n.startswith("kernel-") and n not in replaced]
            for name in fresh:
                if pool and attempt(os.rename, pool.pop(), os.path.join(tree, "E", name)):
                    replaced.add(name)
                    summary["replacements"] += 1
            if fresh:
                time.sleep(0.005)  # let the victim's dlopen happen before swapping back
                return

    def other_vectors() -> None:
        for sub in ("tmp", "locks"):
            target = os.path.join(cache_dir, sub)
            if attempt(os.rename, target, target + ".away"):
                attempt(os.symlink, os.path.join(tree, sub), target)
            summary["planted"] += attempt(os.mkdir, target, 0o777)
        for key in config["keys"][:4]:
            shard = os.path.join(cache_dir, key[:2])
            summary["planted"] += attempt(os.mkdir, shard, 0o777)
            entry = os.path.join(shard, key)
            if attempt(os.rename, entry, entry + ".away"):
                attempt(os.symlink, os.path.join(tree, "E"), entry)
            summary["planted"] += attempt(os.mkdir, entry, 0o777)

    seen: set[str] = set()
    while time.monotonic() < deadline and not os.path.exists(config["stop"]):
        try:
            builds = {n for n in os.listdir(scratch) if n.startswith("softjit-build-")}
        except OSError:
            builds = set()
        if not builds - seen:
            other_vectors()
            time.sleep(0.0002)
            continue
        seen |= builds
        if attempt(os.rename, cache_dir, held):
            summary["swaps"] += 1
            attempt(os.symlink, tree, cache_dir)
            replace_published(0.5)
            attempt(os.unlink, cache_dir)
            attempt(os.rename, held, cache_dir)
    return summary


def fork_as_nobody(function, config: dict) -> tuple[int, int]:
    """Run function(config) in a forked child that first becomes uid/gid 65534 with no
    supplementary groups; returns (pid, read end of a pipe carrying its JSON result)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = json.dumps(function(config)).encode()
            os.write(write_end, result)
            status = 0
        except BaseException as error:  # report anything, then leave without cleanup
            with contextlib.suppress(OSError):
                os.write(write_end, json.dumps({"error": repr(error)}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def build_object(source: str, workdir: Path, name: str) -> Path:
    source_path = workdir / f"{name}.S"
    object_path = workdir / f"{name}.o"
    so_path = workdir / f"{name}.so"
    source_path.write_text(source)
    subprocess.run(["as", "--64", "-o", str(object_path), str(source_path)], check=True)
    subprocess.run(["ld", "-shared", "-z", "noexecstack", "-o", str(so_path), str(object_path)],
                   check=True)
    return so_path


@pytest.fixture
def arena():
    """A directory outside pytest's private tmp tree (which nobody cannot enter), removed after."""
    directory = Path(tempfile.mkdtemp(prefix="softjit-hijack-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def run_attack(arena: Path, parent_mode: int) -> tuple[list[dict], dict, Path]:
    """Victim and attacker racing for ATTACK_SECONDS; returns the victim's results, the
    attacker's summary and the marker path the foreign object would create."""
    base = arena / "shared"
    base.mkdir()
    base.chmod(parent_mode)  # e.g. 0o777: a shared folder; 0o1777: like /tmp
    victim_tmp = arena / "victim-tmp"  # the victim's TMPDIR, a sticky world-writable one
    victim_tmp.mkdir()
    victim_tmp.chmod(0o1777)
    marker = arena / "foreign-code-ran"
    build_dir = arena / "build"
    build_dir.mkdir()
    foreign = build_object(_FOREIGN_SOURCE.format(value=FOREIGN_VALUE, marker=marker),
                           build_dir, "foreign")
    foreign.chmod(0o644)

    tag = uuid.uuid4().hex
    asms = [_VICTIM_TEMPLATE.format(tag=f"{tag}-{index}", offset=index) for index in range(200)]
    keys = [cache.cache_key(asm) for asm in asms]
    environment = {**os.environ, "SOFTJIT_CACHE_DIR": str(base / "cache"),
                   "TMPDIR": str(victim_tmp)}
    attacker_config = {"base": str(base), "tree": str(base / "attacker-tree"),
                       "victim_tmp": str(victim_tmp), "foreign": str(foreign), "keys": keys,
                       "seconds": ATTACK_SECONDS + 1.0, "stop": str(arena / "stop")}
    attacker_pid, attacker_pipe = fork_as_nobody(attack, attacker_config)
    try:
        time.sleep(0.3)  # let the attacker set up its tree first
        victim = subprocess.run(
            [sys.executable, "-c", VICTIM,
             json.dumps({"asms": asms, "cdef": ADD_CDEF, "seconds": ATTACK_SECONDS})],
            capture_output=True, text=True, env=environment, timeout=120)
        (arena / "stop").touch()
        with os.fdopen(attacker_pipe, "rb") as stream:
            attacker_out = stream.read()  # EOF when the attacker exits
        _pid, status = os.waitpid(attacker_pid, 0)
        attacker_pid = 0
    finally:
        if attacker_pid:
            os.kill(attacker_pid, 9)
            os.waitpid(attacker_pid, 0)
    assert victim.returncode == 0, victim.stderr
    summary = json.loads(attacker_out)
    assert os.waitstatus_to_exitcode(status) == 0, summary
    results = [json.loads(line) for line in victim.stdout.splitlines()]
    assert results, victim.stderr
    return results, summary, marker


def assert_nothing_foreign(results: list[dict], marker: Path) -> None:
    assert not marker.exists(), "the attacker's object was loaded (its constructor ran)"
    for result in results:
        assert result.get("value") != FOREIGN_VALUE, f"foreign code answered: {result}"
        assert "error" not in result, f"a load failed other than by refusal: {result}"
        if "value" in result:
            assert result["value"] == 2 + result["index"], result


def test_attacker_cannot_get_code_loaded_through_a_shared_parent(arena) -> None:
    """The cache's parent is a 0777 folder without the sticky bit: the attacker can rename and
    replace anything in it. The victim must refuse the cache (UnsafeCacheError naming the parent
    and the fix) rather than load anything, and the attacker's object must never run."""
    results, attacker, marker = run_attack(arena, 0o777)
    assert_nothing_foreign(results, marker)
    refusals = [result["refused"] for result in results if "refused" in result]
    assert refusals, "the victim used a cache whose parent anyone may write"
    parent = arena / "shared"
    assert all(f"refusing to load kernels from {parent}" in message for message in refusals)
    assert all("lets group or others write to it" in message for message in refusals)
    assert all(f"chmod go-w {parent}" in message for message in refusals)


def test_attacker_in_a_sticky_parent_changes_nothing(arena) -> None:
    """The cache's parent is sticky and world-writable like /tmp: the attacker may create its own
    files beside the cache but not move the victim's. The victim accepts that layout and loads
    exactly its own kernels on every call, whatever the attacker tries."""
    results, attacker, marker = run_attack(arena, 0o1777)
    assert_nothing_foreign(results, marker)
    assert all("value" in result for result in results), results
    assert len(results) >= 5  # a few builds at least, even on a loaded machine
    assert attacker["swaps"] == 0  # the sticky bit kept the victim's cache in place
    cache_root = arena / "shared" / "cache"
    assert stat.S_IMODE(cache_root.stat().st_mode) == 0o700
    assert cache_root.stat().st_uid == 0
