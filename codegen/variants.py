"""The variant registry: every kernel softjit generates, as frozen dataclasses.

A variant's name encodes every parameter and is its symbol, its file name (generated/NAME.S)
and its test id. Generation, the runtime, the tests and the benchmarks all iterate VARIANTS.
"""
from __future__ import annotations

from dataclasses import dataclass

from .emit import Module
from .isa import AVX2, AVX512F, Target, get_target
from .kernels import elementwise


@dataclass(frozen=True)
class VExp:
    isa: str
    unroll: int  # vectors per main-loop step

    op = "vexp"

    @property
    def target(self) -> Target:
        return get_target(self.isa)

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
class RMax:
    isa: str
    unroll: int
    accumulators: int

    op = "rmax"

    @property
    def target(self) -> Target:
        return get_target(self.isa)

    @property
    def name(self) -> str:
        return f"f32_rmax__{self.isa}_u{self.unroll * self.target.lanes}_acc{self.accumulators}"

    def build(self) -> Module:
        f = elementwise.build_rmax(self.name, self.target, self.unroll, self.accumulators)
        return Module(self.name, self.target, "the NaN-propagating maximum of a row", (f,))


VARIANTS = (
    VExp("avx2", 4),
    VExp("avx512f", 4),
    VExp("avx512f", 8),
    RMax("avx2", 4, 2),
    RMax("avx512f", 4, 2),
)

BY_NAME = {v.name: v for v in VARIANTS}


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
