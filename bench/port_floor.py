"""The port floor of a kernel: the time its main loop needs if the busiest of the core's
execution resources does nothing else, from the kernel's own instruction mix and a pipe map of
the CPU family (measured with bench/pipes.py; the maps are in docs/performance.md).

Counting: the main loop of each pass (the unrolled loop for_each_vector emits, or its one-vector
loop when there is no unrolled one) is read from the emitted assembly, and every instruction is
charged to the resources it uses:

    fma  vfmadd*, vfnmadd*, vfmsub*, vmul*, vblendvps              the two FMA pipes
    add  vadd*, vsub*, vmax*, vmin*, vround*, vrndscale*, vscalef*,  the two FADD pipes
         vector shifts, conversions, vcmpps
    any  vector integer add/sub, logic, integer compares, vblendm*    any of the four FP pipes
    loads   every memory source operand (a move, a broadcast, an operand of an FMA)
    stores  every memory destination
    dispatch  every instruction (a compare fused with its jump counts once)

Register moves (VMOVAPS/VMOVUPS between registers) take no pipe: the renamer eliminates them.
A vector op wider than the pipes takes one pass per pipe width (a zmm op on Zen 4: two), as
does a full-width load or store (a {1toN} broadcast load: one). The FP pipes' share is the best
fractional assignment of each op to one of its allowed pipes (pipes.makespan):

    max(fma / 2, add / 2, (fma + add + any) / 4)   pipe cycles

and the floor of one loop iteration is the largest of that, loads / load ports, stores / store
ports and instructions / dispatch width, divided by the elements the iteration handles; a
softmax's floor is the sum over its passes. Divided by the measured clock it is in ns per
element, and "x floor" is the measured time over it. Block folds (once per ~2048 elements),
tails and per-call costs are not in the floor. It is a floor, not a prediction: a loop whose
dependency chains need more operations in flight than the scheduler holds runs above it.
"""
from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field

from softjit.bench.pipes import ADD_PIPES, FMA_PIPES, PIPES, makespan

FMA, ADD, ANY = "fma", "add", "any"
LOADS, STORES, DISPATCH = "loads", "stores", "dispatch"
PIPE_SETS = {FMA: FMA_PIPES, ADD: ADD_PIPES, ANY: frozenset(PIPES)}

_CLASSES = (
    (FMA, re.compile(r"^v(f|fn)m(add|sub)\d{3}[ps][sd]$|^vmul[ps][sd]$|^vblendv[ps][sd]$")),
    (ADD, re.compile(r"^v(add|sub|max|min)[ps][sd]$|^vrndscale[ps][sd]$|^vround[ps][sd]$"
                     r"|^vscalef[ps][sd]$|^vp(sll|srl|sra)[dq]$|^vcvt\w+$|^vcmp[ps][sd]$")),
    (ANY, re.compile(r"^vp(add|sub)[dq]$|^v(p)?(and|andn|or|xor)(p[sd]|d|q)?$|^vpternlog[dq]$"
                     r"|^vblendm\w+$|^vpcmp\w+$")),
)
_MOVES = re.compile(r"^vmov(aps|ups|apd|upd|dqa|dqu)\w*$")
_STORE_FORMS = re.compile(r"^(vmov\w+|vmaskmov\w+|mov\w*)$")
_JUMPS = re.compile(r"^j[a-z]+$")


def op_class(mnemonic: str) -> str | None:
    for name, pattern in _CLASSES:
        if pattern.match(mnemonic):
            return name
    return None


@dataclass(frozen=True)
class PortModel:
    """The execution resources of one CPU family, as the floor charges them."""

    family: str
    pipe_bits: int = 256  # the widest vector a pipe, a load port or the store port takes
    loads_per_cycle: float = 2.0  # vector loads of pipe_bits or less
    stores_per_cycle: float = 1.0
    dispatch_per_cycle: int = 6
    # passes a 512-bit instruction takes beyond the width rule (VSCALEFPS zmm on Zen 4 issues at
    # half the rate of the other FADD-pipe ops: measured, see docs/performance.md)
    extra: dict = field(default_factory=dict)

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
_MEMORY_BITS = {"BYTE": 8, "WORD": 16, "DWORD": 32, "QWORD": 64, "XMMWORD": 128,
                "YMMWORD": 256, "ZMMWORD": 512}


@dataclass(frozen=True)
class LoopInstruction:
    mnemonic: str
    bits: int  # the widest vector register operand (0: none)
    memory: tuple = ()  # (bits read or written, is a broadcast, is the destination) per operand


