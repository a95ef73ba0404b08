"""What the suite times: softjit's row drivers, softjit.softmax end to end, the bandwidth probes
and the peers, each as a Candidate that can say why it cannot run here.

softjit's kernels are timed through the generated row drivers, one native call per sample: a
single row of n is run `number` times by giving the driver `number` rows with zero row strides
(the same row again, as a C benchmark loop would), so even a 1000-element row is timed without
Python's call overhead. softjit.softmax(x) is timed separately, per call from Python, which is
what a user of the library pays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from softjit.codegen import variants
from softjit.runtime import bindings, cpu, dispatch
from softjit.bench import peers as peer_module
from softjit.bench.timing import Timed, now_ns

NOT_RUNNABLE = "not runnable on this host"
ALL_PEERS = tuple(p.key for p in peer_module.PEERS)

# Non-temporal softjit variants are timed from this many bytes of input on (below, a row and its
# output sit in the caches and streaming stores only lose).
NONTEMPORAL_FROM_BYTES = 1 << 20


class NativeRows(Timed):
    """A row driver with the signature (x, y, n, rows, ...): `number` runs in one call."""

    def __init__(self, call, result: np.ndarray):
        self.call, self.result = call, result  # result: where a run leaves its output

    def run(self, number: int) -> int:
        start = now_ns()
        self.call(number)
        return now_ns() - start

    def output(self):
        return self.result


def softmax_driver_timed(variant, x2d: np.ndarray, y2d: np.ndarray) -> NativeRows:
    """Time a softmax variant's row driver on x2d (one row repeated, or the whole batch)."""
    function = bindings.function(variant, variant.driver_symbol)
    b = bindings.pointer
    rows, n = x2d.shape
    xp, yp = b(x2d), b(y2d)
    if rows == 1:
        strides = b(np.zeros(2, np.int64))  # the same row `number` times
        status = [np.empty(0, np.int32), None]

        def call(number):
            if status[0].shape[0] < number:
                status[0] = np.empty(number, np.int32)
                status[1] = b(status[0])
            if function(xp, yp, n, number, strides, status[1]):
                raise RuntimeError(f"{variant.name} marked the row for recomputation")
    else:
        strides = np.array([x2d.strides[0], y2d.strides[0]], np.int64)
        status = np.empty(rows, np.int32)
        sp, tp = b(strides), b(status)

        def call(number):
            for _ in range(number):
                if function(xp, yp, n, rows, sp, tp):
                    raise RuntimeError(f"{variant.name} marked rows for recomputation")
    return NativeRows(call, y2d)


def probe_timed(probe, x2d: np.ndarray, y2d: np.ndarray) -> NativeRows:
    """Time a bandwidth probe's row driver: each run covers all rows of x2d once."""
    function = bindings.function(probe, probe.driver_symbol)
    b = bindings.pointer
    rows, n = x2d.shape
    reads_only = probe.op == "stream_read"
    sink = np.zeros(1, np.float32)
    xp = b(x2d)
    yp = b(sink) if reads_only else b(y2d)
    y_stride = 0 if reads_only else y2d.strides[0]
    if rows == 1:
        def call(number):
            function(xp, yp, n, number, 0, 0)
    else:
        def call(number):
            for _ in range(number):
                function(xp, yp, n, rows, x2d.strides[0], y_stride)
    return NativeRows(call, sink if reads_only else y2d)


def read_rows_function(isa: str):
    """flush helper: (x, out) -> None, reading x once with the read probe of `isa`."""
    probe = variants.StreamRead(isa)
    function = bindings.function(probe)
    b = bindings.pointer
    return lambda x, out: function(b(x), x.size, b(out))


