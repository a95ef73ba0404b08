"""README: "The kernels release the GIL". Observed: while one thread runs softjit calls on large
arrays back to back, another Python thread makes progress.

Thread B loops: a little Python work, one count, then a 0.5 ms sleep (which releases the GIL).
Thread A runs CALLS softjit calls back to back. The switch interval is raised to 10 s for the
measurement, so A never hands the GIL over on its own: B can take it only while A has released
it, that is while A is inside a kernel that released the GIL. With the GIL held through the
kernels, B's count stays (essentially) where it was for the whole run; with it released, B
counts while the kernels run. A loaded machine may starve B for a while, so a run without
enough progress is repeated (a kernel that holds the GIL fails every run).
"""
from __future__ import annotations

import ctypes
import sys
import threading
import time

import numpy as np
import pytest

import softjit

HOST_ISAS = list(softjit.host_isas())
CALLS = 10
NEEDED = 5  # counts of thread B during the calls
ROUNDS = 3
ROWS, N = 32, 1 << 18  # 8M floats, 32 MiB: milliseconds per call


def progress_during(call, calls: int = CALLS) -> int:
    """How many times thread B counted while this thread made `calls` calls back to back."""
    count = [0]
    stop = threading.Event()
    waiting = threading.Event()

    def other_thread():
        waiting.set()
        while not stop.is_set():
            sum(range(100))
            count[0] += 1
            time.sleep(0.0005)

    previous = sys.getswitchinterval()
    b = threading.Thread(target=other_thread, daemon=True)
    b.start()
    waiting.wait()
    time.sleep(0.01)
    sys.setswitchinterval(10.0)
    try:
        before = count[0]
        for _ in range(calls):
            call()
        after = count[0]
    finally:
        sys.setswitchinterval(previous)
        stop.set()
        b.join()
    return after - before


def test_the_measurement_tells_a_call_that_holds_the_gil():
    """usleep through ctypes.PyDLL holds the GIL while it sleeps, through ctypes.CDLL it
    releases it: the first gives thread B nothing, the second lets it count."""
    holds, releases = ctypes.PyDLL(None).usleep, ctypes.CDLL(None).usleep
    assert progress_during(lambda: holds(5000)) <= 1
    assert max(progress_during(lambda: releases(5000)) for _ in range(ROUNDS)) >= NEEDED


@pytest.fixture(scope="module")
def arrays():
    x = np.random.default_rng(3).standard_normal((ROWS, N), np.float32)
    padded = np.empty((ROWS, N + 16), np.float32)[:, :N]  # rows a stride apart: general path
    padded[...] = x
    return x, np.empty_like(x), padded, np.empty((ROWS, N + 16), np.float32)[:, :N]


def _calls(isa, arrays):
    x, out, padded, padded_out = arrays
    return {
        "softmax, generated entry": lambda: softjit.softmax(x, isa=isa, out=out),
        "softmax, general path": lambda: softjit.softmax(padded, isa=isa, out=padded_out),
        "exp, generated entry": lambda: softjit.exp(x, isa=isa, out=out),
    }


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_kernels_release_the_gil(isa, arrays):
    for name, call in _calls(isa, arrays).items():
        call()  # build and load outside the measurement
        seen = []
        for _ in range(ROUNDS):
            seen.append(progress_during(call))
            if seen[-1] >= NEEDED:
                break
        else:
            pytest.fail(f"{name} on {isa}: another Python thread counted {seen} times during "
                        f"{CALLS} calls (needed {NEEDED}): the GIL is held while the kernel runs")
