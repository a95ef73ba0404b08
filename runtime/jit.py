"""softjit.jit: a kernel builder (or a ready Module) becomes a Python callable on numpy arrays.

    def twice(f):                                   # f: a softjit.codegen.Function
        x, y, n = f.args                            # registers, in the order of `args`
        ...                                         # emit instructions
        f.ret()

    k = softjit.jit(twice, args=[In("x", "float32", "n"), Out("y", "float32", "n"), Size("n")])
    y = k(x)                                        # y allocated, n taken from x.shape
    k.assembly()                                    # the GNU as text
    k.emulate(x, isa="avx512f")                     # the same kernel in the emulator, any host

The arguments are declared once: arrays (In / Out / InOut) with a dtype and a shape whose
entries are ints or size names, and Size parameters bound from those shapes. A call checks every
array (dtype, shape, C-contiguity, writability) and raises ValueError / TypeError naming the
argument. Out arrays that are not passed are allocated and returned.

The module is assembled, cached and verified by the same kernel cache as the built-in kernels
(runtime/cache.py, runtime/bindings.py), so a second process loads it without assembling. A kernel
declared as softjit.exp's shape, (In x float32 [n], Out y float32 [n], Size n), is called through
the same generated CPython entry as softjit.exp (runtime/entries.py: a METH_FASTCALL function in
assembly taking the arrays through the buffer protocol) with the user's kernel in its table;
every other signature, and every call the entry declines (an empty or non-contiguous array, a
wrong dtype, names), goes through cffi (the raw-kernel interface: dlopen of the .so, every
pointer as void*), which also raises the errors bad arguments deserve.
"""
from __future__ import annotations

import functools
import inspect
import re
from dataclasses import dataclass

import numpy as np

from softjit.codegen.abi import Param, Signature
from softjit.codegen.isa import get_target
from softjit.codegen.module import Module
from softjit.codegen.pipeline import render_module
from softjit.codegen.stream import Function
from softjit.runtime import cpu
from softjit.runtime.dispatch import isa_setting
from softjit.runtime.errors import UnsupportedISAError

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double",
           np.dtype(np.int32): "int32_t", np.dtype(np.uint32): "uint32_t",
           np.dtype(np.int64): "int64_t", np.dtype(np.uint64): "uint64_t",
           np.dtype(np.int16): "int16_t", np.dtype(np.uint16): "uint16_t",
           np.dtype(np.float16): "uint16_t", np.dtype(np.int8): "int8_t",
           np.dtype(np.uint8): "uint8_t"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# The entry is chosen per (isa argument, SOFTJIT_ISA); dispatch.isa_setting() knows the
# variable's value without reading the environment per call.
_isa_setting = isa_setting


@dataclass(frozen=True)
class Array:
    """A numpy array argument: passed as a pointer to its first element.

    role: "in" (read only), "out" (written; allocated and returned when not passed) or "inout"
    (read and written; must be passed). shape: ints and size names ("n"); a size name is bound by
    the first array that has it and must match in the others."""

    name: str
    dtype: object
    shape: tuple = ("n",)
    role: str = "in"

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        if isinstance(self.shape, (str, int)):
            object.__setattr__(self, "shape", (self.shape,))
        object.__setattr__(self, "shape", tuple(self.shape))
        if self.role not in ("in", "out", "inout"):
            raise ValueError(f"array {self.name!r}: role must be 'in', 'out' or 'inout', "
                             f"not {self.role!r}")
        if self.dtype not in _CTYPES:
            raise ValueError(f"array {self.name!r}: dtype {self.dtype} is not supported "
                             f"(supported: {', '.join(sorted(str(d) for d in _CTYPES))})")

    @property
    def param(self) -> Param:
        const = "const " if self.role == "in" else ""
        return Param(f"{const}{_CTYPES[self.dtype]}*", self.name)


def In(name: str, dtype, *shape) -> Array:  # noqa: N802 - reads like a declaration
    """An input array: In("x", "float32", "n") or In("w", "float32", "rows", "n")."""
    return Array(name, dtype, shape or ("n",), "in")


def Out(name: str, dtype, *shape) -> Array:  # noqa: N802
    """An output array, allocated (np.empty) and returned when the call does not pass it."""
    return Array(name, dtype, shape or ("n",), "out")


def InOut(name: str, dtype, *shape) -> Array:  # noqa: N802
    """An array the kernel reads and writes in place; the call must pass it."""
    return Array(name, dtype, shape or ("n",), "inout")


