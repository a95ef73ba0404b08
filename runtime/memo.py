"""Every per-process memo of the runtime, in one place.

The runtime keeps what it has worked out once (a resolved ISA, a loaded library, a ready
argument list) so that the common calls cost a dict lookup. Each memo below is filled by
exactly one function, named beside it; nothing else writes them, and they are only ever emptied
in place (never rebound), so modules may bind them to local names once.

State that belongs to a subsystem stays with it: the kernel cache's records of verified objects
(cache.py, cachedir.py), the remembered assembly hashes (asm_index.py) and whether the entry
module can be used here (entries.py).

Two events empty some of them: a change of SOFTJIT_ISA (dispatch.py watches it) empties the
ISA-dependent memos, and forget_calls() empties the memos that hold native functions (for tests
that swap the kernels, and after a cache is cleared under a running process).
"""
from __future__ import annotations

# -------------------------------------------------- depend on SOFTJIT_ISA (see isa_changed)
RESOLVED_ISA: dict = {}  # isa argument -> concrete ISA           (dispatch.resolve_isa)
# The public functions' first paths, by the arguments as given (registered by the general path
# once it validated them):
EXP_ENTRY_CALLS: dict = {}  # isa argument -> exp entry            (api._exp_general)
SOFTMAX_ENTRY_CALLS: dict = {}  # (algorithm, isa argument) -> entry (api._softmax_general)
# The public softmax builtin's routes, {algorithm argument: {isa argument: rows table}}: its
# table holds this dict's address, so it is only ever emptied in place (api._softmax_general)
SOFTMAX_ROUTES: dict = {}
EXP_ROUTES: dict = {}  # the public exp builtin's, {isa argument: kernel} (api._exp_general)
# ... and of its scaled row drivers (softmax(x, scale=s)), the same way (api._softmax_general)
SOFTMAX_SCALED_ROUTES: dict = {}
LOG_SOFTMAX_ROUTES: dict = {}  # the log_softmax builtin's, as softmax's (log_softmax.log_softmax)

# -------------------------------------------------- scale= values validated, at most SCALES_KEPT
# {scale (an exact int or float): its float32 bits} for the public softmax builtin; emptied in
# place when full                                                   (api._softmax_general)
SOFTMAX_SCALES: dict = {}
SCALES_KEPT = 256

# -------------------------------------------------- pure functions of their keys
BUILT_MODULES: dict = {}  # variant -> its built Module            (bindings.module)
ASSEMBLY: dict = {}  # variant -> its assembly text               (bindings.assembly)
AUTO_ALGORITHM: dict = {}  # (isa, n) -> the algorithm "auto" runs (dispatch.auto_algorithm)
TUNED_TABLES: dict = {}  # (isa, cache dir settings) -> table | None (tuning.cached_table)

# -------------------------------------------------- native functions and their ready arguments
LIBRARIES: dict = {}  # (name, sha256 of asm, of cdef) -> (ffi, lib) (bindings.load_library)
NATIVE_MODULES: dict = {}  # module name -> ctypes.CDLL, for addresses (native.load)
# (algorithm, isa, nontemporal[, element unless "f32"][, "scaled"]) -> RowDriver / Passes
DRIVERS: dict = {}  # (bindings.driver)
PASSES: dict = {}  # (bindings.passes)
ROW_STRIDES: dict = {}  # row bytes [, scale] -> (row_strides, its pointer) (bindings.row_strides)
# The CPython entries built so far (runtime/entries.py), by concrete ISA:
SOFTMAX_ENTRIES: dict = {}  # (algorithm, isa) -> entry          (entry_tables.softmax_entry)
EXP_ENTRIES: dict = {}  # isa -> entry                              (entry_tables.exp_entry)
# (algorithm, isa[, "scaled"]) -> rows bytes                   (entry_tables.softmax_row_table)
SOFTMAX_ROW_TABLES: dict = {}
# (algorithm, isa) -> rows bytes                         (entry_tables.log_softmax_row_table)
LOG_SOFTMAX_ROW_TABLES: dict = {}
EXP_KERNELS: dict = {}  # isa -> kernel bytes                     (entry_tables.exp_kernel)


def isa_changed() -> None:
    """SOFTJIT_ISA was set or unset: what "auto" and an ISA cap resolve to may differ now."""
    RESOLVED_ISA.clear()
    EXP_ENTRY_CALLS.clear()
    SOFTMAX_ENTRY_CALLS.clear()
    SOFTMAX_ROUTES.clear()
    SOFTMAX_SCALED_ROUTES.clear()
    LOG_SOFTMAX_ROUTES.clear()
    EXP_ROUTES.clear()


def tuned_table_changed() -> None:
    """`python -m softjit tune` stored a new table: what "auto" chose may differ now."""
    TUNED_TABLES.clear()
    AUTO_ALGORITHM.clear()
    SOFTMAX_ENTRIES.clear()  # their tables hold the drivers the old table chose
    SOFTMAX_ROW_TABLES.clear()
    SOFTMAX_ENTRY_CALLS.clear()
    SOFTMAX_ROUTES.clear()
    SOFTMAX_SCALED_ROUTES.clear()


def forget_calls() -> None:
    """Forget every memoised native function and the choices that lead to one (the next call
    finds or loads them again). Loaded libraries stay loaded: cffi cannot unload them safely."""
    isa_changed()
    tuned_table_changed()
    DRIVERS.clear()
    PASSES.clear()
    EXP_ENTRIES.clear()
    SOFTMAX_ROW_TABLES.clear()
    LOG_SOFTMAX_ROW_TABLES.clear()
    EXP_KERNELS.clear()
