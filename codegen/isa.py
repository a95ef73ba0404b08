"""The ISA table: every instruction-set target softjit generates code for, with the CPU flags it
needs and the capabilities kernels ask for by name.

This module owns every ISA fact: the generators ask `target.has_masks`, `target.has_scalef`,
`target.has_embedded_broadcast` and `target.vector_bits`; the host detection (runtime/cpu.py),
the dispatch (runtime/dispatch.py, best ISA first) and the algorithm tables (AUTO_TABLE and the
tuned table, keyed by ISA name) all read TARGETS. A Target is pure metadata: generation never
looks at the host CPU, so every target's code can be generated (and assembled) on any machine;
only running it needs the features.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """An instruction-set target: the CPU features its kernels may use, its vector width and
    register budget, and the capabilities generators ask for by name (has_masks, has_scalef,
    has_embedded_broadcast). AVX2 and AVX512F are the targets; get_target finds one by name."""

    name: str
    # CPU features the kernels may use, named as Linux /proc/cpuinfo flags (so host detection and
    # targets speak one language); a host runs the target's kernels when it has all of them.
    features: frozenset
    vector_bits: int
    vector_registers: int
    mask_registers: int  # usable k registers (k0 cannot be a write mask, so it is not counted)
    has_scalef: bool  # VSCALEFPS / VSCALEFPD (x * 2^n in one instruction) and VRNDSCALEPS
    has_embedded_broadcast: bool  # a memory operand read as one element repeated ({1toN})
    # Features a kernel for this target may also use, beyond `features` (which every host of the
    # target has): a kernel that uses one lists it in its Module.features, and only that kernel
    # needs it on the host. F16C (half-precision conversions) ships with every AVX2 CPU but is
    # not needed by the built-in kernels, so a host without it still runs them.
    extensions: frozenset = frozenset()

    @property
    def has_masks(self) -> bool:
        """Write masks (k registers): masked loads and stores, merge and zeroing."""
        return self.mask_registers > 0

    def allows(self, feature: str) -> bool:
        """A kernel for this target may use `feature` (required or extension)."""
        return feature in self.features or feature in self.extensions

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
    has_scalef=False,
    has_embedded_broadcast=False,
    extensions=frozenset({"f16c"}),
)

AVX512F = Target(
    name="avx512f",
    # The kernels use VL (ymm/xmm forms with EVEX), DQ (vextractf32x8) and BW (kmovd) beside F:
    # every AVX-512 CPU that ships F with VL also ships DQ and BW (Skylake-X onward, Zen 4 onward).
    features=frozenset({"avx", "avx2", "fma", "avx512f", "avx512vl", "avx512dq", "avx512bw"}),
    vector_bits=512,
    vector_registers=32,
    mask_registers=7,
    has_scalef=True,
    has_embedded_broadcast=True,
    extensions=frozenset({"f16c"}),
)

#: Every target, best first: dispatch picks the first one the host runs.
TARGETS: tuple[Target, ...] = (AVX512F, AVX2)
#: Their names, best first (the `isa` values the API accepts besides "auto").
ISA_NAMES: tuple[str, ...] = tuple(t.name for t in TARGETS)
#: Every CPU feature any target needs or allows: what host detection looks for.
KNOWN_FEATURES: frozenset = frozenset().union(*(t.features | t.extensions for t in TARGETS))

_BY_NAME = {t.name: t for t in TARGETS}

# Baseline x86-64 with no vector extension: the target of code that only moves pointers and
# calls functions (the CPython entry points). Not a kernel target, so not in TARGETS.
X86_64 = Target(
    name="x86-64",
    features=frozenset(),
    vector_bits=128,
    vector_registers=16,
    mask_registers=0,
    has_scalef=False,
    has_embedded_broadcast=False,
)


def get_target(name: str | Target) -> Target:
    """The Target named `name` ("avx2", "avx512f"); a Target is returned as it is."""
    if isinstance(name, Target):
        return name
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(
            f"unknown target ISA {name!r}; valid targets: {', '.join(ISA_NAMES)}"
        ) from None


class OnTarget:
    """For variant dataclasses with an `isa` field: the Target it names."""

    isa: str

    @property
    def target(self) -> Target:
        return get_target(self.isa)
