"""threads=k: validated (a positive int, not a bool or a float, at most sys.maxsize), capped to
the CPUs this process may run on, and never leaving more worker threads than that behind."""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

import softjit
from softjit.runtime import rows


@pytest.mark.parametrize("threads, error", [
    (1.0, TypeError), (2.0, TypeError), (True, TypeError), (False, TypeError), ("2", TypeError),
    (None, TypeError), (0, ValueError), (-1, ValueError), (10 ** 30, ValueError),
    (np.int64(0), ValueError),
])
@pytest.mark.parametrize("function", [softjit.softmax, softjit.log_softmax])
def test_bad_threads_are_refused_naming_the_value(function, threads, error) -> None:
    x = np.ones((4, 8), np.float32)
    with pytest.raises(error, match="threads") as raised:
        function(x, threads=threads)
    assert repr(threads) in str(raised.value)


def test_numpy_integer_threads_are_accepted() -> None:
    x = np.ones((4, 8), np.float32)
    assert np.array_equal(softjit.softmax(x, threads=np.int32(2)), softjit.softmax(x))


@pytest.mark.parametrize("threads", [1000, 10 ** 8, sys.maxsize])
def test_huge_threads_are_capped_quickly_and_leave_no_threads(threads) -> None:
    rng = np.random.default_rng(5)
    row = rng.standard_normal(1 << 17).astype(np.float32)
    batch = rng.standard_normal((300, 16)).astype(np.float32)
    before = threading.active_count()
    start = time.perf_counter()
    got = (softjit.softmax(row, threads=threads), softjit.softmax(batch, threads=threads),
           softjit.log_softmax(batch, threads=threads))
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"threads={threads} took {elapsed:.1f} s"
    assert np.allclose(got[0], softjit.softmax(row), rtol=1e-5, atol=0)
    assert np.array_equal(got[1], softjit.softmax(batch))
    usable = len(os.sched_getaffinity(0))
    # at most a worker per usable CPU besides the caller's thread, which takes a piece itself
    assert threading.active_count() - before <= usable - 1, (
        f"{threading.active_count()} threads alive after threads={threads} "
        f"({before} before; this process may run on {usable} CPUs)")


def test_threads_are_capped_to_the_usable_cpus() -> None:
    usable = len(os.sched_getaffinity(0))
    assert rows.usable_cpus() == usable
    assert rows.threads_for(10 ** 8) == usable
    assert rows.threads_for(1) == 1
