"""The variant registry: every kernel softjit generates, as frozen dataclasses.

A variant's name encodes every parameter and is its symbol, its file name (generated/NAME.S)
and its test id. Generation, the runtime, the tests and the benchmarks all iterate VARIANTS.
"""
from __future__ import annotations

from dataclasses import dataclass

from .emit import Module
from .isa import OnTarget
from .kernels import bandwidth, elementwise


@dataclass(frozen=True)
class VExp(OnTarget):
    isa: str
    unroll: int  # vectors per main-loop step

    op = "vexp"

    @property
    def flavour(self) -> str:
        return "rr2_p5_scalef" if self.target.mask_registers else "rr2_p5"

    @property
    def name(self) -> str:
        return f"f32_vexp__{self.isa}_{self.flavour}_u{self.unroll * self.target.lanes}"

    def build(self) -> Module:
        f = elementwise.build_vexp(self.name, self.target, self.unroll)
        return Module(self.name, self.target, "y = exp(x), float32", (f,))


@dataclass(frozen=True)
class RMax(OnTarget):
    isa: str
    unroll: int
    accumulators: int

    op = "rmax"

    @property
    def name(self) -> str:
        return f"f32_rmax__{self.isa}_u{self.unroll * self.target.lanes}_acc{self.accumulators}"

    def build(self) -> Module:
        f = elementwise.build_rmax(self.name, self.target, self.unroll, self.accumulators)
        return Module(self.name, self.target, "the NaN-propagating maximum of a row", (f,))


def get_variant(name: str):
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown kernel {name!r}; registered kernels: {', '.join(sorted(BY_NAME))}") from None


def default(op: str, isa: str):
    """The variant the runtime uses for an operation on an ISA (the first registered)."""
    for v in VARIANTS:
        if v.op == op and v.isa == isa:
            return v
    raise ValueError(f"no {op} kernel registered for {isa}")


ALGORITHMS = ("two-pass", "three-pass-reload", "three-pass-recompute")


@dataclass(frozen=True)
class Softmax(OnTarget):
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
    def flavour(self) -> str:
        return "rr2_p5_scalef" if self.target.mask_registers else "rr2_p5"

    def _u(self, vectors: int) -> str:
        return f"u{vectors * self.target.lanes}"

    @property
    def block(self) -> int:
        step = self.reduce_unroll * self.target.lanes
        return max(1, round(self.block_elements / step)) * step

    @property
    def passes(self) -> tuple:
        """(symbol, builder) of each pass, in the order the driver calls them."""
        from .kernels import softmax as sm

        isa, fl, t = self.isa, self.flavour, self.target
        nt = "_nt" if self.nontemporal else ""
        g = self.interleave
        il_red = f"_i{g}" if 0 < g < self.reduce_unroll else ""
        il_out = f"_i{g}" if 0 < g < self.output_unroll else ""
        red = f"{self._u(self.reduce_unroll)}_acc{self.reduce_accumulators}_b{self.block}{il_red}"
        out = f"{self._u(self.output_unroll)}{il_out}{nt}"
        rmax = f"f32_rmax_pass__{isa}_{self._u(self.rmax_unroll)}_acc{self.rmax_accumulators}"
        if self.algorithm == "two-pass":
            return (
                (f"f32_raddextexp__{isa}_{fl}_{red}", lambda s: sm.build_raddextexp(
                    s, t, self.reduce_unroll, self.reduce_accumulators, self.block, g)),
                (f"f32_vscaleextexp__{isa}_{fl}_{out}", lambda s: sm.build_vscaleextexp(
                    s, t, self.output_unroll, self.nontemporal, g)),
            )
        first = (rmax, lambda s: sm.build_rmax_pass(s, t, self.rmax_unroll, self.rmax_accumulators))
        if self.algorithm == "three-pass-reload":
            return (
                first,
                (f"f32_raddstoreexpminusmax__{isa}_{fl}_{red}", lambda s: sm.build_raddstoreexpminusmax(
                    s, t, self.reduce_unroll, self.reduce_accumulators, self.block, g)),
                (f"f32_vscale__{isa}_{out}", lambda s: sm.build_vscale(
                    s, t, self.output_unroll, self.nontemporal)),
            )
        return (
            first,
            (f"f32_raddexpminusmax__{isa}_{fl}_{red}", lambda s: sm.build_raddexpminusmax(
                s, t, self.reduce_unroll, self.reduce_accumulators, self.block, g)),
            (f"f32_vscaleexpminusmax__{isa}_{fl}_{out}", lambda s: sm.build_vscaleexpminusmax(
                s, t, self.output_unroll, self.nontemporal, g)),
        )

    @property
    def name(self) -> str:
        alg = self.algorithm.replace("-", "")
        tail = "_".join(_pass_suffix(symbol) for symbol, _ in self.passes)
        return f"f32_softmax_{alg}__{self.isa}_{tail}"

    @property
    def driver_symbol(self) -> str:
        return self.name

    def build(self) -> Module:
        from .kernels import softmax as sm

        functions = [builder(symbol) for symbol, builder in self.passes]
        driver = sm.build_driver(self.name, self.target, [s for s, _ in self.passes],
                                 may_flag=self.algorithm == "two-pass")
        return Module(self.name, self.target, f"{self.algorithm} softmax, float32",
                      tuple(functions) + (driver,))