@dataclass(frozen=True)
class Size:
    """A size_t argument whose value is a size name of the arrays' shapes (or passed by name)."""

    name: str

    @property
    def param(self) -> Param:
        return Param("size_t", self.name)


class JitKernel:
    """A compiled-on-demand kernel: call it on numpy arrays; .assembly(), .emulate(), .module().

    Built and loaded once per ISA (the first call); the kernel cache keeps the shared object
    across processes."""

    def __init__(self, builder, args, *, name: str | None = None, isa: str = "auto",
                 params: dict | None = None):
        if isinstance(builder, Module):
            module = builder
            self._builder = None
            self._fixed_module = module
            name = name or module.name
            isa = module.target.name if isa == "auto" else isa
        elif callable(builder):
            self._builder = builder
            self._fixed_module = None
            name = name or getattr(builder, "__name__", "kernel")
        else:
            raise TypeError(f"jit() takes a kernel builder (a function of a Function) or a "
                            f"Module, not {type(builder).__name__}")
        if not _NAME.match(name or ""):
            raise ValueError(f"kernel name {name!r} is not a C identifier")
        self.name = name
        self.args = tuple(args)
        if not self.args:
            raise ValueError("declare the kernel's arguments: args=[In(...), Out(...), Size(...)]")
        names = [a.name for a in self.args]
        if len(set(names)) != len(names):
            raise ValueError(f"argument names must differ: {names}")
        for a in self.args:
            if not isinstance(a, (Array, Size)):
                raise TypeError(f"argument {a!r}: declare arrays with In/Out/InOut and sizes "
                                f"with Size")
        sizes = {a.name for a in self.args if isinstance(a, Size)}
        dims = {d for a in self.args if isinstance(a, Array) for d in a.shape if isinstance(d, str)}
        unbound = sizes - dims
        if unbound:
            raise ValueError(f"size {sorted(unbound)} is not in any array's shape, so a call "
                             f"cannot bind it")
        self.isa = isa
        self.params = dict(params or {})
        # softjit.exp's shape: the generated elementwise entry can call this kernel
        self._elementwise = (
            len(self.args) == 3 and isinstance(self.args[2], Size)
            and all(isinstance(a, Array) and a.dtype == np.float32 and a.shape == (self.args[2].name,)
                    for a in self.args[:2])
            and (self.args[0].role, self.args[1].role) == ("in", "out"))
        self._entries: dict = {}
        self.signature = Signature(name, tuple(a.param for a in self.args),
                                   doc=(inspect.getdoc(builder) or "") if self._builder else "")

    # -- building ---------------------------------------------------------------------------

    def _isa(self, isa: str | None) -> str:
        isa = isa or self.isa
        if isa != "auto":
            get_target(isa)  # a ValueError listing the targets for an unknown name
            return isa
        host = cpu.host_isas()
        if not host:
            raise UnsupportedISAError("auto", host, cpu.isa_cap())
        return host[0]

    @functools.lru_cache(maxsize=None)
    def module(self, isa: str | None = None) -> Module:
        """The kernel's Module on `isa` (default: the kernel's ISA; "auto": the host's best)."""
        isa = self._isa(isa)
        if self._fixed_module is not None:
            if isa != self._fixed_module.target.name:
                raise ValueError(f"{self.name} is a built Module for {self._fixed_module.target}; "
                                 f"it cannot be rebuilt for {isa}")
            return self._fixed_module
        f = Function(self.signature, get_target(isa))
        self._builder(f, **self.params)
        if not f.items or f.items[-1].__class__.__name__ != "Instr" or \
                f.items[-1].mnemonic != "ret":
            raise ValueError(f"kernel builder {self.name!r} must end with f.ret()")
        return Module(self.name, f.target, f"softjit.jit kernel {self.name}", (f,))

    def variant(self, isa: str):
        """This kernel on `isa` as a registrable variant (softjit.codegen.register), named
        NAME__ISA: it then appears in `asm --list`, `generate`, `build` and the prebuilt
        manifest, with op "jit"."""
        from softjit.codegen.variants import UserVariant

        def build(name, target):
            module = self.module(target.name)
            return Module(name, module.target, module.description, module.functions)
        return UserVariant(f"{self.name}__{isa}", isa, "jit", build,
                           f"softjit.jit kernel {self.name}")

    def assembly(self, isa: str | None = None) -> str:
        """The GNU assembler text (Intel syntax) of the kernel on `isa`."""
        return render_module(self.module(isa))

    @functools.lru_cache(maxsize=None)
    def _native(self, isa: str):
        from softjit.runtime.bindings import load_library

        module = self.module(isa)
        missing = set(module.features) - cpu.host_features()
        if isa not in cpu.host_isas() or missing:
            raise UnsupportedISAError(isa, cpu.host_isas(), cpu.isa_cap())
        ffi, lib = load_library(f"jit_{self.name}_{isa}", render_module(module),
                                module.cffi_cdef())
        return ffi, getattr(lib, self.name)

    @functools.lru_cache(maxsize=None)
    def _machine(self, isa: str):
        from softjit.codegen.emulator import Machine

        return Machine(self.assembly(isa))

    # -- calling ----------------------------------------------------------------------------

    def _bind(self, arrays, named):
        """(arrays by name in declaration order, sizes, outputs to return)."""
        declared = [a for a in self.args if isinstance(a, Array)]
        given = dict(named)
        positional = list(arrays)
        for a in declared:
            if not positional:
                break
            if a.name in given:
                raise TypeError(f"{self.name}() got argument {a.name!r} twice")
            given[a.name] = positional.pop(0)
        if positional:
            raise TypeError(f"{self.name}() takes {len(declared)} arrays "
                            f"({', '.join(a.name for a in declared)}), got {len(arrays)}")
        unknown = set(given) - {a.name for a in self.args}
        if unknown:
            raise TypeError(f"{self.name}() got unknown arguments {sorted(unknown)}")
        sizes = {a.name: int(given.pop(a.name)) for a in self.args
                 if isinstance(a, Size) and a.name in given}
        bound, returned = {}, []
        for a in declared:
            value = given.get(a.name)
            if value is None:
                if a.role != "out":
                    raise TypeError(f"{self.name}() missing array {a.name!r}")
                continue
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{self.name}(): {a.name} must be a numpy array, not "
                                f"{type(value).__name__}")
            if value.dtype != a.dtype:
                raise TypeError(f"{self.name}(): {a.name} has dtype {value.dtype}, the kernel "
                                f"declares {a.dtype} (convert with .astype(np.{a.dtype}))")
            if value.ndim != len(a.shape):
                raise ValueError(f"{self.name}(): {a.name} has {value.ndim} dimensions, the "
                                 f"kernel declares {len(a.shape)} {a.shape}")
            for dim, size in zip(a.shape, value.shape):
                if isinstance(dim, int):
                    if size != dim:
                        raise ValueError(f"{self.name}(): {a.name} has shape {value.shape}, "
                                         f"the kernel declares {a.shape}")
                elif sizes.setdefault(dim, size) != size:
                    raise ValueError(f"{self.name}(): {a.name} has {dim} = {size}, but "
                                     f"{dim} = {sizes[dim]} from the other arguments")
            if not value.flags.c_contiguous:
                raise ValueError(f"{self.name}(): {a.name} is not C-contiguous (pass "
                                 f"np.ascontiguousarray({a.name}))")
            if a.role != "in" and not value.flags.writeable:
                raise ValueError(f"{self.name}(): {a.name} is read-only, the kernel writes it")
            bound[a.name] = value
        for a in declared:
            if a.name in bound:
                if a.role != "in":
                    returned.append(bound[a.name])
                continue
            shape = []
            for dim in a.shape:
                if isinstance(dim, str) and dim not in sizes:
                    raise TypeError(f"{self.name}(): cannot allocate {a.name}: size {dim!r} is "
                                    f"not known from the arrays passed (pass {a.name} or {dim})")
                shape.append(dim if isinstance(dim, int) else sizes[dim])
            bound[a.name] = np.empty(shape, a.dtype)
            returned.append(bound[a.name])
        for s in self.args:
            if isinstance(s, Size) and s.name not in sizes:
                raise TypeError(f"{self.name}(): size {s.name!r} is not bound")
        return bound, sizes, returned

    @staticmethod
    def _result(returned):
        if not returned:
            return None
        return returned[0] if len(returned) == 1 else tuple(returned)

    def _entry(self, isa: str):
        """The generated CPython entry calling this kernel (elementwise shape only), or None."""
        from softjit.runtime import entries

        key = (isa, _isa_setting())
        if key not in self._entries:
            entry = None
            if self._elementwise and entries.unavailable_reason() is None:
                ffi, function = self._native(self._isa(isa))
                entry = entries.elementwise(int(ffi.cast("uintptr_t", function)))
            self._entries[key] = entry
        return self._entries[key]

    def __call__(self, *arrays, isa: str | None = None, **named):
        """Run natively: arrays positionally (in declaration order) or by name."""
        if self._elementwise and not named and 1 <= len(arrays) <= 2:
            entry = self._entries.get((isa, _isa_setting()), False)
            if entry is False:
                entry = self._entry(isa)
            if entry is not None:
                x = arrays[0]
                y = arrays[1] if len(arrays) == 2 else (
                    np.empty_like(x) if x.__class__ is np.ndarray else None)
                if y is not None and entry(x, y) is not NotImplemented:
                    return y
        bound, sizes, returned = self._bind(arrays, named)
        ffi, function = self._native(self._isa(isa))
        values = []
        for a in self.args:
            if isinstance(a, Size):
                values.append(sizes[a.name])
            else:
                values.append(ffi.from_buffer(bound[a.name], require_writable=a.role != "in"))
        function(*values)
        return self._result(returned)

    def emulate(self, *arrays, isa: str | None = None, **named):
        """Run in softjit's emulator (any host; AVX-512 included): same arguments and results
        as a call. Every memory access is checked against the arrays (an access outside them
        raises softjit.codegen.emulator.EmulatedFault naming the instruction)."""
        bound, sizes, returned = self._bind(arrays, named)
        machine = self._machine(self._isa(isa))
        mapped, values = [], []
        try:
            for a in self.args:
                if isinstance(a, Size):
                    values.append(sizes[a.name])
                    continue
                array = bound[a.name]
                if array.size == 0:
                    values.append(0)  # nothing to map: the kernel must not touch it
                    continue
                address = machine.map(array, writable=a.role != "in")
                mapped.append(address)
                values.append(address)
            machine.call(self.name, *values)
        finally:
            for address in mapped:
                machine.unmap(address)
        return self._result(returned)

    def __repr__(self) -> str:
        return f"<softjit.jit kernel {self.signature.c_declaration()} isa={self.isa}>"


