"""Fixtures for the runtime tests: an isolated cache per test, a tiny hand-written kernel module,
and a way to run Python in a child process (for kills and cross-process races)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import cffi
import pytest

ADD_CDEF = "int softjit_test_add(int a, int b);"

_ADD_TEMPLATE = """\
# {tag}
.intel_syntax noprefix
.text
.globl softjit_test_add
.type softjit_test_add, @function
softjit_test_add:
    lea eax, [rdi + rsi + {offset}]
    ret
.size softjit_test_add, .-softjit_test_add
.section .note.GNU-stack,"",@progbits
"""


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache directory and none of the user's softjit settings."""
    for variable in ("SOFTJIT_ISA", "SOFTJIT_AS", "SOFTJIT_LD", "SOFTJIT_PREBUILT_DIR"):
        monkeypatch.delenv(variable, raising=False)
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(cache_dir))
    return cache_dir


@pytest.fixture
def cache_dir(isolated_environment: Path) -> Path:
    return isolated_environment


@pytest.fixture
def make_add_asm() -> Callable[[int], str]:
    """A factory of `int softjit_test_add(int a, int b)` returning a + b + offset; each text
    carries a fresh tag so no two tests share a cache key or a loader memo entry."""

    def make(offset: int = 0) -> str:
        return _ADD_TEMPLATE.format(tag=uuid.uuid4().hex, offset=offset)

    return make


@pytest.fixture
def call_add() -> Callable[[Path, int, int], int]:
    """Call softjit_test_add in the shared object at a path (a fresh cffi view of it)."""

    def call(path: Path, a: int, b: int) -> int:
        ffi = cffi.FFI()
        ffi.cdef(ADD_CDEF)
        return ffi.dlopen(str(path)).softjit_test_add(a, b)

    return call


@pytest.fixture
def empty_path_dir(tmp_path: Path) -> Path:
    """A directory to use as the whole PATH, so that no `as` or `ld` can be found."""
    directory = tmp_path / "empty-bin"
    directory.mkdir()
    return directory


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a Python source text in a child interpreter with this test's environment."""

    def run(source: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", source, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ),
        )

    return run
