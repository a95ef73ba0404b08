"""The public functions: softjit.exp, softjit.softmax, softjit.assembly, softjit.host_isas, and
the checks of their arguments.

Each public function first offers its arrays to the generated CPython entry of the call's
(algorithm, isa) (runtime/entries.py; registered once the general path has validated that
algorithm and isa), which runs the whole call natively for a contiguous last axis. Whatever the
entry refuses goes to the general path: the checks below, then dispatch.py (which ISA, which
algorithm) and rows.py (batches, threads, recomputed rows), with the kernels from bindings.py.
"""
from __future__ import annotations

import sys

import numpy as np

from softjit.codegen.lazy import LazyModule
from softjit.runtime import cpu, entries
from softjit.runtime import tensors
from softjit.runtime.dispatch import ALGORITHMS, choose_algorithm, nontemporal_for, resolve_isa
from softjit.runtime.elements import algorithm_for, check_algorithm, element_named, element_of
from softjit.runtime.memo import (EXP_ENTRY_CALLS, EXP_ROUTES, SCALES_KEPT, SOFTMAX_ENTRY_CALLS,
                                  SOFTMAX_ROUTES, SOFTMAX_SCALED_ROUTES, SOFTMAX_SCALES)
from softjit.runtime.inputs import as_float32_array, compute_input, requested_dtype
from softjit.runtime.scaled import check_scale

# Imported at their first use, not with softjit (tests/test_import_cost.py): cffi's bindings and
# the row runner serve the general path only; the entry tables, the first call of a kind.
bindings = LazyModule("softjit.runtime.bindings")
entry_tables = LazyModule("softjit.runtime.entry_tables")
rows_module = LazyModule("softjit.runtime.rows")
variants = LazyModule("softjit.codegen.variants")

_FLOAT32 = np.dtype(np.float32)
_FLOAT32_TYPE, _FLOAT64 = np.float32, np.dtype(np.float64)
_NDARRAY = np.ndarray
_empty = np.empty
_ONE, _LAST = 1, -1


def host_isas() -> tuple:
    """The ISAs this host runs, best first (SOFTJIT_ISA caps it)."""
    return cpu.host_isas()


# ---------------------------------------------------------------------------- argument checks
def is_integer(value) -> bool:
    """An int or numpy integer, not a bool (True is an int to Python, never a count or an axis)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_threads(threads, function: str) -> None:
    """threads: a positive int (a numpy integer too; not a bool, not a float) of at most
    sys.maxsize. More threads than can help are accepted and capped where they are used
    (rows.threads_for: at most the CPUs this process may run on, and the pieces of work)."""
    if not is_integer(threads):
        raise TypeError(f"softjit.{function}: threads must be a positive integer (a count of "
                        f"threads), not {threads!r} of type {type(threads).__name__}")
    if not 1 <= threads <= sys.maxsize:
        raise ValueError(f"softjit.{function}: threads must be between 1 and sys.maxsize "
                         f"({sys.maxsize}); got {threads!r}")


_INPUT_DTYPE = " (the input's dtype)"


def check_out(out, shape: tuple, function: str, dtype=_FLOAT32) -> np.ndarray:
    """out must be a writable numpy array of `shape` and `dtype` (the input's)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"softjit.{function}: out must be a numpy.ndarray, not {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"softjit.{function}: out has dtype {out.dtype}; it must be {dtype}"
                        f"{_INPUT_DTYPE if dtype != _FLOAT32 else ''}")
    if out.shape != shape:
        raise ValueError(f"softjit.{function}: out has shape {out.shape}; it must be {shape}")
    if not out.flags.writeable:
        raise ValueError(f"softjit.{function}: out is read-only")
    return out


def writes_directly(out: np.ndarray, src: np.ndarray) -> bool:
    """True when a kernel reading src may write out element by element in place.

    Either out is exactly src (in place) or they share no memory; any other overlap (a shifted
    view) would let early writes corrupt later reads.
    """
    if not out.flags.c_contiguous:
        return False
    if out is src:
        return True
    if not np.shares_memory(out, src):
        return True
    return out.ctypes.data == src.ctypes.data and out.strides == src.strides


