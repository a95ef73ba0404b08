"""Dispatch: which ISA and which softmax algorithm (and store kind) a call runs.

- ISA: cpu.resolve_isa (the host's ISAs from the ISA table, best first, capped by SOFTJIT_ISA),
  memoised; the memo is emptied whenever SOFTJIT_ISA is set or unset in this process.
- Algorithm: for algorithm="auto", the host's tuned table (`python -m softjit tune`, stored by
  tuning.py) if there is one for this softjit, CPU and kernel set, else AUTO_TABLE.
- Stores: outputs of NONTEMPORAL_MIN_BYTES or more use the non-temporal variants.
"""
from __future__ import annotations

import os
import sys

from softjit.codegen import algorithms
from softjit.codegen.isa import ISA_NAMES
from softjit.codegen.lazy import LazyModule
from softjit.runtime import cpu, memo

tuning = LazyModule("softjit.runtime.tuning")  # (the tuned table is read at the first "auto")

#: The algorithm names softjit.softmax accepts.
ALGORITHMS = ("auto",) + algorithms.ALGORITHMS

# (largest row length, algorithm) per ISA, first match wins. AVX2, measured with
# `python -m softjit bench` and `tune` on the development host (AMD EPYC, AVX2, 2 cores): in
# cache three-pass-reload is 1.4-1.8x faster than two-pass up to 3e6 elements (the extended-
# exponent sums cost more arithmetic than the extra read), and two-pass wins from 1e7 on, where
# the third read of x goes to memory. AVX-512 was not measurable on that host: its table takes
# the same shape, as the paper reports for Skylake-X (three-pass in cache, two-pass out of it).
_IN_CACHE_THEN_TWO_PASS = ((1 << 22, "three-pass-reload"), (float("inf"), "two-pass"))
AUTO_TABLE = {isa: _IN_CACHE_THEN_TWO_PASS for isa in ISA_NAMES}

# Rows of at least this many elements (4 MiB) are reduced chunk by chunk, whatever `threads` is:
# shorter rows are computed whole by one driver call (the chunks' calls and their combination
# cost ~10-30 us a row, too much beside the kernels' time on shorter rows). 4 * rows.CHUNK_MIN: such a
# row has at least four chunks to share among threads.
SPLIT_ROW_MIN = 1 << 20

# Outputs at least this large are written with non-temporal stores: they would not stay in the
# caches anyway, and write-allocate would read every output line first.
NONTEMPORAL_MIN_BYTES = 16 << 20


def nontemporal_for(output_bytes: int) -> bool:
    return output_bytes >= NONTEMPORAL_MIN_BYTES


def resolve_isa(isa: str) -> str:
    """cpu.resolve_isa, memoised: it reads /proc once, not per call."""
    try:
        found = memo.RESOLVED_ISA.get(isa)
    except TypeError:  # unhashable (a list, say): cpu.resolve_isa says what isa must be
        return cpu.resolve_isa(isa)
    if found is None:
        found = memo.RESOLVED_ISA.setdefault(isa, cpu.resolve_isa(isa))
    return found


def choose_algorithm(isa: str, n: int, rows: int = 1) -> str:
    """What "auto" runs for rows of n elements: the host's tuned table if there is one for this
    softjit, CPU and kernel set, else AUTO_TABLE. Only n matters: a row goes through all its
    passes before the next row starts, so whether the passes find it in cache depends on the
    row, not on the batch."""
    table = tuning.cached_table(isa) or AUTO_TABLE[isa]
    for limit, algorithm in table:
        if n <= limit:
            return algorithm
    return table[-1][1]


def auto_algorithm(isa: str, n: int) -> str:
    """choose_algorithm, memoised per (isa, n)."""
    found = memo.AUTO_ALGORITHM.get((isa, n))
    if found is None:
        found = memo.AUTO_ALGORITHM.setdefault((isa, n), choose_algorithm(isa, n))
    return found


# SOFTJIT_ISA may change while the process runs (tests, notebooks) and must take effect at the
# next call, yet reading os.environ costs 0.5-1.3 us a call, as much as a small softmax.
# Setting or unsetting a variable through os.environ calls os.putenv / os.unsetenv, which raise
# the audit events "os.putenv" and "os.unsetenv" (sys.addaudithook, PEP 578): softjit listens
# for its variable there and forgets what it resolved, so no call has to read the environment.
_WATCHED = {cpu.ISA_ENV_VARIABLE, cpu.ISA_ENV_VARIABLE.encode()}
_ENV_EVENTS = {"os.putenv", "os.unsetenv"}
_setting = [os.environ.get(cpu.ISA_ENV_VARIABLE)]  # SOFTJIT_ISA now (kept by the hook)


def isa_setting() -> str | None:
    """SOFTJIT_ISA's value (None when unset), without reading the environment."""
    return _setting[0]


def _on_audit_event(event: str, args: tuple) -> None:
    if event in _ENV_EVENTS and args and args[0] in _WATCHED:
        value = args[1] if event == "os.putenv" and len(args) > 1 else None
        _setting[0] = os.fsdecode(value) if isinstance(value, bytes) else value
        memo.isa_changed()


sys.addaudithook(_on_audit_event)
