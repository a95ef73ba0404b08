"""Many processes and threads cold-starting on one empty cache all load the same working code,
with the per-key lock (one build in all) and without it (correct anyway)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from softjit.runtime import cache
from softjit.runtime.files import sha256_file

PROCESSES = 8
THREADS = 4

# Each child: get ready, wait for the parent's "go" so all processes start together, then release
# its threads through a barrier. Each thread asks for the object under its own record name and
# calls it; the child prints one JSON line per thread.
RACER = r"""
import contextlib, hashlib, json, os, sys, threading
from pathlib import Path
import cffi
from softjit.runtime import cache, cache_build

asm = Path(sys.argv[1]).read_text()
if sys.argv[2] == "unlocked":
    cache_build.key_lock = lambda root, key: contextlib.nullcontext()
threads = int(sys.argv[3])
barrier = threading.Barrier(threads)
results = [None] * threads

def race(index):
    name = f"adder-{os.getpid()}-{index}"
    barrier.wait()
    path = cache.get_shared_object(name, asm)
    ffi = cffi.FFI()
    ffi.cdef("int softjit_test_add(int a, int b);")
    value = ffi.dlopen(str(path)).softjit_test_add(20, 1)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    results[index] = {"sha256": digest, "source": cache.last_shared_object(name).source,
                      "value": value, "path": str(path)}

print("ready", flush=True)
sys.stdin.readline()
workers = [threading.Thread(target=race, args=(i,)) for i in range(threads)]
for worker in workers: worker.start()
for worker in workers: worker.join()
for result in results: print(json.dumps(result))
"""


def race(asm_file: Path, locking: str) -> list[dict]:
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(asm_file), locking, str(THREADS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        results = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results += [json.loads(line) for line in out.splitlines()]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert len(results) == PROCESSES * THREADS
    return results


@pytest.mark.parametrize("locking", ["locked", "unlocked"])
def test_cold_start_race(cache_dir, tmp_path, make_add_asm, locking) -> None:
    asm = make_add_asm(0)
    asm_file = tmp_path / "adder.S"
    asm_file.write_text(asm)

    results = race(asm_file, locking)

    assert {result["value"] for result in results} == {21}
    assert len({result["sha256"] for result in results}) == 1
    sources = Counter(result["source"] for result in results)
    if locking == "locked":
        assert sources["built"] == 1, sources
    else:
        assert sources["built"] >= 1, sources
    # The entry left behind is complete and agrees with what every racer loaded.
    path = cache.get_shared_object("adder", asm)
    assert cache.last_shared_object("adder").source == "cache"
    assert sha256_file(path) == results[0]["sha256"]
