"""Which floating-point pipes each vector instruction form uses, measured on this core.

`taskset -c 1 python -m softjit bench --pipes`: for every instruction form the AVX2 kernels' main loops
execute, a loop of independent instances of that form alone, then mixed 1:1 with FMAs
(VFMADD231PS) and 1:1 with adds (VADDPS), each timed in core cycles. The loops are generated
by softjit's own code generator (a probe Function per mix) and called through cffi on one
pinned core, every round timing the clock chain beside the probes (cycles = thread CPU time
over the chain's time per cycle in the same round), medians over the rounds.

The FP side of Zen 3 / Zen 4 has four pipes; FMAs go to two of them (FP0, FP1 below) and adds
to the other two (FP2, FP3). A form's pipe set is the set of pipes whose fractional schedule
best predicts its three measurements: alone it runs |set| / cost per cycle; beside FMAs it
shares FP0/FP1 with them, beside adds FP2/FP3. A form that runs faster than four per cycle,
or alone faster than its best FP set allows, uses no FP pipe (loads, eliminated moves).

The schedule model (`makespan`): n_i instructions of form i, each taking cost_i cycles of one
pipe of its set P_i, spread fractionally over many iterations, need

    max over pipe sets S of  sum(n_i * cost_i for P_i within S) / |S|

cycles (the max-flow / min-cut bound of assigning work to pipes; it is reached, since the
fractional assignment problem has no other constraint). bench/port_floor.py computes the
floor of a kernel loop with the same function from the measured map.

Within a pair (FP0/FP1, FP2/FP3) the two pipes are measured only as a pair: a form inferred
to run on one pipe, "FP0", may be on either, and two such forms could share one. No form of
the AVX2 kernels' loops is such a form on Zen 4.

Vector loads (moves and memory source operands alike) and stores go through the load and
store ports, not the FP pipes: their rates are measured alone, and `PipeMap.cycles` takes
the busiest of the FP pipes, the load ports and the store port.
"""
from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass, field

PIPES = ("FP0", "FP1", "FP2", "FP3")
FMA_PIPES, ADD_PIPES = frozenset({"FP0", "FP1"}), frozenset({"FP2", "FP3"})


def makespan(work: dict, pipe_sets: dict) -> float:
    """Cycles to run `work` ({form: pipe cycles}) when form runs on any pipe of pipe_sets[form]
    (an empty set: no FP pipe, not counted): the best fractional assignment's busiest pipe."""
    best = 0.0
    pipes = sorted(set().union(*pipe_sets.values())) if pipe_sets else []
    for size in range(1, len(pipes) + 1):
        for subset in itertools.combinations(pipes, size):
            inside = frozenset(subset)
            load = sum(w for form, w in work.items()
                       if pipe_sets[form] and pipe_sets[form] <= inside)
            best = max(best, load / size)
    return best


# ---------------------------------------------------------------------------- the forms
@dataclass(frozen=True)
class Form:
    """One instruction form in a probe loop: emit(f, dest, sources, memory) emits one instance
    writing `dest` from the three constant `sources`, or reading `memory` (a constant in the
    pool), or storing to memory[1] (stack slots)."""

    name: str
    emit: object
    reads_dest: bool = False  # FMA-style: each instance extends its destination's chain
    loads: int = 0  # vector loads an instance makes (a memory source operand is one)
    stores: int = 0


_slot = itertools.count()  # store probes cycle through the stack slots