def jit(builder=None, *, args, name: str | None = None, isa: str = "auto", **params):
    """A JitKernel from a builder `builder(f, **params)` (or a built Module).

    Usable as a call, jit(builder, args=[...]), or as a decorator, @jit(args=[...]). params are
    passed to the builder: compile-time constants and unrolls, each combination its own kernel.
    """
    if builder is None:
        return lambda b: JitKernel(b, args, name=name, isa=isa, params=params)
    return JitKernel(builder, args, name=name, isa=isa, params=params)


# ---------------------------------------------------------------------------- specialisation
class Specialized:
    """A built-in kernel with parameters of your choosing, built on first use: softmax (any
    algorithm, unrolls, accumulators, interleave, non-temporal stores, block size) or exp
    (unroll), as `bench --sweep` builds its candidates. Call it on a float32 array (softmax:
    over the last axis of a C-contiguous array); .assembly() and .emulate() as for jit kernels.

    Rows the two-pass algorithm marks (its float32 sum would overflow) are redone with the
    registered three-pass-reload kernel, as softjit.softmax does."""

    def __init__(self, variant):
        self.variant = variant
        self.op = "softmax" if variant.op == "softmax" else "exp"

    @property
    def name(self) -> str:
        return self.variant.name

    def assembly(self) -> str:
        from softjit.runtime import bindings

        return bindings.assembly(self.variant)

    def _arrays(self, x, out):
        if not isinstance(x, np.ndarray) or x.dtype != np.float32:
            raise TypeError(f"{self.name}: x must be a float32 numpy array, not "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if not x.flags.c_contiguous:
            raise ValueError(f"{self.name}: x is not C-contiguous (pass np.ascontiguousarray(x))")
        if self.op == "softmax" and x.ndim == 0:
            raise ValueError(f"{self.name}: softmax needs at least one dimension")
        y = np.empty_like(x) if out is None else out
        if y.shape != x.shape or y.dtype != np.float32 or not y.flags.c_contiguous \
                or not y.flags.writeable:
            raise ValueError(f"{self.name}: out must be a writable C-contiguous float32 array "
                             f"of shape {x.shape}")
        return y

    def _rows(self, x):
        n = x.shape[-1] if x.ndim else 1
        return (x.size // n if n else 0), n

    def __call__(self, x, out=None):
        from softjit.codegen.variants import REGISTRY
        from softjit.runtime import bindings

        y = self._arrays(x, out)
        if self.variant.isa not in cpu.host_isas():
            raise UnsupportedISAError(self.variant.isa, cpu.host_isas(), cpu.isa_cap())
        pointer = bindings.pointer
        if self.op == "exp":
            bindings.function(self.variant)(pointer(x), pointer(y), x.size)
            return y
        rows, n = self._rows(x)
        if rows == 0 or n == 0:
            return y
        strides = np.array([4 * n, 4 * n], np.int64)
        status = np.zeros(rows, np.int32)
        driver = bindings.function(self.variant, self.variant.driver_symbol)
        marked = driver(pointer(x), pointer(y), n, rows, pointer(strides), pointer(status))
        if marked:
            fallback = REGISTRY.softmax("three-pass-reload", self.variant.isa)
            redo = bindings.function(fallback, fallback.driver_symbol)
            x2, y2 = x.reshape(rows, n), y.reshape(rows, n)
            one = np.zeros(1, np.int32)
            for r in np.flatnonzero(status):
                redo(pointer(x2[r]), pointer(y2[r]), n, 1, pointer(strides), pointer(one))
        return y

    def emulate(self, x, out=None):
        """The same computation in softjit's emulator (any host; AVX-512 included)."""
        from softjit.codegen.emulator import Machine
        from softjit.codegen.variants import REGISTRY
        from softjit.runtime import bindings

        y = self._arrays(x, out)
        if x.size == 0:
            return y
        machine = Machine(self.assembly())
        xa, ya = machine.map(x, writable=False), machine.map(y)
        if self.op == "exp":
            machine.call(self.variant.name, xa, ya, x.size)
            return y
        rows, n = self._rows(x)
        strides = np.array([4 * n, 4 * n], np.int64)
        status = np.zeros(rows, np.int32)
        sa, ta = machine.map(strides, writable=False), machine.map(status)
        marked = machine.call(self.variant.driver_symbol, xa, ya, n, rows, sa, ta)
        if marked:
            fallback = REGISTRY.softmax("three-pass-reload", self.variant.isa)
            redo = Machine(bindings.assembly(fallback))
            x2, y2 = x.reshape(rows, n), y.reshape(rows, n)
            for r in np.flatnonzero(status):
                xr, yr = np.ascontiguousarray(x2[r]), y2[r]
                one = np.zeros(1, np.int32)
                redo.call(fallback.driver_symbol, redo.map(xr, writable=False), redo.map(yr), n,
                          1, redo.map(strides, writable=False), redo.map(one))
        return y

    def __repr__(self) -> str:
        return f"<softjit.specialize {self.name}>"


def specialize(op: str, *, isa: str = "auto", algorithm: str = "two-pass", **params):
    """A built-in kernel with unregistered parameters, built on first use.

        softjit.specialize("softmax", algorithm="two-pass", isa="avx2", reduce_unroll=2,
                           reduce_accumulators=2, output_unroll=8, interleave=1)
        softjit.specialize("exp", isa="avx512f", unroll=2)

    Parameters not given keep the registered kernel's values (the one softjit.softmax runs for
    that algorithm, ISA and store kind). Valid softmax parameters: reduce_unroll,
    reduce_accumulators, output_unroll, rmax_unroll, rmax_accumulators, block_elements,
    nontemporal, interleave; exp: unroll."""
    import dataclasses

    from softjit.codegen.variants import REGISTRY

    if isa == "auto":
        host = cpu.host_isas()
        if not host:
            raise UnsupportedISAError("auto", host, cpu.isa_cap())
        isa = host[0]
    get_target(isa)
    if op == "softmax":
        base = REGISTRY.softmax_or_plain(algorithm, isa, bool(params.get("nontemporal", False)))
    elif op in ("exp", "vexp"):
        base = REGISTRY.for_op("vexp", isa)
    else:
        raise ValueError(f"specialize: op must be 'softmax' or 'exp', not {op!r}")
    valid = {f.name for f in dataclasses.fields(base)} - {"isa", "algorithm"}
    unknown = set(params) - valid
    if unknown:
        raise TypeError(f"specialize({op!r}): unknown parameters {sorted(unknown)}; valid: "
                        f"{', '.join(sorted(valid))}")
    for key, value in params.items():
        if key != "nontemporal" and (not isinstance(value, int) or value < 0):
            raise ValueError(f"specialize({op!r}): {key} must be a non-negative int, not "
                             f"{value!r}")
    return Specialized(dataclasses.replace(base, **params))
