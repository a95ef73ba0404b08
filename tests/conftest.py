"""Fixtures shared by every test directory.

- hypothesis profiles: "ci" (derandomized: the same examples on every run, no example database)
  is loaded when the CI environment variable is set (.ci/run sets it), "dev" (random examples)
  elsewhere; HYPOTHESIS_PROFILE names one explicitly.
- `emulator`: registered variants run in softjit.codegen.emulator.
- `kernel_calls`: records which row drivers and pass kernels softjit.softmax asks for and calls,
  from which thread (see KernelCalls).
"""
from __future__ import annotations

import os

import pytest
from hypothesis import settings

import runners
from kernel_calls import KernelCalls

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def emulator() -> runners.Emulator:
    """Registered variants run in softjit.codegen.emulator on numpy buffers:
    emulator.call(variant, ("ro", x), y, n, symbol=...) maps the arrays for the call (any byte
    touched outside them faults) and returns rax; emulator.machine(variant) is the parsed
    Machine, shared by the whole session."""
    return runners.EMULATOR


@pytest.fixture
def kernel_calls(monkeypatch) -> KernelCalls:
    """softjit.softmax with every row driver and pass kernel it looks up wrapped to record the
    request (algorithm, isa, non-temporal) and each call (thread, rows or elements); the
    generated entries are bypassed, so that every call goes through the recorded Python layer."""
    calls = KernelCalls(monkeypatch)
    yield calls
    calls.forget()