def _forms() -> tuple:
    def three(mnemonic):
        return lambda f, d, s, m: getattr(f, mnemonic)(d, s[0], s[1])

    def two(mnemonic):
        return lambda f, d, s, m: getattr(f, mnemonic)(d, s[0])

    return (
        Form("vfmadd231ps", lambda f, d, s, m: f.vfmadd231ps(d, s[0], s[1]), reads_dest=True),
        Form("vfmadd213ps", lambda f, d, s, m: f.vfmadd213ps(d, s[0], s[1]), reads_dest=True),
        Form("vfmadd231ps m", lambda f, d, s, m: f.vfmadd231ps(d, s[0], m[0]), reads_dest=True,
             loads=1),
        Form("vmulps", three("vmulps")),
        Form("vaddps", three("vaddps")),
        Form("vsubps", three("vsubps")),
        Form("vsubps m", lambda f, d, s, m: f.vsubps(d, s[0], m[0]), loads=1),
        Form("vmaxps", three("vmaxps")),
        Form("vmaxps m", lambda f, d, s, m: f.vmaxps(d, s[0], m[0]), loads=1),
        Form("vminps", three("vminps")),
        Form("vroundps", lambda f, d, s, m: f.vroundps(d, s[0], 0x08)),
        Form("vcvtps2dq", two("vcvtps2dq")),
        Form("vcvttps2dq", two("vcvttps2dq")),
        Form("vcvtdq2ps", two("vcvtdq2ps")),
        Form("vpslld", lambda f, d, s, m: f.vpslld(d, s[0], 23)),
        Form("vpsrld", lambda f, d, s, m: f.vpsrld(d, s[0], 23)),
        Form("vpaddd", three("vpaddd")),
        Form("vpsubd", three("vpsubd")),
        Form("vpand", three("vpand")),
        Form("vandps", three("vandps")),
        Form("vandnps", three("vandnps")),
        Form("vorps", three("vorps")),
        Form("vxorps", three("vxorps")),
        Form("vblendvps", lambda f, d, s, m: f.vblendvps(d, s[0], s[1], s[2])),
        Form("vcmpps", lambda f, d, s, m: f.vcmpps(d, s[0], s[1], 1)),
        Form("vpcmpgtd", three("vpcmpgtd")),
        Form("vpermilps", lambda f, d, s, m: f.vpermilps(d, s[0], 0x4E)),
        Form("vmovaps", two("vmovaps")),
        Form("vmovups load", lambda f, d, s, m: f.vmovups(d, m[1][next(_slot) % len(m[1])]),
             loads=1),
        Form("vmovups store", lambda f, d, s, m: f.vmovups(m[1][next(_slot) % len(m[1])], s[0]),
             stores=1),
        Form("vbroadcastss", lambda f, d, s, m: f.vbroadcastss(d, s[0].xmm)),
    )


FORMS = {form.name: form for form in _forms()}
FMA, ADD = "vfmadd231ps", "vaddps"
DEST_REGISTERS = 13  # 16 ymm registers: 3 constant sources, 13 destinations


def build_probe(name: str, target, mix: tuple):
    """A Function pipes_probe(n): n iterations of a loop that runs, per iteration, `count`
    independent instances of each (form name, count) of `mix`, interleaved."""
    from softjit.codegen.abi import Param, Signature
    from softjit.codegen.operands import ptr
    from softjit.codegen.stream import Function

    f = Function(Signature(name, (Param("size_t", "n"),),
                           doc="n iterations of a pipe-probe loop (bench/pipes.py)."), target)
    (n,) = f.args
    sources = f.vecs("source", 3)
    # loads and stores go to 12 vectors of a 64-byte aligned stack buffer (none crosses a
    # cache line)
    buffer = f.stack(12 * target.vector_bytes + 64)
    base = f.gp("store_base")
    f.lea(base, buffer)
    f.add(base, 63)
    f.and_(base, -64)
    memory = (f.constant("one", 1.0),
              [ptr(base, i * target.vector_bytes) for i in range(12)])
    for s in sources:
        f.vxorps(s, s, s)
    dests, slices = f.vecs("dest", DEST_REGISTERS), []
    # a chained form (FMA-style) needs many destinations, one chain each, to hide its latency;
    # a plain form only overwrites its destination (renaming makes each instance independent)
    chained = sum(FORMS[form].reads_dest for form, _ in mix)
    plain = len(mix) - chained
    plain_width = 1 if chained else DEST_REGISTERS // plain
    chain_width = (DEST_REGISTERS - plain * plain_width) // chained if chained else 0
    start = 0
    for form, _ in mix:
        width = chain_width if FORMS[form].reads_dest else plain_width
        slices.append(dests[start:start + width])
        start += width
    for d in dests:
        f.vxorps(d, d, d)
    streams = [[(FORMS[form], slices[i][k % len(slices[i])]) for k in range(count)]
               for i, (form, count) in enumerate(mix)]
    with f.count_down_loop(n, 1, "probe"):
        for group in itertools.zip_longest(*streams):
            for item in group:
                if item is not None:
                    form, dest = item
                    form.emit(f, dest, sources, memory)
    # every register stays live to here, so that none shares a register inside the loop
    for d in dests + sources[1:]:
        f.vorps(sources[0], sources[0], d)
    f.vzeroupper()
    f.ret()
    return f