def _pass_suffix(symbol: str) -> str:
    """f32_raddextexp__avx2_rr2_p5_u32_acc2_b1024 -> raddextexp_u32_acc2_b1024."""
    op, params = symbol[len("f32_"):].split("__", 1)
    kept = [p for p in params.split("_")[1:] if p[0] in "uabi" or p == "nt"]
    return "_".join([op.replace("_pass", "")] + kept)


# The registry. AVX2 softmax parameters come from `python -m softjit bench --sweep` on the
# development host (AMD EPYC, AVX2; see the README's performance section): two-pass 4 vectors
# per step with one accumulator, three-pass 4 vectors with two. AVX-512 could not be measured
# there (no AVX-512 on that host): its parameters follow the paper's shape (8 vectors, two
# accumulators, every stage interleaved) and are checked for correctness in the emulator.
# The first softmax variant of an (algorithm, isa, store kind) is the one softjit.softmax runs.
VARIANTS = (
    VExp("avx2", 4),
    VExp("avx512f", 4),
    VExp("avx512f", 8),
    RMax("avx2", 4, 2),
    RMax("avx512f", 4, 2),
    Softmax("two-pass", "avx2", 4, 1, 4),
    Softmax("three-pass-reload", "avx2", 4, 2, 4),
    Softmax("three-pass-recompute", "avx2", 4, 2, 4),
    Softmax("two-pass", "avx512f", 8, 2, 4),
    Softmax("three-pass-reload", "avx512f", 8, 2, 4),
    Softmax("three-pass-recompute", "avx512f", 8, 2, 4),
    # Out of cache, the output passes of two-pass and three-pass-recompute store non-temporally
    # (no write-allocate read of y). Three-pass-reload re-reads y in its last pass, so its
    # non-temporal variant measured slower and is not registered.
    Softmax("two-pass", "avx2", 4, 1, 4, nontemporal=True),
    Softmax("three-pass-recompute", "avx2", 4, 2, 4, nontemporal=True),
    Softmax("two-pass", "avx512f", 8, 2, 4, nontemporal=True),
    Softmax("three-pass-recompute", "avx512f", 8, 2, 4, nontemporal=True),
) + tuple(probe for isa in ("avx2", "avx512f") for probe in bandwidth.probes(isa))

BY_NAME = {v.name: v for v in VARIANTS}


def softmax_variant(algorithm: str, isa: str, nontemporal: bool = False) -> Softmax:
    for v in VARIANTS:
        if (v.op == "softmax" and v.algorithm == algorithm and v.isa == isa
                and v.nontemporal == nontemporal):
            return v
    raise ValueError(f"no {algorithm} softmax registered for {isa}"
                     f"{' with non-temporal stores' if nontemporal else ''}")