def _fresh_output(out, x: np.ndarray) -> bool:
    """out is a C-contiguous, aligned, writable array of x's dtype and shape sharing no memory
    with x: the contiguous path may write it directly."""
    return (type(out) is np.ndarray and out.dtype == x.dtype and out.shape == x.shape
            and out.flags.c_contiguous and out.flags.writeable and out.flags.aligned
            and not np.shares_memory(out, x))


# ---------------------------------------------------------------------------- exp
def exp(x, *, isa: str = "auto", out=None, dtype=None) -> np.ndarray:
    """y = exp(x) elementwise on float32 arrays (or torch CPU tensors) of any shape, with the
    kernel for `isa`. dtype=numpy.float32 computes other dtypes (float64) in float32.

    Within 2 ULP of the correctly rounded result wherever that is a normal float; subnormal
    results rounded once; exp(-inf) = 0, exp(+inf) = +inf, NaN stays NaN.
    """
    # First path: the generated entry (registered once the general path validated this isa);
    # whatever it refuses goes to the general path, which raises what a bad argument deserves.
    try:
        entry = EXP_ENTRY_CALLS.get(isa)
    except TypeError:  # an unhashable isa
        entry = None
    if entry is not None and dtype is None:
        if out is not None:
            if entry(x, out) is not NotImplemented:
                return out
        elif x.__class__ is _NDARRAY:
            y = _empty(x.shape, _FLOAT32)
            if entry(x, y) is not NotImplemented:
                return y
    return _exp_general(x, isa, out, dtype)


def _exp_general(x, isa, out, dtype=None) -> np.ndarray:
    if tensors.is_tensor(x) or tensors.is_tensor(out):
        return tensors.through_tensors("exp", x, out, lambda xa, oa: _exp_general(
            xa, isa, oa, dtype))
    isa_argument = isa
    x = as_float32_array(x, "exp", dtype)
    isa = resolve_isa(isa)
    entry = entry_tables.exp_entry(isa)
    if entry is not None and isinstance(isa_argument, str):
        EXP_ENTRY_CALLS[isa_argument] = entry
        if exp is not _python_exp and type(isa_argument) is str:  # the builtin's kernel
            EXP_ROUTES[isa_argument] = entry_tables.exp_kernel(isa)  # (exact str keys only)
    out = np.empty(x.shape, np.float32) if out is None else check_out(out, x.shape, "exp")
    if x.size == 0:
        return out
    if entry is not None and entry(x, out) is not NotImplemented:
        return out  # a call the first path did not take (the first of its kind, a list)
    src = np.ascontiguousarray(x)
    dst = out if writes_directly(out, src) else np.empty(x.shape, np.float32)
    run = bindings.default_function("vexp", isa)
    run(bindings.pointer(src), bindings.pointer(dst), src.size)
    if dst is not out:
        np.copyto(out, dst)
    return out


