"""The variant registry: every kernel module softjit generates, and the one way to find one.

A variant is a frozen dataclass following the Variant protocol: its parameters, `name`, `op`,
`isa`, `target`, `description` and `build() -> Module`; the built-in kinds (VExp, RMax, Softmax,
LogSoftmax, StreamRead, StreamCopy) are defined in kernel_variants.py and imported from here. Its name encodes every parameter and is
its symbol, its file name (generated/NAME.S) and its test id. Generation, the runtime, the
tests and the benchmarks all iterate REGISTRY and look variants up through it:

    REGISTRY.named("f32_vexp__avx2_rr2_p5_u32")        by name
    REGISTRY.for_op("vexp", "avx2")                      the default variant of an op on an ISA
    REGISTRY.softmax("two-pass", "avx2", nontemporal)    the softmax module softjit.softmax runs
    REGISTRY.softmax("two-pass", "avx2", element="bf16") the same for bfloat16 x and y
    REGISTRY.softmax("two-pass", "avx2", scaled=True)    ... and the one softmax(x, scale=s) runs
    REGISTRY.pick("vexp" or a name, isa)                 a name, else the op's default (the CLI)

Users add their own variants (softjit.codegen.register, or a package's entry point in the
group "softjit.variants", loaded by load_plugins): they follow the built-in ones, so they never
become the default of an op, and they appear in `asm --list`, `generate`, `build` and the
prebuilt manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

from softjit.codegen.errors import UnknownVariantError
from softjit.codegen.isa import ISA_NAMES, OnTarget
# The variant kinds live in codegen/kernel_variants.py; they are part of this module's API.
from softjit.codegen.kernel_variants import (
    ALGORITHMS,
    LOG_SOFTMAX_ALGORITHMS,
    algorithms_for,
    ROWS_SUFFIX,
    LogSoftmax,
    PassKernel,
    RMax,
    Softmax,
    StreamCopy,
    StreamRead,
    Variant,
    VariantBase,
    VExp,
    exp_flavour,
    probes,
)

if TYPE_CHECKING:
    from softjit.codegen.module import Module

__all__ = [
    "ALGORITHMS", "ENTRY_POINT_GROUP", "LOG_SOFTMAX_ALGORITHMS", "REGISTRY", "ROWS_SUFFIX",
    "VARIANTS", "LogSoftmax", "PassKernel", "RMax", "Registry", "Softmax", "StreamCopy",
    "StreamRead", "UserVariant", "VExp", "Variant", "VariantBase", "algorithms_for",
    "exp_flavour", "probes", "register",
]

# ---------------------------------------------------------------------------- user variants
ENTRY_POINT_GROUP = "softjit.variants"
_C_NAME = __import__("re").compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class UserVariant(OnTarget):
    """A variant made of a module builder: build() = builder(name, target) -> Module.

        register(UserVariant("my_relu__avx2", "avx2", "relu", my_builder, "y = max(x, 0)"))

    softjit.jit kernels give one with kernel.variant(isa)."""

    name: str
    isa: str
    op: str
    builder: object = field(compare=False)
    description: str = ""

    def build(self) -> Module:
        from softjit.codegen.module import Module

        module = self.builder(self.name, self.target)
        if not isinstance(module, Module) or module.name != self.name:
            raise TypeError(f"the builder of variant {self.name!r} must return a Module named "
                            f"{self.name!r}")
        return module


# ---------------------------------------------------------------------------- the registry
class Registry:
    """The registered variants, in order, and the one lookup API over them.

    Order matters: the first variant of an (op, isa) is the one the runtime uses, and the first
    softmax of an (algorithm, isa, store kind) is the one softjit.softmax runs."""

    def __init__(self, variants):
        self.variants = tuple(variants)
        self._plugins_loaded = False
        self._by_name = {}
        for v in self.variants:
            # (the built-in kinds follow it by construction: the protocol's own isinstance
            # check costs about 0.1 ms a variant, most of the registry's making)
            if not isinstance(v, VariantBase) and not isinstance(v, Variant):
                raise TypeError(f"{v!r} does not follow the Variant protocol")
            if v.name in self._by_name:
                raise ValueError(f"two registered variants are named {v.name!r}")
            self._by_name[v.name] = v

    def register(self, *variants) -> None:
        """Add variants after those registered so far (never a default of a built-in op).

        Each must follow the Variant protocol (name, op, isa, target, description, build()), be
        hashable, and have a name no registered variant has."""
        for v in variants:
            if not isinstance(v, Variant):
                raise TypeError(f"{v!r} does not follow the Variant protocol (name, op, isa, "
                                f"target, description, build() -> Module); see "
                                f"softjit.codegen.UserVariant")
            if v.isa not in ISA_NAMES:
                raise ValueError(f"variant {v.name!r}: unknown ISA {v.isa!r}; valid: "
                                 f"{', '.join(ISA_NAMES)}")
            if not _C_NAME.match(v.name):
                raise ValueError(f"variant name {v.name!r} is not a C identifier (it names a "
                                 f"symbol and a file)")
            hash(v)  # the runtime memoises modules by variant
            if v.name in self._by_name:
                if self._by_name[v.name] == v:
                    continue  # registering the same variant twice is harmless
                raise ValueError(f"a variant named {v.name!r} is already registered")
            self._by_name[v.name] = v
            self.variants = self.variants + (v,)

    def load_plugins(self) -> tuple:
        """Register the variants of every installed package's "softjit.variants" entry point
        (once per process): the entry point names a variant, an iterable of variants, or a
        function returning either. Returns the names registered by this call."""
        if self._plugins_loaded:
            return ()
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        before = set(self._by_name)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                found = point.load()
                if callable(found) and not isinstance(found, Variant):
                    found = found()
                self.register(*([found] if isinstance(found, Variant) else found))
            except Exception as error:  # a broken plugin must say which one it is
                raise RuntimeError(f"softjit variant plugin {point.name!r} ({point.value}) "
                                   f"failed: {error}") from error
        return tuple(n for n in self._by_name if n not in before)

    def __iter__(self) -> Iterator:
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple:
        return tuple(self._by_name)

    @property
    def ops(self) -> tuple:
        """Every op name, sorted."""
        return tuple(sorted({v.op for v in self.variants}))

    def named(self, name: str):
        """The variant called `name` (installed plugins are loaded on a miss)."""
        if name not in self._by_name:
            self.load_plugins()
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownVariantError(
                f"unknown kernel {name!r}; registered kernels: {', '.join(sorted(self._by_name))}"
            ) from None

    def for_op(self, op: str, isa: str):
        """The default variant of `op` on `isa` (the first registered)."""
        for v in self.variants:
            if v.op == op and v.isa == isa:
                return v
        if op not in self.ops:
            raise UnknownVariantError(f"unknown kernel op {op!r}; valid ops: {', '.join(self.ops)}")
        raise UnknownVariantError(f"no {op} kernel registered for {isa!r}; ISAs with one: "
                                  f"{', '.join(i for i in ISA_NAMES if self._has(op, i))}")

    def softmax(self, algorithm: str, isa: str, nontemporal: bool = False,
                element: str = "f32", scaled: bool = False) -> Softmax:
        """The softmax module of `algorithm` on `isa`, with non-temporal output stores or not,
        for x and y of element format `element` ("f32", "f16", "bf16"), of x or (scaled) of
        scale * x."""
        if algorithm not in ALGORITHMS:
            raise UnknownVariantError(f"unknown softmax algorithm {algorithm!r}; valid: "
                                      f"{', '.join(ALGORITHMS)}")
        for v in self.variants:
            if (v.op == "softmax" and v.algorithm == algorithm and v.isa == isa
                    and v.nontemporal == nontemporal and getattr(v, "element", "f32") == element
                    and v.scaled == scaled):
                return v
        raise UnknownVariantError(f"no {algorithm}{' scaled' if scaled else ''} softmax "
                                  f"registered for {isa!r}"
                                  f"{' with non-temporal stores' if nontemporal else ''}"
                                  f"{'' if element == 'f32' else f' on {element} elements'}")

    def softmax_or_plain(self, algorithm: str, isa: str, nontemporal: bool,
                         element: str = "f32", scaled: bool = False) -> Softmax:
        """softmax(), falling back to ordinary stores where no non-temporal module is
        registered (three-pass-reload re-reads y, so it has none)."""
        if nontemporal and self._softmax_exists(algorithm, isa, True, element, scaled):
            return self.softmax(algorithm, isa, True, element, scaled)
        return self.softmax(algorithm, isa, False, element, scaled)

    def pick(self, name_or_op: str, isa: str):
        """A variant by its full name (which must be of `isa` unless isa is "auto"), or else the
        default variant of an op name on `isa` (a concrete ISA)."""
        if name_or_op not in self._by_name:
            self.load_plugins()
        if name_or_op in self._by_name:
            variant = self._by_name[name_or_op]
            if isa not in ("auto", variant.isa):
                raise UnknownVariantError(f"kernel {name_or_op!r} is an {variant.isa} kernel, "
                                          f"not {isa}")
            return variant
        if name_or_op not in self.ops:
            raise UnknownVariantError(
                f"unknown kernel {name_or_op!r}; give an op name ({', '.join(self.ops)}) or one "
                f"of the registered variants: {', '.join(self._by_name)}")
        return self.for_op(name_or_op, isa)

    def log_softmax(self, algorithm: str, isa: str, nontemporal: bool = False,
                    element: str = "f32", scaled: bool = False) -> LogSoftmax:
        """The log_softmax module of `algorithm` ("two-pass" or "three-pass") on `isa`, with
        non-temporal output stores or not (falling back to ordinary ones), for x and y of
        element format `element`, of x or (scaled) of scale * x."""
        if algorithm not in LOG_SOFTMAX_ALGORITHMS:
            raise UnknownVariantError(f"unknown log_softmax algorithm {algorithm!r}; valid: "
                                      f"{', '.join(LOG_SOFTMAX_ALGORITHMS)}")
        found = [v for v in self.variants if v.op == "log_softmax" and v.algorithm == algorithm
                 and v.isa == isa and getattr(v, "element", "f32") == element
                 and getattr(v, "scaled", False) == scaled]
        for v in found:
            if v.nontemporal == nontemporal:
                return v
        if found:
            return found[0]
        raise UnknownVariantError(f"no {algorithm}{' scaled' if scaled else ''} log_softmax "
                                  f"registered for {isa!r}"
                                  f"{'' if element == 'f32' else f' on {element} elements'}")

    def _has(self, op: str, isa: str) -> bool:
        return any(v.op == op and v.isa == isa for v in self.variants)

    def _softmax_exists(self, algorithm: str, isa: str, nontemporal: bool,
                        element: str = "f32", scaled: bool = False) -> bool:
        return any(v.op == "softmax" and v.algorithm == algorithm and v.isa == isa
                   and v.nontemporal == nontemporal and getattr(v, "element", "f32") == element
                   and v.scaled == scaled for v in self.variants)


def _half_variants(element: str) -> tuple:
    """The float16 / bfloat16 modules (x and y converted in registers, computed in float32):
    the float32 modules' parameters, without three-pass-reload (see algorithms_for)."""
    return (
        Softmax("two-pass", "avx2", 4, 1, 4, element=element),
        Softmax("three-pass-recompute", "avx2", 12, 1, 12, interleave=4, element=element),
        Softmax("two-pass", "avx512f", 16, 2, 8, interleave=4, element=element),
        Softmax("three-pass-recompute", "avx512f", 8, 2, 16, interleave=2, element=element),
        Softmax("two-pass", "avx2", 4, 1, 4, nontemporal=True, element=element),
        Softmax("three-pass-recompute", "avx2", 12, 1, 12, interleave=4, nontemporal=True,
                element=element),
        Softmax("two-pass", "avx512f", 16, 2, 8, interleave=4, nontemporal=True,
                element=element),
        Softmax("three-pass-recompute", "avx512f", 8, 2, 16, interleave=2, nontemporal=True,
                element=element),
        LogSoftmax("two-pass", "avx2", 4, 1, 4, element=element),
        LogSoftmax("three-pass", "avx2", 4, 2, 4, element=element),
        LogSoftmax("two-pass", "avx512f", 8, 2, 4, element=element),
        LogSoftmax("three-pass", "avx512f", 8, 2, 4, element=element),
        LogSoftmax("two-pass", "avx2", 4, 1, 4, nontemporal=True, element=element),
        LogSoftmax("two-pass", "avx512f", 8, 2, 4, nontemporal=True, element=element),
    )


