"""Observe which native kernels softjit.softmax runs (the `kernel_calls` fixture, conftest.py).

Results alone cannot say which kernel ran: the non-temporal variants give the bits of the plain
ones, and a row split over threads is within rounding of the unsplit one. The runtime finds its
row drivers and pass kernels through bindings.driver and bindings.passes (looked up at each
call), and the generated entries' tables through entry_tables._driver. KernelCalls wraps those
lookups, so a test sees every request (algorithm, isa, non-temporal) and every call through the
Python layer (the thread, the rows or elements it covered), and can substitute another kernel for
a request (`substitute`) to see, through the bits of the result, which one a native entry picked.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from softjit.runtime import bindings, entry_tables, memo


@dataclass(frozen=True)
class Call:
    kind: str  # "driver" or "pass"
    algorithm: str
    isa: str
    nontemporal: bool
    thread: str
    start: int  # the address of the first float the call covered
    count: int  # rows (driver) or elements (pass)
    index: int = -1  # the pass number (passes only)


class _RecordingDriver:
    def __init__(self, real, key, calls):
        self._real, self._key, self._calls = real, key, calls
        self.function = real.function
        self.variant = real.variant

    def _record(self, x, rows):
        self._calls.add(Call("driver", *self._key, threading.current_thread().name,
                             x.__array_interface__["data"][0], rows))

    def __call__(self, x2d, y2d, status, strides):
        self._record(x2d, x2d.shape[0])
        return self._real(x2d, y2d, status, strides)

    def contiguous(self, x, y, rows, n, input_scale=None):
        self._record(x, rows)
        if input_scale is None:
            return self._real.contiguous(x, y, rows, n)
        return self._real.contiguous(x, y, rows, n, input_scale)


class _RecordingPasses:
    def __init__(self, real, key, calls):
        self._real, self._key, self._calls = real, key, calls
        self.variant = real.variant

    def run(self, index, x, y, state):
        self._calls.add(Call("pass", *self._key, threading.current_thread().name,
                             x.__array_interface__["data"][0], x.shape[0], index))
        return self._real.run(index, x, y, state)

    def run_pieces(self, index, x, y, states, bounds):
        base = x.__array_interface__["data"][0]
        thread = threading.current_thread().name
        for a, b in bounds:
            self._calls.add(Call("pass", *self._key, thread, base + 4 * a, b - a, index))
        return self._real.run_pieces(index, x, y, states, bounds)


class KernelCalls:
    """Wraps the runtime's kernel lookups for one test (through monkeypatch)."""

    def __init__(self, monkeypatch):
        self.requests: list = []  # (kind, algorithm, isa, nontemporal) per lookup
        self.calls: list = []
        self._lock = threading.Lock()
        self._substitutes: dict = {}
        self._real_driver, self._real_passes = bindings.driver, bindings.passes
        self._real_entry_driver = entry_tables._driver
        self._monkeypatch = monkeypatch
        self.forget()
        monkeypatch.setattr(bindings, "driver", self._driver)
        monkeypatch.setattr(bindings, "passes", self._passes)
        monkeypatch.setattr(entry_tables, "_driver", self._entry_driver)

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def substitute(self, nontemporal: bool, replacement: dict) -> None:
        """Requests with this store kind get the plain kernels of replacement[algorithm]."""
        self._substitutes[nontemporal] = replacement
        self.forget()

    def use_entries(self, enabled: bool) -> None:
        """Whether public calls may take the generated entries (native: calls through them are
        not recorded, only the drivers their tables were built from)."""
        if not enabled:
            self._monkeypatch.setattr(entry_tables, "softmax_entry", lambda algorithm, isa: None)
        self.forget()

    @staticmethod
    def forget() -> None:
        """Drop every memoised driver, pass set and entry, so the next call looks them up."""
        memo.forget_calls()

    def _key(self, algorithm, isa, nontemporal):
        replaced = self._substitutes.get(bool(nontemporal), {}).get(algorithm)
        return (replaced, isa, False) if replaced else (algorithm, isa, bool(nontemporal))

    def _driver(self, algorithm, isa, nontemporal=False, element="f32", scaled=False):
        """(a request for 16-bit kernels records their element format last)"""
        self.requests.append(("driver", algorithm, isa, bool(nontemporal))
                             + (() if element == "f32" else (element,)))
        real = self._real_driver(*self._key(algorithm, isa, nontemporal), element, scaled=scaled)
        return _RecordingDriver(real, (algorithm, isa, bool(nontemporal)), self)

    def _passes(self, algorithm, isa, nontemporal=False, element="f32", scaled=False):
        self.requests.append(("passes", algorithm, isa, bool(nontemporal))
                             + (() if element == "f32" else (element,)))
        real = self._real_passes(*self._key(algorithm, isa, nontemporal), element, scaled=scaled)
        return _RecordingPasses(real, (algorithm, isa, bool(nontemporal)), self)

    def _entry_driver(self, algorithm, isa, nontemporal, scaled=False):
        self.requests.append(("entry driver", algorithm, isa, bool(nontemporal))
                             + (("scaled",) if scaled else ()))
        return self._real_entry_driver(*self._key(algorithm, isa, nontemporal), scaled=scaled)

    def of(self, kind: str) -> list:
        return [c for c in self.calls if c.kind == kind]