class AutoTimed(Timed):
    """softjit.softmax through its public API, per Python call."""

    def __init__(self, x: np.ndarray, into: np.ndarray | None):
        import softjit

        self.softmax, self.x, self.into, self.last = softjit.softmax, x, into, None

    def run(self, number: int) -> int:
        softmax, x, into = self.softmax, self.x, self.into
        start = now_ns()
        if into is None:
            for _ in range(number):
                last = softmax(x)
        else:
            for _ in range(number):
                last = softmax(x, out=into)
        elapsed = now_ns() - start
        self.last = last
        return elapsed

    def output(self):
        return self.last


@dataclass
class Candidate:
    key: str
    label: str
    family: str  # "softjit", "auto", "probe", "peer"
    algorithm: str | None = None
    isa: str | None = None
    nontemporal: bool = False
    kernel: str | None = None  # the variant name, for the record
    status: str | None = None  # None: runnable here; else why not
    make: object = None  # make(x2d, y2d) -> Timed
    applies: object = None  # applies(rows, n) -> bool (None: every case)

    def applies_to(self, rows: int, n: int) -> bool:
        return self.applies is None or self.applies(rows, n)


def _large(rows: int, n: int) -> bool:
    return rows * n * 4 >= NONTEMPORAL_FROM_BYTES


def softjit_candidates(algorithms, isas) -> list:
    host = set(cpu.host_isas())
    found = []
    for isa in isas:
        for algorithm in algorithms:
            for nontemporal in (False, True):
                try:
                    variant = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
                except ValueError:
                    continue
                suffix = " nt" if nontemporal else ""
                found.append(Candidate(
                    key=f"softjit/{algorithm}/{isa}{suffix.replace(' ', '/')}",
                    label=f"softjit {algorithm} {isa}{suffix}",
                    family="softjit", algorithm=algorithm, isa=isa, nontemporal=nontemporal,
                    kernel=variant.name, status=None if isa in host else NOT_RUNNABLE,
                    make=lambda x2d, y2d, v=variant: softmax_driver_timed(v, x2d, y2d),
                    applies=_large if nontemporal else None))
    return found


def auto_candidates() -> list:
    try:
        isa = dispatch.resolve_isa("auto")
        status = None
    except Exception as error:  # no ISA softjit can run on this host
        isa, status = None, f"{NOT_RUNNABLE}: {error}"
    return [
        Candidate("softjit/auto", "softjit.softmax(x) auto", "auto", "auto", isa, status=status,
                  make=lambda x2d, y2d: AutoTimed(x2d[0] if x2d.shape[0] == 1 else x2d, None)),
        Candidate("softjit/auto/out", "softjit.softmax(x, out=y) auto", "auto", "auto", isa,
                  status=status,
                  make=lambda x2d, y2d: AutoTimed(x2d[0] if x2d.shape[0] == 1 else x2d,
                                                  y2d[0] if y2d.shape[0] == 1 else y2d)),
    ]


def probe_candidates(isas) -> list:
    host = set(cpu.host_isas())
    found = []
    for isa in isas:
        for probe in variants.probes(isa):
            kind = "read" if probe.op == "stream_read" else (
                "copy-nt" if probe.nontemporal else "copy")
            found.append(Candidate(
                key=f"probe/{kind}/{isa}", label=f"probe {kind} {isa}", family="probe",
                algorithm=kind, isa=isa, nontemporal=getattr(probe, "nontemporal", False),
                kernel=probe.name, status=None if isa in host else NOT_RUNNABLE,
                make=lambda x2d, y2d, p=probe: probe_timed(p, x2d, y2d)))
    return found


def peer_candidates(keys) -> list:
    found = []
    for key in keys:
        peer = peer_module.BY_KEY.get(key)
        if peer is None:
            raise ValueError(f"unknown peer {key!r}; valid: {', '.join(ALL_PEERS)}")
        found.append(Candidate(
            key=f"peer/{key}", label=peer.label, family="peer", algorithm=key,
            kernel=None, status=peer.status(),
            make=lambda x2d, y2d, p=peer: p.make(x2d)))
    return found


def peer_versions(keys) -> dict:
    return {key: peer_module.BY_KEY[key].version() for key in keys
            if peer_module.BY_KEY[key].status() is None}
