"""The FP-port floor of a kernel: the time its main loop needs if the floating-point pipes do
nothing else, from the kernel's own instruction mix and a port model of the CPU family.

Counting: the main loop of each pass (the unrolled loop for_each_vector emits, or its one-vector
loop when there is no unrolled one) is read from the emitted assembly, its instructions sorted
into classes, and each class charged to the pipes that execute it:

    fma  vfmadd*, vfnmadd*, vmul*                       the FMA pipes
    add  vadd*, vsub*, vmax*, vmin*, vrndscale*, vround*, vscalef*, shifts, conversions
                                                         the FADD pipes
    any  vector integer add/sub and logic, blends       any FP pipe

Loads, stores, broadcasts from memory and general-purpose instructions use other units and are
not charged. The floor in cycles per loop iteration is

    max(fma / fma_pipes, add / add_pipes, (fma + add + any) / all_pipes)

with each instruction weighted by how many passes through a pipe it takes (a 512-bit op on a
core with 256-bit pipes takes two). Block folds, tails and per-call setup are left out: the
floor is for the loop a long row spends its time in. The models are in docs/performance.md.
"""
from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field

FMA, ADD, ANY = "fma", "add", "any"

_CLASSES = (
    (FMA, re.compile(r"^v(f|fn)m(add|sub)\d{3}[ps][sd]$|^vmul[ps][sd]$")),
    (ADD, re.compile(r"^v(add|sub|max|min)[ps][sd]$|^vrndscale[ps][sd]$|^vround[ps][sd]$"
                     r"|^vscalef[ps][sd]$|^vp(sll|srl|sra)[dq]$|^vcvt\w+$")),
    (ANY, re.compile(r"^vp(add|sub)[dq]$|^v(p)?(and|andn|or|xor)(p[sd]|d|q)?$|^vpternlog[dq]$"
                     r"|^vblend\w+$|^vpcmp\w+$")),
)


def op_class(mnemonic: str) -> str | None:
    for name, pattern in _CLASSES:
        if pattern.match(mnemonic):
            return name
    return None


