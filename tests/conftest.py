"""Fixtures shared by every test directory."""
from __future__ import annotations

import pytest

import runners


@pytest.fixture(scope="session")
def emulator() -> runners.Emulator:
    """Registered variants run in softjit.codegen.emulator on numpy buffers:
    emulator.call(variant, ("ro", x), y, n, symbol=...) maps the arrays for the call (any byte
    touched outside them faults) and returns rax; emulator.machine(variant) is the parsed
    Machine, shared by the whole session."""
    return runners.EMULATOR
