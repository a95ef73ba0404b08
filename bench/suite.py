"""The paper's experiment on this host: softmax throughput against row length.

For each case (a row length, or a batch of rows): inputs uniform in [-1000, 1000] as in the
paper, one pinned core, every candidate timed in interleaved rounds (timing.py), medians
reported with the 2-reads-1-write bound of the bandwidth probes beside them (report.py).
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field

import numpy as np

from softjit.codegen import variants
from softjit.runtime import cpu
from softjit.bench import candidates as cand
from softjit.bench import port_floor
from softjit.bench.progress import progress_bar
from softjit.bench.timing import Flusher, last_level_cache_bytes, measure, pin_to_one_cpu

DEFAULT_SIZES = "1e3,3e3,1e4,3e4,1e5,3e5,1e6,3e6,1e7,3e7,64M,4096x1000"
QUICK_SIZES = "1e3,1e4,1e5,1e6,1e7,4096x1000"
DEFAULT_REPEATS = 21
QUICK_REPEATS = 5


@dataclass(frozen=True)
class Case:
    rows: int
    n: int

    @property
    def elements(self) -> int:
        return self.rows * self.n

    @property
    def label(self) -> str:
        return f"{self.rows}x{size_label(self.n)}" if self.rows > 1 else size_label(self.n)


def size_label(n: int) -> str:
    """1000 -> 1e3, 30000 -> 3e4, 64000000 -> 64M, 1234 -> 1234."""
    if n >= 1000:
        exponent = int(math.log10(n))
        mantissa = n / 10 ** exponent
        if mantissa == int(mantissa):
            return f"{int(mantissa)}e{exponent}"
        if n % 1_000_000 == 0:
            return f"{n // 1_000_000}M"
    return str(n)


_SUFFIX = {"": 1, "k": 10 ** 3, "K": 10 ** 3, "m": 10 ** 6, "M": 10 ** 6, "g": 10 ** 9, "G": 10 ** 9}


def parse_count(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise ValueError(f"bad row length {text!r}: give a count such as 1000, 1e6, 3e7 or 64M")
    value = float(match.group(1)) * _SUFFIX[match.group(2)]
    if value != int(value) or value < 1:
        raise ValueError(f"bad row length {text!r}: it must be a whole number of elements >= 1")
    return int(value)


def parse_sizes(text: str) -> list:
    """"1e3,3e3 64M 4096x1000" -> Cases; ROWSxN is a batch of ROWS rows of N."""
    cases = []
    for token in re.split(r"[,\s]+", text.strip()):
        if not token:
            continue
        if "x" in token.lower():
            rows, n = re.split(r"[xX]", token, maxsplit=1)
            cases.append(Case(parse_count(rows), parse_count(n)))
        else:
            cases.append(Case(1, parse_count(token)))
    if not cases:
        raise ValueError("no sizes given")
    return cases


def parse_names(text: str | None, valid: tuple, what: str) -> tuple:
    if text is None:
        return valid
    chosen = tuple(t for t in re.split(r"[,\s]+", text.strip()) if t)
    if chosen in (("none",), ()):
        return ()
    if chosen == ("all",):
        return valid
    unknown = [t for t in chosen if t not in valid]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(valid)} (or all / none)")
    return chosen


@dataclass
class Config:
    cases: list = field(default_factory=lambda: parse_sizes(DEFAULT_SIZES))
    algorithms: tuple = variants.ALGORITHMS
    isas: tuple = cpu.ISAS
    peers: tuple = cand.ALL_PEERS
    repeats: int = DEFAULT_REPEATS  # most rounds per case
    budget_s: float = 45.0  # per case: big rows get fewer rounds (never fewer than 3)
    sample_ms: float = 2.0  # in cache: runs per sample are calibrated to last about this long
    cpu: int | None = None
    check_limit: int = 10_000_000  # outputs are checked against float64 up to this many elements
    clock: str = "wall"  # what median_ns reports: "wall" or "cpu" (thread CPU time)
    auto: bool = True  # time softjit.softmax end to end
    probes: bool = True
    seed: int = 2001_04438
    progress: bool = True
    argv: list = field(default_factory=list)

    @classmethod
    def from_options(cls, sizes=None, algorithms=None, isas=None, peers=None, repeats=None,
                     quick=False, **extra):
        config = cls(**extra)
        config.cases = parse_sizes(sizes or (QUICK_SIZES if quick else DEFAULT_SIZES))
        config.algorithms = parse_names(algorithms, variants.ALGORITHMS, "algorithm")
        # the host's ISAs unless asked: an ISA the host lacks can only be listed as not runnable
        config.isas = parse_names(isas, cpu.ISAS, "isa") if isas else _host_isas()
        config.peers = parse_names(peers, cand.ALL_PEERS, "peer")
        if repeats is not None:
            if repeats < 1:
                raise ValueError(f"--repeats must be at least 1, not {repeats}")
            config.repeats = repeats
        elif quick:
            config.repeats = QUICK_REPEATS
        if quick:
            config.budget_s = min(config.budget_s, 6.0)
        return config


def _host_isas() -> tuple:
    try:
        return tuple(cpu.host_isas())
    except Exception:  # not Linux x86-64: nothing runs, the suite says so per candidate
        return cpu.ISAS


def make_input(case: Case, rng) -> np.ndarray:
    """(rows, n) float32 uniform in [-1000, 1000)."""
    x = rng.random((case.rows, case.n), dtype=np.float32)
    x *= np.float32(2000.0)
    x -= np.float32(1000.0)
    return x


def reference(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def check_output(output, ref: np.ndarray, family: str) -> tuple:
    """(verdict, max abs error): "ok", "wrong" or "unchecked"."""
    if ref is None or output is None or family == "probe":
        return "unchecked", None
    y = np.asarray(output, dtype=np.float64).reshape(ref.shape)
    error = float(np.max(np.abs(y - ref)))
    good = bool(np.all(np.abs(y - ref) <= 1e-6 + 1e-3 * ref))
    return ("ok" if good else "wrong"), error


def host_metadata(config: Config, pinned, llc: int) -> dict:
    import numpy

    from softjit.runtime.cache import softjit_version

    try:
        isas = list(cpu.host_isas())
        model = cpu.cpu_model()
        features = sorted(cpu.host_features())
    except Exception as error:  # not Linux x86-64: still write what we know
        isas, model, features = [], f"unknown ({error})", []
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpu_features": features,
        "host_isas": isas,
        "logical_cpus": os.cpu_count(),
        "pinned_cpu": pinned,
        "llc_bytes": llc,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "softjit": softjit_version(),
        "peers": cand.peer_versions(config.peers),
        "repeats": config.repeats,
        "budget_s_per_case": config.budget_s,
        "sample_ms": config.sample_ms,
        "clock": config.clock,
        "seed": config.seed,
        "bytes_per_element_counted": 8,
        "command": " ".join(config.argv) if config.argv else None,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def build_candidates(config: Config) -> list:
    found = cand.softjit_candidates(config.algorithms, config.isas)
    if config.auto:
        found += cand.auto_candidates()
    if config.probes:
        found += cand.probe_candidates(config.isas)
    found += cand.peer_candidates(config.peers)
    return found


def run_suite(config: Config) -> dict:
    """Run every case; returns the results document (see report.py for what is derived)."""
    started = time.monotonic()
    pinned = pin_to_one_cpu(config.cpu)
    llc = last_level_cache_bytes()
    meta = host_metadata(config, pinned, llc)
    candidates = build_candidates(config)
    runnable = [c for c in candidates if c.status is None]
    floors = port_floor.host_floors(meta["host_isas"][0] if meta["host_isas"] else None)
    meta["port_floor"] = floors.describe()
    meta["clock_ghz"] = floors.ghz
    rng = np.random.default_rng(config.seed)
    host_isas = meta["host_isas"]
    flusher = Flusher(llc, cand.read_rows_function(host_isas[0]) if host_isas else None)

    planned = {case: min(config.repeats, 5) * sum(c.applies_to(case.rows, case.n) for c in runnable)
               for case in config.cases}  # samples, until a case knows its rounds
    bar = progress_bar(sum(planned.values()), "bench", config.progress)
    cases = []
    try:
        for case in config.cases:
            cases.append(_run_case(case, config, candidates, rng, llc, flusher, bar,
                                   planned[case], floors))
    finally:
        bar.close()
    meta["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    meta["wall_time_s"] = round(time.monotonic() - started, 1)
    return {"meta": meta, "cases": cases}


def _run_case(case: Case, config: Config, candidates: list, rng, llc: int, flusher, bar,
              planned: int, floors=None) -> dict:
    bar.set_postfix_str(f"{case.label}: preparing")
    bar.refresh()
    x = make_input(case, rng)
    y = np.empty_like(x)
    out_of_cache = case.elements * 8 > llc
    ref = reference(x) if case.elements <= config.check_limit else None
    record = {"label": case.label, "n": case.n, "rows": case.rows, "elements": case.elements,
              "out_of_cache": out_of_cache, "candidates": []}
    entries, timed = {}, {}
    for c in candidates:
        if not c.applies_to(case.rows, case.n):
            continue
        entry = {"key": c.key, "label": c.label, "family": c.family, "algorithm": c.algorithm,
                 "isa": c.isa, "nontemporal": c.nontemporal, "kernel": c.kernel,
                 "status": c.status or "ok", "median_ns": None, "samples_ns": [], "number": None,
                 "check": "unchecked", "max_abs_error": None, "floor_ns_per_element": None}
        if floors is not None and c.family == "softjit" and c.kernel in variants.REGISTRY:
            entry["floor_ns_per_element"] = floors.floor_ns(variants.REGISTRY.named(c.kernel))
        entries[c.key] = entry
        record["candidates"].append(entry)
        if c.status is not None:
            continue
        try:
            t = c.make(x, y)
            t.run(1)  # warm up: first-call costs (loading, allocation) stay out of the samples
            entry["check"], entry["max_abs_error"] = check_output(t.output(), ref, c.family)
            timed[c.key] = t
        except Exception as error:  # a peer that cannot take this row: say so, go on
            entry["status"] = f"failed: {type(error).__name__}: {error}"[:300]
    done = [0]

    def on_rounds(rounds):
        record["rounds"] = rounds
        bar.total += len(timed) * rounds - planned
        bar.refresh()

    def tick(key):
        done[0] += 1
        bar.update(1)
        if done[0] % len(timed) == 0:
            bar.set_postfix_str(f"{case.label}: round {done[0] // len(timed)}/{record['rounds']}")

    bar.set_postfix_str(f"{case.label}: calibrating")
    samples, _ = measure(timed, out_of_cache=out_of_cache, flush=flusher, repeats=config.repeats,
                         budget_s=config.budget_s, sample_ms=config.sample_ms, tick=tick,
                         on_rounds=on_rounds)
    for key, s in samples.items():
        entry = entries[key]
        entry["median_wall_ns"], entry["median_cpu_ns"] = s.median, s.median_cpu
        entry["median_ns"] = s.median_cpu if config.clock == "cpu" else s.median
        entry["samples_ns"] = [round(v, 2) for v in s.per_run_ns]
        entry["samples_cpu_ns"] = [round(v, 2) for v in s.per_run_cpu_ns]
        entry["preempted_samples"] = s.preempted
        entry["number"] = s.number
    return record