def _probe_variant(mix: tuple, isa: str):
    from softjit.codegen.variants import VariantBase

    @dataclass(frozen=True)
    class PipeProbe(VariantBase):
        isa: str
        mix: tuple

        op = "pipe_probe"
        description = "a loop of independent vector instructions (bench/pipes.py)"

        @property
        def name(self) -> str:
            parts = "_".join(f"{form.replace(' ', '')}{count}" for form, count in self.mix)
            return f"pipe_probe__{self.isa}_{parts}"

        def functions(self) -> tuple:
            return (build_probe(self.name, self.target, self.mix),)

    return PipeProbe(isa, mix)


def build_chain_probe(name: str, target, chains: int, length: int):
    """A Function chains_probe(n): n iterations of `chains` independent chains of `length`
    dependent FMA-pipe ops each (a VMULPS that starts the chain, then FMAs on its result),
    stage by stage across the chains. Nothing carries from one iteration to the next, so only
    the out-of-order window limits how many iterations overlap."""
    from softjit.codegen.abi import Param, Signature
    from softjit.codegen.stream import Function

    f = Function(Signature(name, (Param("size_t", "n"),),
                           doc="n iterations of a dependent-chain probe (bench/pipes.py)."),
                 target)
    (n,) = f.args
    a, b = f.vec("a"), f.vec("b")
    f.vxorps(a, a, a)
    f.vxorps(b, b, b)
    values = f.vecs("chain", chains)
    for v in values:
        f.vxorps(v, v, v)
    with f.count_down_loop(n, 1, "probe"):
        for v in values:
            f.vmulps(v, a, b)
        for _ in range(length - 1):
            for v in values:
                f.vfmadd213ps(v, a, b)
    for v in values + [b]:
        f.vorps(a, a, v)
    f.vzeroupper()
    f.ret()
    return f


def _chain_variant(chains: int, length: int, isa: str):
    from softjit.codegen.variants import VariantBase

    @dataclass(frozen=True)
    class ChainProbe(VariantBase):
        isa: str
        chains: int
        length: int

        op = "chain_probe"
        description = "independent chains of dependent FMAs (bench/pipes.py)"

        @property
        def name(self) -> str:
            return f"chain_probe__{self.isa}_{self.chains}x{self.length}"

        def functions(self) -> tuple:
            return (build_chain_probe(self.name, self.target, self.chains, self.length),)

    return ChainProbe(isa, chains, length)


# chains x length per iteration: the FMA latency (4 cycles) times the FMA rate (2 a cycle) is 8
# FMAs in flight per chain-cycle; one long chain per iteration needs the window to hold many
# iterations at once
CHAIN_SHAPES = ((1, 8), (1, 16), (1, 32), (2, 16), (4, 8))


def measure_chains(isa: str = "avx2", rounds: int = 7) -> dict:
    """{(chains, length): FMA-pipe ops per cycle}."""
    cycles = measure_loops({shape: _chain_variant(*shape, isa) for shape in CHAIN_SHAPES}, isa,
                           rounds)
    return {shape: shape[0] * shape[1] / c for shape, c in cycles.items()}


# ---------------------------------------------------------------------------- measuring
@dataclass
class Probe:
    mix: tuple
    function: object
    iterations: int = 0
    cycles: list = field(default_factory=list)


def _timed(function, iterations: int) -> int:
    start = time.thread_time_ns()
    function(iterations)
    return time.thread_time_ns() - start


def measure_mixes(mixes: list, isa: str = "avx2", rounds: int = 7,
                  sample_ns: float = 2e6) -> dict:
    """{mix: median core cycles per loop iteration} for each mix ((form, count), ...)."""
    return measure_loops({mix: _probe_variant(mix, isa) for mix in mixes}, isa, rounds,
                         sample_ns)


