"""Which kernels each generated entry calls: the tables behind the public functions' first path.

softjit.softmax(x, ...) and softjit.exp(x, ...) first offer their arrays to a CPython entry
(runtime/entries.py) built for the (algorithm, ISA) the call names. The entry's table holds every
row driver that call could need, chosen inside the entry by row length and array size exactly as
the general path chooses (dispatch.py: the algorithm table of "auto", non-temporal stores from
NONTEMPORAL_MIN_BYTES), so one native call does what the general path does for a contiguous
last axis, recomputation of marked rows included. Rows of dispatch.SPLIT_ROW_MIN or more elements
are not the entry's: they are reduced chunk by chunk (rows.py), so the table's last row refuses
them and the general path runs them.

One entry per (function, algorithm, ISA): a handful per process, whatever the shapes. The built
entries are memoised in memo.py.
"""
from __future__ import annotations

import math

from softjit.codegen import entry_layout as layout
from softjit.codegen import variants
from softjit.runtime import dispatch, entries, memo, native
from softjit.runtime.forksafe import ForkSafeLock

_lock = ForkSafeLock()



def softmax_rows(algorithm: str, isa: str, scaled: bool = False) -> list:
    """The table rows (max_n, max_bytes, driver, fallback) of `algorithm` ("auto" or a named
    one) on `isa`, in the order the entry tries them; scaled: of the scaled drivers, where every
    algorithm may mark rows (rows.recompute_rows), all with the scaled three-pass-reload
    fallback."""
    from softjit.runtime import tuning

    if algorithm == "auto":
        table = tuning.cached_table(isa) or dispatch.AUTO_TABLE[isa]
    else:
        table = ((math.inf, algorithm),)
    rows = []
    longest = dispatch.SPLIT_ROW_MIN - 1  # longer rows: the general path
    for limit, chosen in table:
        max_n = longest if math.isinf(limit) else min(int(limit), longest)
        # two-pass marks rows it cannot represent; three-pass-reload takes any float32 row
        fallback = (_driver("three-pass-reload", isa, False, scaled=scaled)
                    if chosen == "two-pass" or scaled else 0)
        rows.append((max_n, dispatch.NONTEMPORAL_MIN_BYTES - 1,
                     _driver(chosen, isa, False, scaled=scaled), fallback))
        rows.append((max_n, layout.FITS_ALL, _driver(chosen, isa, True, scaled=scaled),
                     fallback))
    rows.append((layout.FITS_ALL, layout.FITS_ALL, 0, 0))  # refuse: the general path
    return rows


def _driver(algorithm: str, isa: str, nontemporal: bool, scaled: bool = False) -> int:
    """The address of the row driver the general path runs for these (bindings.driver)."""
    variant = variants.REGISTRY.softmax_or_plain(algorithm, isa, nontemporal, scaled=scaled)
    return native.function_address(variant, variant.driver_symbol)


def softmax_entry(algorithm: str, isa: str):
    """The entry for softmax with `algorithm` on `isa` (both already validated), or None where
    entries are not used."""
    key = (algorithm, isa)
    found = memo.SOFTMAX_ENTRIES.get(key)
    if found is None:
        if entries.unavailable_reason() is not None:
            return None
        with _lock:
            found = memo.SOFTMAX_ENTRIES.get(key)
            if found is None:
                found = memo.SOFTMAX_ENTRIES[key] = entries.softmax_rows(
                    softmax_rows(algorithm, isa))
    return found


def softmax_row_table(algorithm: str, isa: str, scaled: bool = False) -> bytes:
    """The rows of softmax_rows(algorithm, isa, scaled) packed as the public builtin reads
    them."""
    key = (algorithm, isa, "scaled") if scaled else (algorithm, isa)
    found = memo.SOFTMAX_ROW_TABLES.get(key)
    if found is None:
        with _lock:
            found = memo.SOFTMAX_ROW_TABLES.get(key)
            if found is None:
                found = memo.SOFTMAX_ROW_TABLES[key] = entries.pack_rows(
                    softmax_rows(algorithm, isa, scaled))
    return found


def log_softmax_rows(algorithm: str, isa: str) -> list:
    """The table rows (max_n, max_bytes, driver, 0) of log_softmax with `algorithm` ("auto" or a
    named one) on `isa` for float32 rows: the log_softmax driver of the module the Python
    function runs for such rows (log_softmax._choose, log_softmax.stores_nontemporal), which
    needs no fallback. The rows' bounds are the row lengths and sizes where that choice
    changes: where "auto" changes algorithm, where rows and outputs become long enough for
    non-temporal stores."""
    from softjit.runtime import log_softmax

    long_rows = log_softmax.NONTEMPORAL_MIN_ROW_BYTES // 4  # elements
    bounds = sorted({log_softmax.THREE_PASS_MAX_ROW, long_rows - 1, layout.FITS_ALL})
    rows = []
    for max_n in bounds:  # each choice below holds for every n up to max_n above the bound before
        chosen = log_softmax._choose(algorithm, max_n, isa)
        for max_bytes in (log_softmax.NONTEMPORAL_MIN_BYTES - 1, layout.FITS_ALL):
            nontemporal = log_softmax.stores_nontemporal(chosen, max_bytes, 4 * max_n)
            variant = variants.REGISTRY.log_softmax(chosen, isa, nontemporal)
            rows.append((max_n, max_bytes,
                         native.function_address(variant, variant.log_softmax_symbol), 0))
    return rows


def log_softmax_row_table(algorithm: str, isa: str) -> bytes:
    """The rows of log_softmax_rows(algorithm, isa) packed as the public builtin reads them."""
    key = (algorithm, isa)
    found = memo.LOG_SOFTMAX_ROW_TABLES.get(key)
    if found is None:
        with _lock:
            found = memo.LOG_SOFTMAX_ROW_TABLES.get(key)
            if found is None:
                found = memo.LOG_SOFTMAX_ROW_TABLES[key] = entries.pack_rows(
                    log_softmax_rows(algorithm, isa))
    return found


def exp_kernel(isa: str) -> bytes:
    """The exp kernel of `isa` as the public exp builtin reads it (entries.pack_kernel)."""
    found = memo.EXP_KERNELS.get(isa)
    if found is None:
        with _lock:
            found = memo.EXP_KERNELS.get(isa)
            if found is None:
                found = memo.EXP_KERNELS[isa] = entries.pack_kernel(
                    native.function_address(variants.REGISTRY.for_op("vexp", isa)))
    return found


def exp_entry(isa: str):
    """The entry for exp on `isa` (validated), or None where entries are not used."""
    found = memo.EXP_ENTRIES.get(isa)
    if found is None:
        if entries.unavailable_reason() is not None:
            return None
        with _lock:
            found = memo.EXP_ENTRIES.get(isa)
            if found is None:
                found = memo.EXP_ENTRIES[isa] = entries.elementwise(
                    native.function_address(variants.REGISTRY.for_op("vexp", isa)))
    return found