# The registry. Softmax parameters come from `python -m softjit bench --sweep --sweep-grid wide
# --sizes 1e4,1e5` per ISA on the development host (AMD EPYC, Zen 4: family 0x19 model 0x11; see
# docs/performance.md), then checked on 4096 x 1000 and 1e5 with the row drivers interleaved;
# the best few of each algorithm were within 3-6% of one another. AVX2 keeps 4-vector steps for
# two-pass (wider steps were not faster), tiles three-pass-reload's 4 vectors by 2 (its sum
# pass then keeps six constants in registers instead of none: 4 loads a vector instead of 11,
# about 5% faster at 1e5, docs/performance.md) and takes 12 vectors in tiles of 4 for
# three-pass-recompute (7-10% faster); AVX-512 takes 8-16 vectors per step in tiles of 2-4. The kernels keep as many constants in registers as fit beside a tile
# (exp.resident_fit). Zen 3 hosts run the same AVX2 kernels: 4 FMA-latency chains per tile, and
# the out-of-order core overlaps tiles and iterations.
# The first softmax variant of an (algorithm, isa, store kind) is the one softjit.softmax runs.
_ELEMENTWISE = (
    VExp("avx2", 4),
    VExp("avx512f", 4),
    VExp("avx512f", 8),
    RMax("avx2", 4, 2),
    RMax("avx512f", 4, 2),
)
_SOFTMAX_FAMILY = (
    Softmax("two-pass", "avx2", 4, 1, 4),
    Softmax("three-pass-reload", "avx2", 4, 2, 4, interleave=2),
    Softmax("three-pass-recompute", "avx2", 12, 1, 12, interleave=4),
    Softmax("two-pass", "avx512f", 16, 2, 8, interleave=4),
    Softmax("three-pass-reload", "avx512f", 8, 2, 4, interleave=2),
    Softmax("three-pass-recompute", "avx512f", 8, 2, 16, interleave=2),
    # Out of cache, the output passes of two-pass and three-pass-recompute store non-temporally
    # (no write-allocate read of y). Three-pass-reload re-reads y in its last pass, so its
    # non-temporal variant measured slower and is not registered.
    Softmax("two-pass", "avx2", 4, 1, 4, nontemporal=True),
    Softmax("three-pass-recompute", "avx2", 12, 1, 12, interleave=4, nontemporal=True),
    Softmax("two-pass", "avx512f", 16, 2, 8, interleave=4, nontemporal=True),
    Softmax("three-pass-recompute", "avx512f", 8, 2, 16, interleave=2, nontemporal=True),
    # log_softmax and logsumexp: the softmax modules' reduction parameters, but 4-vector steps
    # for the AVX-512 two-pass reduction (4-7% faster than 8 at 10^5 and 4096 x 1000, measured
    # through the log_softmax driver; 16 does not fit the register file without interleaving).
    LogSoftmax("two-pass", "avx2", 4, 1, 4),
    LogSoftmax("three-pass", "avx2", 4, 2, 4),
    LogSoftmax("two-pass", "avx512f", 4, 2, 4),
    LogSoftmax("three-pass", "avx512f", 8, 2, 4),
    LogSoftmax("two-pass", "avx2", 4, 1, 4, nontemporal=True),
    LogSoftmax("two-pass", "avx512f", 4, 2, 4, nontemporal=True),
)
# softmax(x, scale=s), log_softmax and logsumexp of scale * x: a scaled twin of every float32
# softmax and log_softmax module, with the same parameters (the multiply rides on each load of
# x). They are registered, so prebuilt like the rest: a wheel serves scale= without binutils.
# The unscaled modules stay as they were, byte for byte, and calls without scale= never touch
# the twins. The float16 / bfloat16 log_softmax modules have scaled twins too (x widened as it
# is loaded, then multiplied); 16-bit softmax inputs with scale= are widened on the host
# (runtime/api.py).
REGISTRY = Registry(_ELEMENTWISE + _SOFTMAX_FAMILY
                    + tuple(replace(v, scaled=True) for v in _SOFTMAX_FAMILY)
                    + tuple(probe for isa in ("avx2", "avx512f") for probe in probes(isa))
                    + tuple(v for element in ("f16", "bf16") for v in _half_variants(element))
                    + tuple(replace(v, scaled=True) for element in ("f16", "bf16")
                            for v in _half_variants(element) if v.op == "log_softmax"))

#: The built-in variants, in registry order. REGISTRY.variants also holds the users' variants
#: registered since (softjit.codegen.register, load_plugins): iterate REGISTRY for everything.
VARIANTS = REGISTRY.variants


def register(*variants) -> None:
    """Register user variants in the one registry (see Registry.register)."""
    REGISTRY.register(*variants)