def _bits(operands: str) -> int:
    widths = [_REGISTER_BITS[m] for m in re.findall(r"\b([xyz])mm\d+", operands)]
    return max(widths, default=0)


def _memory(operands: str) -> tuple:
    found = []
    for index, operand in enumerate(o.strip() for o in operands.split(",")):
        match = re.match(r"^(\w+) (PTR|BCST) \[", operand)
        if match:
            found.append((_MEMORY_BITS.get(match.group(1), 0), match.group(2) == "BCST",
                          index == 0))
    return tuple(found)


def parse(mnemonic: str, operands: str) -> LoopInstruction:
    return LoopInstruction(mnemonic, _bits(operands), _memory(operands))


def main_loops(assembly: str) -> dict:
    """{function symbol: (loop label, vectors per iteration, [LoopInstruction, ...])} for every
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
            body.append(parse(mnemonic, operands.split("#")[0]))
            if mnemonic.startswith("j") and operands.strip() == label:
                break
        found[symbol] = (label, vectors, body)
    return found


@dataclass(frozen=True)
class Floor:
    cycles_per_element: float
    counts: dict  # resource -> passes per element (fma, add, any, loads, stores, dispatch)
    bound: str = ""  # the busiest resource of the slowest pass ("fp", "loads", ...)

    def ns_per_element(self, ghz: float) -> float:
        return self.cycles_per_element / ghz


def _charges(instruction: LoopInstruction, model: PortModel) -> dict:
    """{resource: passes} one instruction takes."""
    charges = {DISPATCH: 1.0}
    kind = op_class(instruction.mnemonic)
    if kind is not None:
        charges[kind] = model.passes(instruction.mnemonic, instruction.bits or model.pipe_bits)
    for bits, broadcast, destination in instruction.memory:
        width = 1.0 if broadcast else max(1.0, bits / model.pipe_bits)
        is_store = destination and _STORE_FORMS.match(instruction.mnemonic)
        resource = STORES if is_store else LOADS
        charges[resource] = charges.get(resource, 0.0) + width
    return charges


def loop_floor(body: list, elements: int, model: PortModel) -> Floor:
    counts = {FMA: 0.0, ADD: 0.0, ANY: 0.0, LOADS: 0.0, STORES: 0.0, DISPATCH: 0.0}
    fused = False
    for instruction in body:
        if _JUMPS.match(instruction.mnemonic) and fused:
            continue  # fused with the compare before it: one macro-op
        fused = instruction.mnemonic in ("cmp", "test")
        for resource, passes in _charges(instruction, model).items():
            counts[resource] += passes
    limits = {
        "fp": makespan({k: counts[k] for k in (FMA, ADD, ANY)}, PIPE_SETS),
        LOADS: counts[LOADS] / model.loads_per_cycle,
        STORES: counts[STORES] / model.stores_per_cycle,
        DISPATCH: counts[DISPATCH] / model.dispatch_per_cycle,
    }
    bound = max(limits, key=limits.get)
    return Floor(limits[bound] / elements, {k: v / elements for k, v in counts.items()}, bound)


def kernel_floor(assembly: str, symbols, lanes: int, model: PortModel) -> Floor:
    """The floor of a kernel that runs the main loops of `symbols` once each per element (a
    softmax's passes, or one exp kernel)."""
    loops = main_loops(assembly)
    total, counts, bounds = 0.0, {}, []
    for symbol in symbols:
        if symbol not in loops:
            raise ValueError(f"no main loop found for {symbol}")
        _, vectors, body = loops[symbol]
        floor = loop_floor(body, vectors * lanes, model)
        total += floor.cycles_per_element
        bounds.append((floor.cycles_per_element, floor.bound))
        for k, v in floor.counts.items():
            counts[k] = counts.get(k, 0.0) + v
    return Floor(total, counts, max(bounds)[1] if bounds else "")


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
            return f"port floor: no pipe map for {self.cpu} (see docs/performance.md)"
        return (f"port floor: {self.model.family} pipe map ({self.cpu}; FP pipes, load and "
                f"store ports, dispatch), clock measured at {self.ghz:.2f} GHz")


def host_floors(isa: str | None) -> HostFloors:
    key, text = host_family()
    if key is None or isa is None:
        return HostFloors(None, text, None)
    return HostFloors(MODELS[key], text, measure_ghz(isa))
