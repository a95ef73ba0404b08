"""softjit after fork: a child forked from a process that already ran softmax with threads (its
thread pool's workers do not exist in the child) or while a softjit lock was held must still
compute, through os.fork, multiprocessing's fork start method and spawn.

Every child is bounded by a timeout and killed when it passes it, so a regression fails the
test instead of hanging the run.
"""
from __future__ import annotations

import importlib
import multiprocessing
import os
import pkgutil
import signal
import threading
import time

import numpy as np
import pytest

import softjit
import softjit.runtime
from softjit.runtime.forksafe import ForkSafeLock

CHILD_TIMEOUT = 60.0  # seconds; a healthy child needs well under one
LONG_ROW = 1 << 20  # long enough to be split over the threads
THREADS = 2


def _rows() -> tuple:
    rng = np.random.default_rng(12)
    long_row = rng.standard_normal(LONG_ROW).astype(np.float32)
    batch = rng.standard_normal((64, 1000)).astype(np.float32)
    return long_row, batch


def _threaded_results() -> tuple:
    long_row, batch = _rows()
    return (softjit.softmax(long_row, threads=THREADS),
            softjit.softmax(batch, threads=THREADS))


def _child_check(expected: tuple) -> bool:
    """What a child runs: the same threaded calls, compared with the parent's results."""
    got = _threaded_results()
    return all(np.array_equal(a, b) for a, b in zip(got, expected))


def _wait_for(pid: int, timeout: float) -> int | None:
    """The exit status of child `pid`, or None after killing it at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _fork_and_check(expected: tuple) -> int | None:
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 3
        try:
            code = 0 if _child_check(expected) else 1
        finally:
            os._exit(code)
    return _wait_for(pid, CHILD_TIMEOUT)


def test_os_fork_after_threads_computes() -> None:
    expected = _threaded_results()  # the parent's pool has worker threads now
    assert _fork_and_check(expected) == 0, "the forked child hung (killed) or computed wrongly"


def test_os_fork_twice_in_a_row() -> None:
    """A child that itself used threads can fork again (the reset runs in every child)."""
    expected = _threaded_results()
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            if _child_check(expected):
                code = _fork_and_check(expected)
                code = 4 if code is None else code
            else:
                code = 1
        finally:
            os._exit(code)
    assert _wait_for(pid, 2 * CHILD_TIMEOUT) == 0


def _run_in_context(method: str, expected: tuple) -> int | None:
    context = multiprocessing.get_context(method)
    process = context.Process(target=_process_main, args=(expected,))
    process.start()
    process.join(CHILD_TIMEOUT)
    if process.is_alive():
        process.kill()
        process.join()
        return None
    return process.exitcode


def _process_main(expected: tuple) -> None:
    raise SystemExit(0 if _child_check(expected) else 1)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_after_threads_computes(method: str) -> None:
    expected = _threaded_results()
    assert _run_in_context(method, expected) == 0, (
        f"a {method} child hung (killed at {CHILD_TIMEOUT} s) or computed wrongly")


def _runtime_locks() -> list:
    """(name, lock) of every module-level lock in softjit's runtime modules."""
    lock_types = (type(threading.Lock()), type(threading.RLock()), ForkSafeLock)
    found = []
    for info in pkgutil.iter_modules(softjit.runtime.__path__):
        module = importlib.import_module(f"softjit.runtime.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, lock_types):
                found.append((f"softjit.runtime.{info.name}.{name}", value))
    return found


def test_locks_held_at_fork_are_free_in_the_child() -> None:
    """A fork while another thread holds one of softjit's locks (here: this thread holds them
    all) leaves a child whose locks are free, and which computes."""
    expected = _threaded_results()
    locks = _runtime_locks()
    assert locks, "the runtime has module-level locks; the scan found none"
    for _, lock in locks:
        lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                held = [name for name, _ in _runtime_locks()
                        if not _free(dict(_runtime_locks())[name])]
                code = 1 if held else (0 if _child_check(expected) else 2)
                if held:
                    os.write(2, f"held in the child: {held}\n".encode())
            finally:
                os._exit(code)
    finally:
        for _, lock in locks:
            lock.release()
    assert _wait_for(pid, CHILD_TIMEOUT) == 0


def _free(lock) -> bool:
    if lock.acquire(timeout=2):
        lock.release()
        return True
    return False
