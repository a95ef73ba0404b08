"""Instruction-set targets: what a kernel may use and how wide its vectors are.

A Target is pure metadata. Generation never looks at the host CPU, so every target's code can be
generated (and assembled) on any machine; only running it needs the features.
"""
from __future__ import annotations

from dataclasses import dataclass

# Feature names follow the Linux /proc/cpuinfo flags, so host detection and targets speak one language.
FEATURES = ("avx", "avx2", "fma", "avx512f", "avx512vl", "avx512dq", "avx512bw")


@dataclass(frozen=True)
class Target:
    name: str
    features: frozenset
    vector_bits: int
    vector_registers: int
    mask_registers: int  # usable k registers (k0 cannot be a write mask, so it is not counted)

    @property
    def lanes(self) -> int:
        """float32 lanes in one vector register."""
        return self.vector_bits // 32

    @property
    def vector_bytes(self) -> int:
        return self.vector_bits // 8

    def has(self, feature: str) -> bool:
        return feature in self.features

    def __str__(self) -> str:
        return self.name


AVX2 = Target(
    name="avx2",
    features=frozenset({"avx", "avx2", "fma"}),
    vector_bits=256,
    vector_registers=16,
    mask_registers=0,
)

AVX512F = Target(
    name="avx512f",
    # The kernels use VL (ymm/xmm forms with EVEX), DQ (vextractf32x8) and BW (kmovd) beside F:
    # every AVX-512 CPU that ships F with VL also ships DQ and BW (Skylake-X onward, Zen 4 onward).
    features=frozenset({"avx", "avx2", "fma", "avx512f", "avx512vl", "avx512dq", "avx512bw"}),
    vector_bits=512,
    vector_registers=32,
    mask_registers=7,
)

TARGETS = {t.name: t for t in (AVX2, AVX512F)}

# Baseline x86-64 with no vector extension: the target of code that only moves pointers and
# calls functions (the CPython entry points). Not a kernel target, so not in TARGETS.
X86_64 = Target(
    name="x86-64",
    features=frozenset(),
    vector_bits=128,
    vector_registers=16,
    mask_registers=0,
)


def get_target(name: str | Target) -> Target:
    if isinstance(name, Target):
        return name
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(
            f"unknown target ISA {name!r}; valid targets: {', '.join(sorted(TARGETS))}"
        ) from None


class OnTarget:
    """For variant dataclasses with an `isa` field: the Target it names."""

    isa: str

    @property
    def target(self) -> Target:
        return get_target(self.isa)
