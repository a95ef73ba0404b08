"""The per-host choice table behind softjit.softmax(algorithm="auto"), as measured by
`python -m softjit tune` (softjit.bench.tune) and stored in the kernel cache directory.

A table, per ISA, is a tuple of (largest row length, algorithm), first match wins, the last
entry's limit being infinity: the same shape as runtime.dispatch.AUTO_TABLE. The file,
tuning.json, records what the measurement depended on; load_table answers None (use the built-in
table) whenever any of it differs from this process:

- the file format and the softjit version,
- the CPU model name and the CPU features softjit uses,
- the names of the registered softmax kernels of that ISA (they encode every parameter, so a
  re-tuned registry invalidates an old table even within one softjit version).

The file holds data only (no code is ever loaded from it), is written atomically (a private
temporary file in the same directory, then os.replace) with mode 0600, and a broken or foreign
file is ignored, never an error.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from softjit.codegen.lazy import LazyModule
from softjit.runtime import cpu, memo
from softjit.runtime.cache import softjit_version
from softjit.runtime.cachedir import active_cache_dir
from softjit.runtime.errors import SoftjitError

variants = LazyModule("softjit.codegen.variants")  # (read only where a tuned table exists)

FILE_NAME = "tuning.json"
FORMAT = 1

Table = tuple  # of (float, str): (largest row length, algorithm)


def table_path() -> Path:
    return active_cache_dir() / FILE_NAME


def host_identity() -> dict:
    """What a table measured on this host depends on, besides the kernels."""
    return {"model": cpu.cpu_model(), "features": sorted(cpu.host_features())}


def kernel_names(isa: str) -> dict:
    """algorithm -> name of every softmax kernel "auto" may run on `isa` (both store kinds)."""
    names = {}
    for algorithm in variants.ALGORITHMS:
        for nontemporal in (False, True):
            try:
                v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
            except ValueError:
                continue
            names[f"{algorithm}{' nt' if nontemporal else ''}"] = v.name
    return names


def compress(winners: list) -> Table:
    """[(n, algorithm), ...] measured at increasing n -> the table: runs of one winner merge, a
    change of winner between n_a and n_b puts the limit at their geometric mean."""
    if not winners:
        raise ValueError("compress: no measurements to build a table from")
    points = sorted(winners)
    table = []
    for (n, algorithm), following in zip(points, points[1:] + [None]):
        if following is not None and following[1] == algorithm:
            continue
        limit = math.inf if following is None else float(math.floor(math.sqrt(n * following[0])))
        table.append((limit, algorithm))
    return tuple(table)


def validate_table(table, isa: str = "") -> Table:
    """The table as a tuple of (float, str); ValueError if it could not drive choose_algorithm."""
    checked = []
    previous = -math.inf
    for entry in table:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2:
            raise ValueError(f"tuning table {isa}: entry {entry!r} is not (max_n, algorithm)")
        limit, algorithm = entry
        limit = math.inf if limit is None else limit
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= previous:
            raise ValueError(f"tuning table {isa}: limit {limit!r} is not a number above "
                             f"the previous {previous}")
        if algorithm not in variants.ALGORITHMS:
            raise ValueError(f"tuning table {isa}: unknown algorithm {algorithm!r}; valid: "
                             f"{', '.join(variants.ALGORITHMS)}")
        checked.append((float(limit), algorithm))
        previous = limit
    if not checked or checked[-1][0] != math.inf:
        raise ValueError(f"tuning table {isa}: the last entry must have no limit (infinity)")
    return tuple(checked)


def save_tables(tables: dict, measurements: dict | None = None, created: str = "") -> Path:
    """Store {isa: table} for this host (replacing any earlier file); returns its path."""
    document = {
        "format": FORMAT,
        "softjit": softjit_version(),
        "cpu": host_identity(),
        "created": created,
        "kernels": {isa: kernel_names(isa) for isa in tables},
        # infinity as null: JSON has no infinity
        "tables": {isa: [[None if math.isinf(limit) else limit, algorithm]
                         for limit, algorithm in validate_table(table, isa)]
                   for isa, table in tables.items()},
        "measurements": measurements or {},
    }
    path = table_path()
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    import tempfile  # (here: the first call of a process reads a table, never writes one)

    descriptor, temporary = tempfile.mkstemp(prefix=".tuning-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:  # mkstemp: mode 0600
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    memo.tuned_table_changed()
    return path


def read_document() -> dict | None:
    """The stored file as a dict, or None when there is none or it is not JSON."""
    try:
        path = table_path()
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
    except (OSError, ValueError, SoftjitError):
        return None
    return document if isinstance(document, dict) else None


def load_table(isa: str) -> Table | None:
    """The tuned table of `isa` for this host and this softjit, or None (no file, another version,
    CPU or kernel set, an ISA that was not tuned, or a malformed file)."""
    document = read_document()
    if document is None:
        return None
    try:
        if (document.get("format") != FORMAT or document.get("softjit") != softjit_version()
                or document.get("cpu") != host_identity()
                or document.get("kernels", {}).get(isa) != kernel_names(isa)):
            return None
        table = document.get("tables", {}).get(isa)
        return None if table is None else validate_table(table, isa)
    except (ValueError, TypeError, AttributeError, SoftjitError):
        return None


def cached_table(isa: str) -> Table | None:
    """load_table(isa), read once per process (save_tables in this process forgets it): for a
    per-call path, where reading the file each time would cost more than a small softmax."""
    key = (isa, os.environ.get("SOFTJIT_CACHE_DIR"), os.environ.get("XDG_CACHE_HOME"))
    if key not in memo.TUNED_TABLES:
        memo.TUNED_TABLES[key] = load_table(isa)
    return memo.TUNED_TABLES[key]
