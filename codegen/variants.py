"""The variant registry: every kernel module softjit generates, and the one way to find one.

A variant is a frozen dataclass following the Variant protocol: its parameters, `name`, `op`,
`isa`, `target`, `description` and `build() -> Module`. Its name encodes every parameter and is
its symbol, its file name (generated/NAME.S) and its test id. Generation, the runtime, the
tests and the benchmarks all iterate REGISTRY and look variants up through it:

    REGISTRY.named("f32_vexp__avx2_rr2_p5_u32")        by name
    REGISTRY.for_op("vexp", "avx2")                      the default variant of an op on an ISA
    REGISTRY.softmax("two-pass", "avx2", nontemporal)    the softmax module softjit.softmax runs
    REGISTRY.pick("vexp" or a name, isa)                 a name, else the op's default (the CLI)

Users add their own variants (softjit.codegen.register, or a package's entry point in the
group "softjit.variants", loaded by load_plugins): they follow the built-in ones, so they never
become the default of an op, and they appear in `asm --list`, `generate`, `build` and the
prebuilt manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, NamedTuple, Protocol, runtime_checkable

from softjit.codegen.module import Module
from softjit.codegen.errors import UnknownVariantError
from softjit.codegen.isa import ISA_NAMES, OnTarget, Target
from softjit.codegen.kernels import bandwidth, driver, elementwise, log_softmax
from softjit.codegen.kernels import softmax as passes

ALGORITHMS = ("two-pass", "three-pass-reload", "three-pass-recompute")


@runtime_checkable
class Variant(Protocol):
    """What every registered kernel module offers."""

    name: str  # the module's name: its main symbol and its file name
    op: str  # what it computes: "vexp", "rmax", "softmax", "stream_read", "stream_copy"
    isa: str  # the ISA name (codegen/isa.py)

    @property
    def target(self) -> Target: ...

    @property
    def description(self) -> str: ...

    def build(self) -> Module: ...


class VariantBase(OnTarget):
    """build() = a Module of the functions(), named and described by the variant."""

    def functions(self) -> tuple:
        raise NotImplementedError

    def build(self) -> Module:
        return Module(self.name, self.target, self.description, tuple(self.functions()))


def exp_flavour(target: Target) -> str:
    """The exp approximation's name part: rr2 reduction, degree-5 polynomial, and VSCALEFPS
    where the target has it."""
    return "rr2_p5_scalef" if target.has_scalef else "rr2_p5"


def _elements(target: Target, vectors: int) -> str:
    """uN: a main-loop step of `vectors` vectors, N float32 elements."""
    return f"u{vectors * target.lanes}"


# ---------------------------------------------------------------------------- elementwise
@dataclass(frozen=True)
class VExp(VariantBase):
    isa: str
    unroll: int  # vectors per main-loop step
    interleave: int = 0  # vectors whose stages interleave (0: the whole unrolled step)

    op = "vexp"
    description = "y = exp(x), float32"

    @property
    def name(self) -> str:
        il = f"_i{self.interleave}" if 0 < self.interleave < self.unroll else ""
        return (f"f32_vexp__{self.isa}_{exp_flavour(self.target)}_"
                f"{_elements(self.target, self.unroll)}{il}")

    def functions(self) -> tuple:
        return (elementwise.build_vexp(self.name, self.target, self.unroll, self.interleave),)


@dataclass(frozen=True)
class RMax(VariantBase):
    isa: str
    unroll: int
    accumulators: int

    op = "rmax"
    description = "the NaN-propagating maximum of a row"

    @property
    def name(self) -> str:
        return f"f32_rmax__{self.isa}_{_elements(self.target, self.unroll)}_acc{self.accumulators}"

    def functions(self) -> tuple:
        return (elementwise.build_rmax(self.name, self.target, self.unroll, self.accumulators),)


# ---------------------------------------------------------------------------- softmax
class PassKernel(NamedTuple):
    """One pass of a softmax module: its symbol, its part of the module name, its builder."""

    symbol: str
    short_name: str  # e.g. raddextexp_u32_acc1_b2048: the pass and its parameters, no ISA
    build: object  # symbol -> Function


@dataclass(frozen=True)
class Softmax(VariantBase):
    """One softmax algorithm on one ISA: its pass kernels and the row driver, in one module.

    reduce_*: the pass that reads x to a sum (raddextexp, raddstoreexpminusmax,
    raddexpminusmax); output_unroll: the pass that writes y; rmax_*: the three-pass max pass;
    block_elements: about how many elements a float32 block sums before the float64 fold (a
    whole number of main-loop steps; at 2048, a float32 lane accumulator takes 2048/(lanes*K)
    additions, so its rounding error stays near 1e-6 whatever n is).
    """

    algorithm: str
    isa: str
    reduce_unroll: int
    reduce_accumulators: int
    output_unroll: int
    rmax_unroll: int = 4
    rmax_accumulators: int = 2
    block_elements: int = 2048
    nontemporal: bool = False
    interleave: int = 0  # vectors whose stages interleave (0: the whole unrolled step)

    op = "softmax"

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown softmax algorithm {self.algorithm!r}; "
                             f"valid: {', '.join(ALGORITHMS)}")

    @property
    def description(self) -> str:
        return f"{self.algorithm} softmax, float32"

    @property
    def block(self) -> int:
        step = self.reduce_unroll * self.target.lanes
        return max(1, round(self.block_elements / step)) * step

    def _interleave(self, unroll: int) -> str:
        g = self.interleave
        return f"_i{g}" if 0 < g < unroll else ""

    def _pass(self, op: str, params: str, build, flavoured: bool = True) -> PassKernel:
        """A pass named f32_OP__ISA[_FLAVOUR]_PARAMS; its part of the module name is OP_PARAMS."""
        flavour = f"_{exp_flavour(self.target)}" if flavoured else ""
        return PassKernel(f"f32_{op}__{self.isa}{flavour}_{params}",
                          f"{op.removesuffix('_pass')}_{params}", build)

    @property
    def passes(self) -> tuple:
        """The PassKernels, in the order the driver calls them."""
        t, g = self.target, self.interleave
        reduce = (f"{_elements(t, self.reduce_unroll)}_acc{self.reduce_accumulators}"
                  f"_b{self.block}{self._interleave(self.reduce_unroll)}")
        output = (f"{_elements(t, self.output_unroll)}{self._interleave(self.output_unroll)}"
                  f"{'_nt' if self.nontemporal else ''}")
        ru, ra, ou, nt = self.reduce_unroll, self.reduce_accumulators, self.output_unroll, \
            self.nontemporal
        if self.algorithm == "two-pass":
            return (
                self._pass("raddextexp", reduce, lambda s: passes.build_raddextexp(
                    s, t, ru, ra, self.block, g)),
                self._pass("vscaleextexp", output, lambda s: passes.build_vscaleextexp(
                    s, t, ou, nt, g)),
            )
        rmax = self._pass(
            "rmax_pass", f"{_elements(t, self.rmax_unroll)}_acc{self.rmax_accumulators}",
            lambda s: passes.build_rmax_pass(s, t, self.rmax_unroll, self.rmax_accumulators),
            flavoured=False)
        if self.algorithm == "three-pass-reload":
            return (
                rmax,
                self._pass("raddstoreexpminusmax", reduce, lambda s:
                           passes.build_raddstoreexpminusmax(s, t, ru, ra, self.block, g)),
                self._pass("vscale", output, lambda s: passes.build_vscale(s, t, ou, nt),
                           flavoured=False),
            )
        return (
            rmax,
            self._pass("raddexpminusmax", reduce, lambda s: passes.build_raddexpminusmax(
                s, t, ru, ra, self.block, g)),
            self._pass("vscaleexpminusmax", output, lambda s: passes.build_vscaleexpminusmax(
                s, t, ou, nt, g)),
        )

    @property
    def name(self) -> str:
        tail = "_".join(p.short_name for p in self.passes)
        return f"f32_softmax_{self.algorithm.replace('-', '')}__{self.isa}_{tail}"

    @property
    def driver_symbol(self) -> str:
        return self.name

    def functions(self) -> tuple:
        kernels = [p.build(p.symbol) for p in self.passes]
        row_driver = driver.build_driver(self.name, self.target, [p.symbol for p in self.passes],
                                         may_flag=self.algorithm == "two-pass")
        return (*kernels, row_driver)


# ---------------------------------------------------------------------------- log_softmax
LOG_SOFTMAX_ALGORITHMS = ("two-pass", "three-pass")
REDUCE_SUFFIX, APPLY_SUFFIX = "_reduce", "_apply"


@dataclass(frozen=True)
class LogSoftmax(VariantBase):
    """log_softmax (and logsumexp, which runs only its reduce driver) on one ISA: the reduction
    passes of a softmax algorithm, the subtracting output pass vsubsub and the two row drivers
    of codegen/kernels/log_softmax.py, in one module.

    two-pass reduces with raddextexp (one read of x); three-pass with rmax and raddexpminusmax.
    The parameters mean what they mean for Softmax, except that blocks are shorter by default:
    ln(sum) turns the sum's relative error into y's absolute error, and a float32 lane
    accumulator that takes T additions a block is off by up to about T * 2^-24 relative (terms
    far below the lane's running sum round away). terms_per_lane caps T at 16 (error <= 1e-6),
    where softmax's 2048-element blocks allow up to 256 on AVX2."""

    algorithm: str
    isa: str
    reduce_unroll: int
    reduce_accumulators: int
    output_unroll: int
    rmax_unroll: int = 4
    rmax_accumulators: int = 2
    terms_per_lane: int = 16
    nontemporal: bool = False

    op = "log_softmax"

    @property
    def block_elements(self) -> int:
        """Elements a float32 block sums: terms_per_lane additions into each lane accumulator."""
        return self.terms_per_lane * self.target.lanes * self.reduce_accumulators

    def __post_init__(self):
        if self.algorithm not in LOG_SOFTMAX_ALGORITHMS:
            raise ValueError(f"unknown log_softmax algorithm {self.algorithm!r}; "
                             f"valid: {', '.join(LOG_SOFTMAX_ALGORITHMS)}")

    @property
    def description(self) -> str:
        return f"{self.algorithm} log_softmax and logsumexp, float32"

    def _softmax(self) -> Softmax:
        """The softmax whose reduction passes (names, builders, block) this module shares."""
        algorithm = "two-pass" if self.algorithm == "two-pass" else "three-pass-recompute"
        return Softmax(algorithm, self.isa, self.reduce_unroll, self.reduce_accumulators,
                       self.output_unroll, self.rmax_unroll, self.rmax_accumulators,
                       self.block_elements)

    @property
    def reduce_passes(self) -> tuple:
        """The PassKernels the reduce driver calls, in order."""
        shared = self._softmax().passes
        return shared[:1] if self.algorithm == "two-pass" else shared[:2]

    @property
    def output_pass(self) -> PassKernel:
        t, ou, nt = self.target, self.output_unroll, self.nontemporal
        params = f"{_elements(t, ou)}{'_nt' if nt else ''}"
        return PassKernel(f"f32_vsubsub__{self.isa}_{params}", f"vsubsub_{params}",
                          lambda s: log_softmax.build_vsubsub(s, t, ou, nt))

    @property
    def passes(self) -> tuple:
        return (*self.reduce_passes, self.output_pass)

    @property
    def name(self) -> str:
        tail = "_".join(p.short_name for p in self.passes)
        return f"f32_logsoftmax_{self.algorithm.replace('-', '')}__{self.isa}_{tail}"

    @property
    def reduce_symbol(self) -> str:
        return self.name + REDUCE_SUFFIX

    @property
    def apply_symbol(self) -> str:
        return self.name + APPLY_SUFFIX

    def functions(self) -> tuple:
        kernels = [p.build(p.symbol) for p in self.passes]
        reduce = log_softmax.build_reduce_driver(
            self.reduce_symbol, self.target, [p.symbol for p in self.reduce_passes],
            may_flag=self.algorithm == "two-pass")
        apply = log_softmax.build_apply_driver(self.apply_symbol, self.target,
                                               self.output_pass.symbol)
        return (*kernels, reduce, apply)


# ---------------------------------------------------------------------------- bandwidth probes
ROWS_SUFFIX = "_rows"


@dataclass(frozen=True)
class StreamRead(VariantBase):
    """Read bandwidth probe: f32_stream_read__ISA_uU_accK (plus its _rows driver)."""

    isa: str
    unroll: int = 8  # vectors per main-loop step
    accumulators: int = 4

    op = "stream_read"
    description = "read bandwidth probe: the sum of a row"

    @property
    def name(self) -> str:
        return f"f32_stream_read__{self.isa}_{_elements(self.target, self.unroll)}_acc{self.accumulators}"

    @property
    def driver_symbol(self) -> str:
        return self.name + ROWS_SUFFIX

    def functions(self) -> tuple:
        return (bandwidth.build_stream_read(self.name, self.target, self.unroll, self.accumulators),
                bandwidth.build_rows_driver(self.driver_symbol, self.target, self.name,
                                            reads_only=True))


@dataclass(frozen=True)
class StreamCopy(VariantBase):
    """Read+write bandwidth probe: f32_stream_copy__ISA_uU[_nt] (plus its _rows driver)."""

    isa: str
    unroll: int = 8
    nontemporal: bool = False

    op = "stream_copy"

    @property
    def description(self) -> str:
        stores = "non-temporal" if self.nontemporal else "ordinary"
        return f"read+write bandwidth probe: a copy, {stores} stores"

    @property
    def name(self) -> str:
        nt = "_nt" if self.nontemporal else ""
        return f"f32_stream_copy__{self.isa}_{_elements(self.target, self.unroll)}{nt}"

    @property
    def driver_symbol(self) -> str:
        return self.name + ROWS_SUFFIX

    def functions(self) -> tuple:
        return (bandwidth.build_stream_copy(self.name, self.target, self.unroll, self.nontemporal),
                bandwidth.build_rows_driver(self.driver_symbol, self.target, self.name,
                                            reads_only=False))


def probes(isa: str) -> tuple:
    """The probes benchmarks time for `isa`: read, copy, copy with non-temporal stores."""
    return (StreamRead(isa), StreamCopy(isa), StreamCopy(isa, nontemporal=True))


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
            if not isinstance(v, Variant):
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

    def softmax(self, algorithm: str, isa: str, nontemporal: bool = False) -> Softmax:
        """The softmax module of `algorithm` on `isa`, with non-temporal output stores or not."""
        if algorithm not in ALGORITHMS:
            raise UnknownVariantError(f"unknown softmax algorithm {algorithm!r}; valid: "
                                      f"{', '.join(ALGORITHMS)}")
        for v in self.variants:
            if (v.op == "softmax" and v.algorithm == algorithm and v.isa == isa
                    and v.nontemporal == nontemporal):
                return v
        raise UnknownVariantError(f"no {algorithm} softmax registered for {isa!r}"
                                  f"{' with non-temporal stores' if nontemporal else ''}")

    def softmax_or_plain(self, algorithm: str, isa: str, nontemporal: bool) -> Softmax:
        """softmax(), falling back to ordinary stores where no non-temporal module is
        registered (three-pass-reload re-reads y, so it has none)."""
        if nontemporal and self._softmax_exists(algorithm, isa, True):
            return self.softmax(algorithm, isa, True)
        return self.softmax(algorithm, isa, False)

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

    def log_softmax(self, algorithm: str, isa: str, nontemporal: bool = False) -> LogSoftmax:
        """The log_softmax module of `algorithm` ("two-pass" or "three-pass") on `isa`, with
        non-temporal output stores or not (falling back to ordinary ones)."""
        if algorithm not in LOG_SOFTMAX_ALGORITHMS:
            raise UnknownVariantError(f"unknown log_softmax algorithm {algorithm!r}; valid: "
                                      f"{', '.join(LOG_SOFTMAX_ALGORITHMS)}")
        found = [v for v in self.variants if v.op == "log_softmax" and v.algorithm == algorithm
                 and v.isa == isa]
        for v in found:
            if v.nontemporal == nontemporal:
                return v
        if found:
            return found[0]
        raise UnknownVariantError(f"no {algorithm} log_softmax registered for {isa!r}")

    def _has(self, op: str, isa: str) -> bool:
        return any(v.op == op and v.isa == isa for v in self.variants)

    def _softmax_exists(self, algorithm: str, isa: str, nontemporal: bool) -> bool:
        return any(v.op == "softmax" and v.algorithm == algorithm and v.isa == isa
                   and v.nontemporal == nontemporal for v in self.variants)


# The registry. Softmax parameters come from `python -m softjit bench --sweep --sweep-grid wide
# --sizes 1e4,1e5` per ISA on the development host (AMD EPYC, Zen 4: family 0x19 model 0x11; see
# docs/performance.md), then checked on 4096 x 1000 and 1e5 with the row drivers interleaved;
# the best few of each algorithm were within 3-6% of one another. AVX2 keeps 4-vector steps for
# two-pass and three-pass-reload (wider steps were not faster) and takes 12 vectors in tiles of
# 4 for three-pass-recompute (7-10% faster); AVX-512 takes 8-16 vectors per step in tiles of
# 2-4. The kernels keep as many constants in registers as fit beside a tile
# (exp.resident_fit). Zen 3 hosts run the same AVX2 kernels: 4 FMA-latency chains per tile, and
# the out-of-order core overlaps tiles and iterations.
# The first softmax variant of an (algorithm, isa, store kind) is the one softjit.softmax runs.
REGISTRY = Registry((
    VExp("avx2", 4),
    VExp("avx512f", 4),
    VExp("avx512f", 8),
    RMax("avx2", 4, 2),
    RMax("avx512f", 4, 2),
    Softmax("two-pass", "avx2", 4, 1, 4),
    Softmax("three-pass-reload", "avx2", 4, 2, 4),
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
    # log_softmax and logsumexp: the softmax modules' reduction parameters.
    LogSoftmax("two-pass", "avx2", 4, 1, 4),
    LogSoftmax("three-pass", "avx2", 4, 2, 4),
    LogSoftmax("two-pass", "avx512f", 8, 2, 4),
    LogSoftmax("three-pass", "avx512f", 8, 2, 4),
    LogSoftmax("two-pass", "avx2", 4, 1, 4, nontemporal=True),
    LogSoftmax("two-pass", "avx512f", 8, 2, 4, nontemporal=True),
) + tuple(probe for isa in ("avx2", "avx512f") for probe in probes(isa)))

#: The built-in variants, in registry order. REGISTRY.variants also holds the users' variants
#: registered since (softjit.codegen.register, load_plugins): iterate REGISTRY for everything.
VARIANTS = REGISTRY.variants


def register(*variants) -> None:
    """Register user variants in the one registry (see Registry.register)."""
    REGISTRY.register(*variants)

