"""Module-level locks that a forked child gets back free.

A forked child has only the thread that forked: a lock another thread held at that moment would
stay held in the child for ever, and the child's first softjit call would hang. Every
module-level lock of the runtime is a ForkSafeLock, and one after-fork hook gives each of them a
new lock in the child.
"""
from __future__ import annotations

import os
import threading

_every_lock: list[ForkSafeLock] = []


class ForkSafeLock:
    """A threading.Lock (acquire, release, `with`) that is free again in a forked child."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _every_lock.append(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()


def _renew_every_lock() -> None:
    for lock in _every_lock:
        lock._lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_every_lock)