@dataclass(frozen=True)
class PortModel:
    """How the FP pipes of one CPU family execute the classes above."""

    family: str
    fma_pipes: int = 2
    add_pipes: int = 2
    pipe_bits: int = 256  # the widest vector a pipe takes in one pass
    # passes a 512-bit instruction takes beyond the width rule (VSCALEFPS zmm on Zen 4 issues at
    # half the rate of the other FADD-pipe ops: measured, see docs/performance.md)
    extra: dict = field(default_factory=dict)

    @property
    def all_pipes(self) -> int:
        return self.fma_pipes + self.add_pipes

    def passes(self, mnemonic: str, bits: int) -> float:
        width = max(1, bits // self.pipe_bits)
        return width * self.extra.get((mnemonic, bits), 1)


MODELS = {
    "zen3": PortModel("Zen 3"),
    "zen4": PortModel("Zen 4", extra={("vscalefps", 512): 2, ("vscalefpd", 512): 2}),
    "zen5": PortModel("Zen 5", pipe_bits=512),
}


def family_of(cpu_family: int, model: int) -> str | None:
    """AMD family/model (from /proc/cpuinfo, decimal) to a MODELS key, None when unknown."""
    if cpu_family == 0x19:
        return "zen3" if model < 0x10 or 0x20 <= model < 0x60 else "zen4"
    if cpu_family == 0x1A:
        return "zen5"
    return None


def host_family(path: str = "/proc/cpuinfo") -> tuple:
    """(MODELS key or None, "family 25 model 17" text) of this host."""
    values = {}
    try:
        with open(path, encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("cpu family", "model", "vendor_id") and key not in values:
                    values[key] = value.strip()
                if len(values) == 3:
                    break
    except OSError:
        return None, "unknown"
    try:
        family, model = int(values["cpu family"]), int(values["model"])
    except (KeyError, ValueError):
        return None, "unknown"
    text = f"{values.get('vendor_id', '?')} family {family:#x} model {model:#x}"
    key = family_of(family, model) if values.get("vendor_id") == "AuthenticAMD" else None
    return key, text


# -------------------------------------------------------------------------------- the loops
_LABEL = re.compile(r"^(\.L\S+):\s*$")
_INSTRUCTION = re.compile(r"^\s+([a-z][a-z0-9]*)\s*(.*)$")
_REGISTER_BITS = {"x": 128, "y": 256, "z": 512}


def _bits(operands: str) -> int:
    widths = [_REGISTER_BITS[m] for m in re.findall(r"\b([xyz])mm\d+", operands)]
    return max(widths, default=0)


def main_loops(assembly: str) -> dict:
    """{function symbol: (loop label, vectors per iteration, [(mnemonic, bits), ...])} for every
    function with a for_each_vector loop: its unrolled loop (label ..._uK) if it has one, else
    its one-vector loop (..._v1)."""
    found, current, lines = {}, None, assembly.splitlines()
    loops = {}
    for index, line in enumerate(lines):
        symbol = re.match(r"^([A-Za-z_]\w*):\s*$", line)
        if symbol:
            current = symbol.group(1)
            continue
        label = _LABEL.match(line)
        if (label and current and label.group(1).startswith(f".L{current}_")
                and re.search(r"_(u\d+|v1)$", label.group(1)[len(current) + 3:])):
            loops.setdefault(current, []).append((label.group(1), index))
    for symbol, candidates in loops.items():
        unrolled = [c for c in candidates if re.search(r"_u\d+$", c[0])]
        label, start = (unrolled or candidates)[0]
        vectors = int(re.search(r"_u(\d+)$", label).group(1)) if unrolled else 1
        body = []
        for line in lines[start + 1:]:
            match = _INSTRUCTION.match(line)
            if not match:
                continue
            mnemonic, operands = match.groups()
            if mnemonic.startswith("j") and operands.strip() == label:
                break
            body.append((mnemonic, _bits(operands)))
        found[symbol] = (label, vectors, body)
    return found


@dataclass(frozen=True)
class Floor:
    cycles_per_element: float
    counts: dict  # class -> pipe passes per element

    def ns_per_element(self, ghz: float) -> float:
        return self.cycles_per_element / ghz


def loop_floor(body: list, elements: int, model: PortModel) -> Floor:
    counts = {FMA: 0.0, ADD: 0.0, ANY: 0.0}
    for mnemonic, bits in body:
        kind = op_class(mnemonic)
        if kind is not None:
            counts[kind] += model.passes(mnemonic, bits or model.pipe_bits)
    cycles = max(counts[FMA] / model.fma_pipes, counts[ADD] / model.add_pipes,
                 sum(counts.values()) / model.all_pipes)
    return Floor(cycles / elements, {k: v / elements for k, v in counts.items()})


def kernel_floor(assembly: str, symbols, lanes: int, model: PortModel) -> Floor:
    """The floor of a kernel that runs the main loops of `symbols` once each per element (a
    softmax's passes, or one exp kernel)."""
    loops = main_loops(assembly)
    total, counts = 0.0, {FMA: 0.0, ADD: 0.0, ANY: 0.0}
    for symbol in symbols:
        if symbol not in loops:
            raise ValueError(f"no main loop found for {symbol}")
        _, vectors, body = loops[symbol]
        floor = loop_floor(body, vectors * lanes, model)
        total += floor.cycles_per_element
        for k, v in floor.counts.items():
            counts[k] += v
    return Floor(total, counts)


def variant_floor(variant, model: PortModel) -> Floor:
    """The floor of a registered vexp or softmax variant (probes have none: None)."""
    from softjit.runtime import bindings

    if variant.op == "softmax":
        symbols = [p.symbol for p in variant.passes]
    elif variant.op == "vexp":
        symbols = [variant.name]
    else:
        return None
    return kernel_floor(bindings.assembly(variant), symbols, variant.target.lanes, model)


# ------------------------------------------------------------------------------ the clock
def measure_ghz(isa: str, iterations: int = 2_000_000, repeats: int = 7) -> float:
    """Core cycles per ns on this thread: a chain of dependent adds (one cycle each), timed
    with the thread's CPU clock, median of `repeats`."""
    from softjit.codegen.kernels.bandwidth import CLOCK_CHAIN_ADDS
    from softjit.runtime import bindings

    chain = bindings.function(_clock_chain(isa))
    chain(1000)
    rates = []
    for _ in range(repeats):
        start = time.thread_time_ns()
        chain(iterations)
        rates.append(iterations * CLOCK_CHAIN_ADDS / max(1, time.thread_time_ns() - start))
    return statistics.median(rates)


def _clock_chain(isa: str):
    """The clock probe as a variant the runtime can load (not registered: it is not a softmax
    kernel, and nothing but the benchmark calls it)."""
    from softjit.codegen.kernels.bandwidth import build_clock_chain
    from softjit.codegen.variants import VariantBase

    @dataclass(frozen=True)
    class ClockChain(VariantBase):
        isa: str

        op = "clock_chain"
        description = "a chain of dependent adds: one per cycle"

        @property
        def name(self) -> str:
            return f"clock_chain__{self.isa}"

        def functions(self) -> tuple:
            return (build_clock_chain(self.name, self.target),)

    return ClockChain(isa)


@dataclass(frozen=True)
class HostFloors:
    """What the benchmark needs to print floors on this host: the model and the clock."""

    model: PortModel | None
    cpu: str  # the family/model text
    ghz: float | None

    def floor_ns(self, variant) -> float | None:
        if self.model is None or self.ghz is None:
            return None
        floor = variant_floor(variant, self.model)
        return None if floor is None else floor.ns_per_element(self.ghz)

    def describe(self) -> str:
        if self.model is None:
            return f"FP-port floor: no port model for {self.cpu} (see docs/performance.md)"
        return (f"FP-port floor: {self.model.family} model ({self.cpu}), clock measured at "
                f"{self.ghz:.2f} GHz")


def host_floors(isa: str | None) -> HostFloors:
    key, text = host_family()
    if key is None or isa is None:
        return HostFloors(None, text, None)
    return HostFloors(MODELS[key], text, measure_ghz(isa))