def measure_loops(loops: dict, isa: str, rounds: int, sample_ns: float = 2e6) -> dict:
    """{key: median core cycles per iteration} of each probe variant ({key: variant}) whose
    function takes the number of iterations."""
    from softjit.bench.port_floor import _clock_chain
    from softjit.codegen.kernels.bandwidth import CLOCK_CHAIN_ADDS
    from softjit.runtime import bindings

    chain = bindings.function(_clock_chain(isa))
    chain_iterations = 200_000
    probes = [Probe(key, bindings.function(variant)) for key, variant in loops.items()]
    for probe in probes:
        probe.function(1000)
        trial = 1000
        while True:
            spent = _timed(probe.function, trial)
            if spent > sample_ns / 8 or trial > 1 << 26:
                break
            trial *= 4
        probe.iterations = max(1, int(trial * sample_ns / max(spent, 1)))
    for _ in range(rounds):
        ns_per_cycle = _timed(chain, chain_iterations) / (chain_iterations * CLOCK_CHAIN_ADDS)
        for probe in probes:
            probe.cycles.append(_timed(probe.function, probe.iterations)
                                / ns_per_cycle / probe.iterations)
    return {probe.mix: statistics.median(probe.cycles) for probe in probes}


# ---------------------------------------------------------------------------- inferring
CANDIDATE_SETS = tuple(frozenset(s) for size in range(1, 5)
                       for s in itertools.combinations(PIPES, size))
COSTS = (1.0, 2.0, 3.0, 4.0)  # pipe cycles one instruction takes
LOAD, STORE = "vmovups load", "vmovups store"
# Zen 3 and Zen 4 dispatch six macro-ops a cycle (a register move the renamer eliminates is
# one of them: 24 VMOVAPS + the loop's 2 macro-ops take 4.33 cycles, measured 4.3)
DISPATCH_WIDTH = 6
LOOP_OPS = 2  # a probe iteration's SUB and fused CMP + JAE


@dataclass(frozen=True)
class PipeMap:
    """Measured: each form's (FP pipe set, pipe cycles), and vector loads / stores per cycle."""

    forms: dict
    loads_per_cycle: float
    stores_per_cycle: float
    dispatch_per_cycle: float = DISPATCH_WIDTH

    def cycles(self, counts: dict, other_ops: int = LOOP_OPS) -> float:
        """The fewest cycles `counts` ({form: instances}) can take: the FP pipes' best
        assignment, the load or store ports, or dispatch (with `other_ops` more macro-ops,
        the loop's own), whichever is busiest."""
        work = {name: n * self.forms[name][1] for name, n in counts.items()}
        fp = makespan(work, {name: self.forms[name][0] for name in counts})
        loads = sum(n * FORMS[name].loads for name, n in counts.items())
        stores = sum(n * FORMS[name].stores for name, n in counts.items())
        dispatched = sum(counts.values()) + other_ops
        return max(fp, loads / self.loads_per_cycle, stores / self.stores_per_cycle,
                   dispatched / self.dispatch_per_cycle)


def infer(form: str, measured: dict, known: PipeMap) -> tuple:
    """(pipe set, cost per instruction, worst relative error) of `form` from its measured
    mixes ({mix: cycles}), given the reference forms in `known`."""
    best = None
    for pipes in CANDIDATE_SETS + (frozenset(),):
        for cost in COSTS:
            trial = PipeMap({**known.forms, form: (pipes, cost)}, known.loads_per_cycle,
                            known.stores_per_cycle)
            error = 0.0
            for mix, cycles in measured.items():
                error = max(error, abs(trial.cycles(dict(mix)) - cycles) / cycles)
            key = (round(error, 2), len(pipes), cost)  # ties: the fewest pipes, then cheapest
            if best is None or key < best[0]:
                best = (key, pipes, cost, error)
            if not pipes:
                break  # no FP pipe: the cost does not matter
    return best[1], best[2], best[3]


ALONE, PAIRED = 24, 12  # instances per iteration: a form alone, each form of a 1:1 mix
REFERENCE = {FMA: (FMA_PIPES, 1.0), ADD: (ADD_PIPES, 1.0), LOAD: (frozenset(), 1.0),
             STORE: (frozenset(), 1.0)}
# loads from memory operands and from moves share the load ports: 12 + 12 of them
MEMORY_CHECK = (("vfmadd231ps m", PAIRED), (LOAD, PAIRED))