# ---------------------------------------------------------------------------- softmax
def softmax(x, axis: int = -1, *, algorithm: str = "auto", isa: str = "auto", out=None,
            threads: int = 1, scale=None, dtype=None) -> np.ndarray:
    """softmax along `axis` of a float32 array (or torch CPU tensor): exp(x - max) / sum(exp(x -
    max)). dtype=numpy.float32 computes other dtypes (float64) in float32.

    algorithm: "auto" (the fastest for the row length on this host), "two-pass",
    "three-pass-reload" or "three-pass-recompute"; isa: "auto", "avx2" or "avx512f".
    out may be x itself (in place) or any float32 array of x's shape. Rows holding NaN or +inf,
    or only -inf, come out all NaN; -inf entries give exactly 0.

    threads: how many threads may share the work, a positive int. softjit uses at most the
    number of CPUs this process may run on (os.sched_getaffinity) and at most the number of
    pieces there are (the rows of a batch, or the chunks of a row of SPLIT_ROW_MIN = 2^20 or more
    elements), so any larger value is safe. The results are bitwise identical for every threads.

    scale: a temperature, softmax(scale * x): a finite real number (None: 1). Every element of x
    is multiplied by float32(scale) as the kernels load it, so where those products are finite
    the result has the bits of softmax(numpy.float32(scale) * x); rows where a product
    overflows are computed in float64 (runtime/scaled.py).
    """
    # First path: the generated entry of this (algorithm, isa), for a contiguous last axis. The
    # entry is registered only after the general path validated the same algorithm and isa, and
    # only an int axis and threads == 1 (ints, not bools or floats) come here, so whatever
    # this path accepts the general path accepts too; anything the entry refuses goes there.
    # `threads is _ONE`: the int 1 (CPython keeps one object for each small int), not True, 1.0
    # or numpy.int64(1), which the general path validates first.
    if scale is None and threads is _ONE and dtype is None and (axis is _LAST or (
            axis.__class__ is int and x.__class__ is _NDARRAY and axis == x.ndim - 1)):
        try:
            entry = SOFTMAX_ENTRY_CALLS.get((algorithm, isa))
        except TypeError:  # an unhashable algorithm or isa: the general path says what is wrong
            entry = None
        if entry is not None:
            if out is not None:
                if entry(x, out) is not NotImplemented:
                    return out
            elif x.__class__ is _NDARRAY:
                y = _empty(x.shape, _FLOAT32)
                if entry(x, y) is not NotImplemented:
                    return y
    if ((dtype is _FLOAT32_TYPE or dtype is _FLOAT32) and x.__class__ is _NDARRAY
            and x.dtype is _FLOAT64 and softmax is not _python_softmax):
        # float64 x computed in float32: the conversion dtype= asks for (inputs.compute_input:
        # numpy's same_kind cast), then the float32 call through the builtin
        return softmax(x.astype(_FLOAT32_TYPE), axis, algorithm=algorithm, isa=isa, out=out,
                       threads=threads, scale=scale)
    return _softmax_general(x, axis, algorithm, isa, out, threads, dtype, scale)


def _softmax_axes(x: np.ndarray, axis, algorithm, isa, out, threads, scale) -> np.ndarray:
    """softmax over several axes at once (None: all of them), as scipy.special.softmax takes
    them: the axes move to the end and merge into one row axis (a view when x's layout allows,
    else a copy); the rows' softmax is written back through out's matching view."""
    from softjit.runtime.log_softmax import _as_rows, _axes, _moved

    axes = _axes(axis, x.ndim, "softmax")
    if len(axes) == 1:
        return _softmax_general(x, axes[0], algorithm, isa, out, threads, scale=scale)
    out = np.empty(x.shape, x.dtype) if out is None else check_out(out, x.shape, "softmax",
                                                                   x.dtype)
    rows = _as_rows(_moved(x, axes), len(axes))
    result = _softmax_general(rows, -1, algorithm, isa, None, threads, scale=scale)
    om = _moved(out, axes)
    om[...] = result.reshape(om.shape)
    return out


