"""tests/dask: leave softjit.softmax's per-call memo as these tests found it."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _softmax_entry_calls_as_found():
    """softjit.softmax remembers one entry per (algorithm, isa argument) it was called with, and
    tests/test_call_paths.py bounds how many one process holds. softjit.dask calls it with the
    resolved ISA name (and these tests with each host ISA): forget what they added."""
    from softjit.runtime import memo

    before = dict(memo.SOFTMAX_ENTRY_CALLS)
    yield
    memo.SOFTMAX_ENTRY_CALLS.clear()
    memo.SOFTMAX_ENTRY_CALLS.update(before)