def mixes_of(form: str) -> list:
    if form in REFERENCE:
        return [((form, ALONE),)]
    return [((form, ALONE),), ((form, PAIRED), (FMA, PAIRED)), ((form, PAIRED), (ADD, PAIRED))]


def run(forms: list | None = None, isa: str = "avx2", rounds: int = 7,
        cpu_index: int | None = None) -> dict:
    """Measure every form (default: all of FORMS) and infer its pipes; returns a report dict
    with the PipeMap under "map"."""
    from softjit.bench.timing import pin_to_one_cpu

    pinned = pin_to_one_cpu(cpu_index)
    names = list(forms or FORMS)
    for name in names:
        if name not in FORMS:
            raise ValueError(f"unknown form {name!r}; the forms are: {', '.join(FORMS)}")
    order = list(dict.fromkeys(list(REFERENCE) + names))
    mixes = [mix for name in order for mix in mixes_of(name)] + [MEMORY_CHECK]
    cycles = measure_mixes(list(dict.fromkeys(mixes)), isa, rounds)
    known = PipeMap({name: REFERENCE[name] for name in REFERENCE},
                    ALONE / cycles[((LOAD, ALONE),)], ALONE / cycles[((STORE, ALONE),)])
    rows, forms_map = {}, dict(known.forms)
    for name in order:
        measured = {mix: cycles[mix] for mix in mixes_of(name)}
        if name in REFERENCE:
            pipes, cost = REFERENCE[name]
            error = max(abs(known.cycles(dict(m)) - c) / c for m, c in measured.items())
        else:
            pipes, cost, error = infer(name, measured, known)
        forms_map[name] = (pipes, cost)
        rows[name] = {"alone": ALONE / measured[((name, ALONE),)],
                      "with_fma": next((c for m, c in measured.items() if (FMA, PAIRED) in m),
                                       None),
                      "with_add": next((c for m, c in measured.items() if (ADD, PAIRED) in m),
                                       None),
                      "pipes": sorted(pipes), "cost": cost, "error": error}
    pipe_map = PipeMap(forms_map, known.loads_per_cycle, known.stores_per_cycle)
    return {"pinned_cpu": pinned, "isa": isa, "forms": rows, "map": pipe_map,
            "memory_check": (cycles[MEMORY_CHECK], pipe_map.cycles(dict(MEMORY_CHECK))),
            "chains": measure_chains(isa, rounds)}


def format_results(results: dict) -> str:
    lines = [f"pipes per instruction form ({results['isa']}, ymm), core cycles from the clock "
             f"chain, pinned to CPU {results['pinned_cpu']}",
             f"{'form':<16}{'alone/cycle':>12}{'+FMA cyc':>10}{'+ADD cyc':>10}   "
             f"{'pipes':<20}{'cost':>5}{'fit err':>9}",
             f"{'':<16}{'':>12}{'(12+12)':>10}{'(12+12)':>10}"]
    for name, row in results["forms"].items():
        def cell(value):
            return f"{value:10.2f}" if value is not None else f"{'':>10}"
        pipes = ",".join(row["pipes"]) or "none (not FP)"
        lines.append(f"{name:<16}{row['alone']:12.2f}{cell(row['with_fma'])}"
                     f"{cell(row['with_add'])}   {pipes:<20}{row['cost']:5.0f}"
                     f"{row['error']:8.0%}")
    pipe_map = results["map"]
    measured, predicted = results["memory_check"]
    lines.append("a 1:1 mix on disjoint pipe pairs takes 6 cycles; sharing two pipes with the "
                 "reference, 12")
    lines.append(f"vector loads {pipe_map.loads_per_cycle:.2f} / cycle, stores "
                 f"{pipe_map.stores_per_cycle:.2f} / cycle; 12 FMAs with a memory operand + 12 "
                 f"loads: {measured:.2f} cycles (model: {predicted:.2f})")
    lines.append("dependent chains (a multiply, then FMAs on its result), nothing carried "
                 "between iterations: FMA-pipe ops per cycle (2.00 = the pipes' rate)")
    for (chains, length), rate in results.get("chains", {}).items():
        latency = 4 * length
        lines.append(f"  {chains} x {length:<3} per iteration ({latency:3d} cycles of latency "
                     f"a chain): {rate:4.2f} / cycle, {rate * latency:4.0f} in flight")
    return "\n".join(lines) + "\n"