def _softmax_general(x, axis, algorithm, isa, out, threads, dtype=None,
                     scale=None) -> np.ndarray:
    if tensors.is_tensor(x) or tensors.is_tensor(out):
        return tensors.through_tensors("softmax", x, out, lambda xa, oa: _softmax_general(
            xa, axis, algorithm, isa, oa, threads, dtype, scale))
    isa_argument = isa
    if dtype is not None:
        requested_dtype(dtype, "softmax")
    x = compute_input(x, dtype, "softmax", halves=True)
    element = element_of(x.dtype)
    if x.ndim == 0:
        raise ValueError("softjit.softmax needs an array with at least one dimension; got a 0-d array")
    if axis is None or isinstance(axis, tuple):
        return _softmax_axes(x, axis, algorithm, isa_argument, out, threads, scale)
    if not is_integer(axis):
        raise TypeError(f"softjit.softmax: axis must be an integer, None or a tuple of integers, "
                        f"not {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"softjit.softmax: axis {axis!r} is out of range for an array of "
                         f"{x.ndim} dimension(s)")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ValueError(f"softjit.softmax: unknown algorithm {algorithm!r}; "
                         f"valid: {', '.join(ALGORITHMS)}")
    check_algorithm(algorithm, element, "softmax")
    check_threads(threads, "softmax")
    input_scale = check_scale(scale, "softmax")
    if scale.__class__ in (float, int) and softmax is not _python_softmax:
        _register_scale(scale, input_scale)
    if input_scale is not None and x.dtype != _FLOAT32:
        return _scaled_16_bit(x, axis, algorithm, isa_argument, out, threads, scale)
    isa = resolve_isa(isa)
    entry = entry_tables.softmax_entry(algorithm, isa) if input_scale is None else None
    if entry is not None and isinstance(isa_argument, str):
        SOFTMAX_ENTRY_CALLS[(algorithm, isa_argument)] = entry
        # the public builtin's route for these; only exact str keys, so that its lookups never
        # run Python code (a str subclass could define __eq__)
        if (softmax is not _python_softmax and type(algorithm) is str
                and type(isa_argument) is str):
            SOFTMAX_ROUTES.setdefault(algorithm, {})[isa_argument] = (
                entry_tables.softmax_row_table(algorithm, isa))
    if (input_scale is not None and x.dtype == _FLOAT32 and softmax is not _python_softmax
            and type(algorithm) is str and type(isa_argument) is str):
        SOFTMAX_SCALED_ROUTES.setdefault(algorithm, {})[isa_argument] = (
            entry_tables.softmax_row_table(algorithm, isa, scaled=True))
    out = np.empty(x.shape, x.dtype) if out is None else check_out(out, x.shape, "softmax",
                                                                   x.dtype)
    if x.size == 0:
        return out
    if (entry is not None and threads == 1 and int(axis) % x.ndim == x.ndim - 1
            and entry(x, out) is not NotImplemented):
        return out  # a call the first path did not take (first of its kind, numpy ints, lists)
    if (threads == 1 and x.flags.c_contiguous and x.flags.aligned
            and int(axis) % x.ndim == x.ndim - 1 and (out is x or _fresh_output(out, x))):
        return _softmax_contiguous(x, isa, algorithm, out, input_scale)
    axis = int(axis) % x.ndim
    if axis == x.ndim - 1:
        xm, om = x, out
    else:
        xm, om = np.moveaxis(x, axis, -1), np.moveaxis(out, axis, -1)
    n = xm.shape[-1]
    if algorithm == "auto":
        algorithm = algorithm_for(choose_algorithm(isa, n, xm.size // n), element)
    src = rows_module.rows_view(xm)
    if src is None:
        src = np.ascontiguousarray(xm).reshape(-1, n)
    dst = rows_module.rows_view(om)
    if dst is None or not dst.flags.aligned or not rows_module.safe_overlap(dst, src):
        tmp = np.empty(src.shape, src.dtype)
        rows_module.run_rows(src, tmp, algorithm, isa, threads, input_scale)
        om[...] = tmp.reshape(xm.shape)
    else:
        rows_module.run_rows(src, dst, algorithm, isa, threads, input_scale)
    return out


def _register_scale(scale, input_scale) -> None:
    """The public builtin's entry for a validated scale= value, an exact int or float (check_scale
    rounds it to input_scale, None for the unscaled kernels); at most SCALES_KEPT are kept."""
    if scale not in SOFTMAX_SCALES:
        if len(SOFTMAX_SCALES) >= SCALES_KEPT:
            SOFTMAX_SCALES.clear()  # bounded: a process calling with ever new temperatures
        SOFTMAX_SCALES[scale] = entries.pack_scale(input_scale)


def _scaled_16_bit(x: np.ndarray, axis, algorithm, isa, out, threads, scale) -> np.ndarray:
    """softmax(scale * x) of float16 / bfloat16 x: no kernel multiplies 16-bit elements by a
    scale, so x is widened to float32 on the host, computed by the scaled float32 kernels and
    rounded to nearest even back to x's dtype (what the 16-bit kernels do in registers)."""
    out = np.empty(x.shape, x.dtype) if out is None else check_out(out, x.shape, "softmax",
                                                                   x.dtype)
    result = _softmax_general(x.astype(np.float32), axis, algorithm, isa, None, threads,
                              scale=scale)
    out[...] = result.astype(x.dtype)
    return out


def _softmax_contiguous(x: np.ndarray, isa: str, algorithm: str, out,
                        input_scale=None) -> np.ndarray:
    """softmax over the last axis of a C-contiguous array into a new array, into x itself, or
    into a separate C-contiguous out, through cffi: the contiguous calls where no entry is used
    (see runtime/entries.py), kept to the few operations they need."""
    n = x.shape[-1]
    rows = x.size // n
    y = np.empty_like(x) if out is None else out
    element = element_of(x.dtype)
    if algorithm == "auto":
        algorithm = algorithm_for(choose_algorithm(isa, n, rows), element)
    if n >= rows_module.SPLIT_ROW_MIN or nontemporal_for(x.nbytes):
        rows_module.run_rows(x.reshape(rows, n), y.reshape(rows, n), algorithm, isa, 1,
                             input_scale)
        return y
    if input_scale is None:
        marked, status = bindings.driver(algorithm, isa, False, element.name).contiguous(
            x, y, rows, n)
    else:
        marked, status = bindings.driver(algorithm, isa, False, element.name,
                                         scaled=True).contiguous(x, y, rows, n, input_scale)
    if marked:
        rows_module.recompute_rows(x.reshape(rows, n), y.reshape(rows, n), status[:rows], isa,
                                   input_scale)
    return y


# ---------------------------------------------------------------------------- assembly
def assembly(algorithm: str, isa: str = "auto", *, dtype="float32", scaled: bool = False) -> str:
    """The emitted assembly of every pass kernel (and the row driver) that `algorithm` uses.

    Besides the softmax algorithms: "log_softmax" and "logsumexp" (the two-pass log_softmax
    module, whose reduce driver logsumexp runs) and "log_softmax-three-pass". dtype: the kernels
    of "float32", "float16" or "bfloat16" arrays (a name or a numpy dtype). scaled: the kernels
    that scale=s runs (of scale * x): softmax's for float32 arrays, log_softmax's and
    logsumexp's for every dtype."""
    element = element_named(dtype, "assembly")
    scaled = bool(scaled)
    functions = {"log_softmax": "two-pass", "logsumexp": "two-pass",
                 "log_softmax-three-pass": "three-pass"}
    if isinstance(algorithm, str) and algorithm in functions:
        isa = resolve_isa("auto") if isa == "auto" else isa
        if isa not in cpu.ISAS:
            raise ValueError(f"softjit.assembly: unknown isa {isa!r}; valid: auto, "
                             f"{', '.join(cpu.ISAS)}")
        return bindings.assembly(variants.REGISTRY.log_softmax(functions[algorithm], isa,
                                                               element=element.name,
                                                               scaled=scaled))
    if algorithm == "auto":
        raise ValueError("softjit.assembly: name an algorithm: "
                         + ", ".join(variants.ALGORITHMS))
    if algorithm not in variants.ALGORITHMS:
        raise ValueError(f"softjit.assembly: unknown algorithm {algorithm!r}; valid: "
                         f"{', '.join(variants.ALGORITHMS + tuple(functions))}")
    if isa == "auto":
        isa = resolve_isa("auto")
    elif isa not in cpu.ISAS:
        raise ValueError(f"softjit.assembly: unknown isa {isa!r}; valid: auto, "
                         f"{', '.join(cpu.ISAS)}")
    check_algorithm(algorithm, element, "assembly")
    if scaled and element.name != "f32":
        raise ValueError(f"softjit.assembly: softmax's scaled kernels read float32 arrays, not "
                         f"{dtype!r} (16-bit arrays with softmax's scale= are widened on the "
                         f"host)")
    return bindings.assembly(variants.REGISTRY.softmax(algorithm, isa, element=element.name,
                                                       scaled=scaled))


# softjit.softmax and softjit.exp: the generated builtins that run the common calls natively
# and hand every other call to the Python functions above, which stay the owners of every
# check and error (runtime/entries.py: public_builtin); the Python functions where the
# builtins are not used.
_python_softmax, _python_exp = softmax, exp
softmax = entries.public_softmax(_python_softmax, SOFTMAX_ROUTES, SOFTMAX_SCALES,
                                 SOFTMAX_SCALED_ROUTES) or _python_softmax
exp = entries.public_exp(_python_exp, EXP_ROUTES) or _python_exp
if softmax is not _python_softmax:
    # The builtin's first call of each kind finds its row drivers by name in the variant
    # registry (entry_tables.py, with the tuned table of "auto": tuning.py): these are imported
    # here, with the builtin, so that the first call with a warm cache stays a few milliseconds
    # (making the registry takes about 10). Where no builtin is made, the first call imports
    # them, with cffi.
    from softjit.runtime import entry_tables as _entry_tables, tuning as _tuning  # noqa: F401
