"""The built-in kinds of kernel module: what a variant is (the Variant protocol, VariantBase) and
one frozen dataclass per family (VExp, RMax, Softmax, LogSoftmax, the bandwidth probes), each
naming itself from its parameters and building its Module from codegen/kernels/.

Which of them exist, and the one way to find one, is codegen/variants.py's REGISTRY; that module
also re-exports these names, so importers say `variants.Softmax`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from softjit.codegen.algorithms import (ALGORITHMS, LOG_SOFTMAX_ALGORITHMS, RELOAD,
                                        algorithms_for)
from softjit.codegen.element_formats import F32, ElementFormat, element_format
from softjit.codegen.isa import OnTarget, Target
from softjit.codegen.lazy import LazyModule

if TYPE_CHECKING:
    from softjit.codegen.module import Module

# The generators are imported at first use (a kernel built), not with the registry: `import
# softjit` reads the registry and builds nothing.
bandwidth = LazyModule("softjit.codegen.kernels.bandwidth")
driver = LazyModule("softjit.codegen.kernels.driver")
elementwise = LazyModule("softjit.codegen.kernels.elementwise")
log_softmax = LazyModule("softjit.codegen.kernels.log_softmax")
sumexp = LazyModule("softjit.codegen.kernels.sumexp")
passes = LazyModule("softjit.codegen.kernels.softmax")

# The batch drivers of a module's reduction passes and of its output pass, each row with its own
# state (codegen/kernels/log_softmax.py): NAME_reduce and NAME_apply.
REDUCE_SUFFIX, APPLY_SUFFIX = "_reduce", "_apply"


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
        from softjit.codegen.module import Module

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
    """One softmax algorithm on one ISA: its pass kernels and the row driver, in one module
    (two-pass also has the batch drivers of its first pass and of its output pass, reduce_symbol
    and apply_symbol, for rows cut into pieces whose sums are combined by the caller).

    reduce_*: the pass that reads x to a sum (raddextexp, raddstoreexpminusmax,
    raddexpminusmax); output_unroll: the pass that writes y; rmax_*: the three-pass max pass;
    block_elements: about how many elements a float32 block sums before the float64 fold (a
    whole number of main-loop steps; at 2048, a float32 lane accumulator takes 2048/(lanes*K)
    additions, so its rounding error stays near 1e-6 whatever n is); element: the format of
    x and y ("f32", or "f16" / "bf16": converted in registers, computed in float32); scaled:
    softmax(s * x), every pass multiplying x by the input scale s as it loads it (the driver
    reads s after the row stride pair, abi.ROW_STRIDES_INPUT_SCALE), "_scaled" in the names
    (16-bit x is widened, then multiplied; only float32 scaled softmax modules are registered).
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
    element: str = F32.name
    scaled: bool = False

    op = "softmax"

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown softmax algorithm {self.algorithm!r}; "
                             f"valid: {', '.join(ALGORITHMS)}")
        element_format(self.element)
        if self.algorithm not in algorithms_for(self.element):
            raise ValueError(f"{self.algorithm} writes exp(x - max) into y and scales it there: "
                             f"with {self.element} elements that rounds twice; "
                             f"{self.element} softmax algorithms: "
                             f"{', '.join(algorithms_for(self.element))}")

    @property
    def format(self) -> ElementFormat:
        return element_format(self.element)

    @property
    def description(self) -> str:
        scaled = " of scale * x" if self.scaled else ""
        return f"{self.algorithm} softmax{scaled}, {self.format.dtype_name}"

    @property
    def block(self) -> int:
        step = self.reduce_unroll * self.target.lanes
        return max(1, round(self.block_elements / step)) * step

    def _interleave(self, unroll: int) -> str:
        g = self.interleave
        return f"_i{g}" if 0 < g < unroll else ""

    def _pass(self, op: str, params: str, build, flavoured: bool = True,
              reads_x: bool = True) -> PassKernel:
        """A pass named f32_OP[_scaled]__ISA[_FLAVOUR]_PARAMS (_scaled: it multiplies x by the
        input scale; a pass that reads no x has no scaled form); its part of the module name is
        OP_PARAMS."""
        flavour = f"_{exp_flavour(self.target)}" if flavoured else ""
        scaled = "_scaled" if self.scaled and reads_x else ""
        return PassKernel(f"{self.element}_{op}{scaled}__{self.isa}{flavour}_{params}",
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
        e, sc = self.format, self.scaled
        if self.algorithm == "two-pass":
            return (
                self._pass("raddextexp", reduce, lambda s: passes.build_raddextexp(
                    s, t, ru, ra, self.block, g, e, sc)),
                self._pass("vscaleextexp", output, lambda s: passes.build_vscaleextexp(
                    s, t, ou, nt, g, e, sc)),
            )
        rmax = self._pass(
            "rmax_pass", f"{_elements(t, self.rmax_unroll)}_acc{self.rmax_accumulators}",
            lambda s: passes.build_rmax_pass(s, t, self.rmax_unroll, self.rmax_accumulators, e,
                                             sc),
            flavoured=False)
        if self.algorithm == "three-pass-reload":
            return (
                rmax,
                self._pass("raddstoreexpminusmax", reduce, lambda s:
                           passes.build_raddstoreexpminusmax(s, t, ru, ra, self.block, g, sc)),
                self._pass("vscale", output, lambda s: passes.build_vscale(s, t, ou, nt),
                           flavoured=False, reads_x=False),
            )
        return (
            rmax,
            self._pass("raddexpminusmax", reduce, lambda s: passes.build_raddexpminusmax(
                s, t, ru, ra, self.block, g, e, sc)),
            self._pass("vscaleexpminusmax", output, lambda s: passes.build_vscaleexpminusmax(
                s, t, ou, nt, g, e, sc)),
        )

    @property
    def name(self) -> str:
        tail = "_".join(p.short_name for p in self.passes)
        scaled = "_scaled" if self.scaled else ""
        return (f"{self.element}_softmax_{self.algorithm.replace('-', '')}{scaled}__{self.isa}_"
                f"{tail}")

    @property
    def driver_symbol(self) -> str:
        return self.name

    @property
    def reduce_symbol(self) -> str:
        """two-pass only (not scaled): the driver that runs the first pass alone on a batch of
        rows, each row's state left in a states array (abi.REDUCE_DRIVER_PARAMS), for callers
        that combine the sums of a row's pieces themselves (softjit.dask)."""
        return self.name + REDUCE_SUFFIX

    @property
    def apply_symbol(self) -> str:
        """two-pass only: the driver that runs the output pass on a batch of rows, each with
        its own state (abi.APPLY_DRIVER_PARAMS)."""
        return self.name + APPLY_SUFFIX

    def functions(self) -> tuple:
        kernels = [p.build(p.symbol) for p in self.passes]
        # A scaled three-pass max pass flags rows whose max is not finite (a product that may
        # have overflowed): its driver marks them as two-pass's marks its rows.
        row_driver = driver.build_driver(self.name, self.target, [p.symbol for p in self.passes],
                                         may_flag=self.algorithm == "two-pass" or self.scaled,
                                         element=self.format, scaled=self.scaled)
        if self.algorithm != "two-pass" or self.scaled:
            # (softjit.dask's batch drivers: of unscaled two-pass modules only)
            return (*kernels, row_driver)
        first, output = self.passes
        reduce = log_softmax.build_reduce_driver(self.reduce_symbol, self.target, [first.symbol],
                                                 may_flag=True, element=self.format)
        apply = log_softmax.build_apply_driver(self.apply_symbol, self.target, output.symbol,
                                               element=self.format)
        return (*kernels, row_driver, reduce, apply)


# ---------------------------------------------------------------------------- log_softmax
LOGSUMEXP_SUFFIX, LOG_SOFTMAX_SUFFIX = "_logsumexp", "_rows"
DIFFERENCE_TILE = 4  # vectors a tile of the float32 three-pass middle pass holds


@dataclass(frozen=True)
class LogSoftmax(VariantBase):
    """log_softmax (and logsumexp, which runs only its reduce driver) on one ISA: the reduction
    passes of a softmax algorithm, the row's logarithm, the subtracting output pass vsubsub and
    the two row drivers of codegen/kernels/log_softmax.py, in one module.

    two-pass reduces with raddextexp (one read of x), and the rows it gives back with the
    three-pass passes; three-pass with rmax and raddexpminusmax.
    The parameters mean what they mean for Softmax, except that blocks are shorter by default:
    ln(sum) turns the sum's relative error into y's absolute error, and a float32 lane
    accumulator that takes T additions a block is off by up to about T * 2^-24 relative (terms
    far below the lane's running sum round away). terms_per_lane caps T at 16 (error <= 1e-6),
    where softmax's 2048-element blocks allow up to 256 on AVX2.

    scaled: log_softmax and logsumexp of s * x, every pass that reads x multiplying it by the
    input scale s as it loads it (the scaled softmax passes, and vsubsub's scaled form), plus
    the overflow check pass roverflow the scaled log_softmax driver runs where an overflowed
    product could change y; "_scaled" in the names (16-bit x too: widened as it is loaded,
    then multiplied). No batch drivers for softjit.dask (reduce, apply) in a scaled module."""

    algorithm: str
    isa: str
    reduce_unroll: int
    reduce_accumulators: int
    output_unroll: int
    rmax_unroll: int = 4
    rmax_accumulators: int = 2
    terms_per_lane: int = 16
    nontemporal: bool = False
    element: str = F32.name  # x and y: "f32", "f16" or "bf16" (as for Softmax)
    scaled: bool = False

    op = "log_softmax"

    @property
    def block_elements(self) -> int:
        """Elements a float32 block sums: terms_per_lane additions into each lane accumulator."""
        return self.terms_per_lane * self.target.lanes * self.reduce_accumulators

    def __post_init__(self):
        if self.algorithm not in LOG_SOFTMAX_ALGORITHMS:
            raise ValueError(f"unknown log_softmax algorithm {self.algorithm!r}; "
                             f"valid: {', '.join(LOG_SOFTMAX_ALGORITHMS)}")
        element_format(self.element)

    @property
    def format(self) -> ElementFormat:
        return element_format(self.element)

    @property
    def description(self) -> str:
        scaled = " of scale * x" if self.scaled else ""
        return f"{self.algorithm} log_softmax and logsumexp{scaled}, {self.format.dtype_name}"

    def _softmax(self, algorithm: str | None = None) -> Softmax:
        """The softmax whose reduction passes (names, builders, block) this module shares: by
        default its own algorithm's, "three-pass-recompute" for the three-pass reduction."""
        if algorithm is None:
            algorithm = "two-pass" if self.algorithm == "two-pass" else "three-pass-recompute"
        return Softmax(algorithm, self.isa, self.reduce_unroll, self.reduce_accumulators,
                       self.output_unroll, self.rmax_unroll, self.rmax_accumulators,
                       self.block_elements, element=self.element, scaled=self.scaled)

    @property
    def reduce_passes(self) -> tuple:
        """The PassKernels of the module's own reduction, in order (two-pass: raddextexp;
        three-pass: rmax, raddexpminusmax)."""
        if self.algorithm == "two-pass":
            return self._softmax().passes[:1]
        return self.three_pass_passes

    @property
    def three_pass_passes(self) -> tuple:
        """rmax and raddexpminusmax: the three-pass module's reduction, and the two-pass
        module's for the rows its first pass gives back. (A three-pass module sums with the
        exp of codegen/kernels/sumexp.py: its float32 log_softmax driver's, so that both
        drivers leave the same states and a 16-bit row's sum is its float32 row's.)"""
        rmax, add = self._softmax("three-pass-recompute").passes[:2]
        if self.algorithm == "three-pass":
            add = self._sum_passes()[0]
        if self.stores_difference:
            rmax = self._rminmax_pass()
        return rmax, add

    def _rminmax_pass(self) -> PassKernel:
        """(float32 three-pass) the max pass that also leaves the row's minimum, with which
        the sum passes skip their clamp on rows whose x - m stays above it (scaled: of s * x,
        and PASS_RECOMPUTE where the maximum is not finite, as the scaled rmax pass)."""
        t, u, a, sc = self.target, self.rmax_unroll, self.rmax_accumulators, self.scaled
        params = f"{_elements(t, u)}_acc{a}"
        scaled = "_scaled" if sc else ""
        return PassKernel(f"f32_rminmax{scaled}__{self.isa}_{params}", f"rminmax_{params}",
                          lambda s: sumexp.build_rminmax_pass(s, t, u, a, sc))

    def _ln_pass(self, three_pass: bool) -> PassKernel:
        op = "lnexpminusmax" if three_pass else "lnextexp"
        return PassKernel(f"f32_{op}__{self.isa}", op,
                          lambda s: log_softmax.build_ln_state(s, self.target, three_pass))

    @property
    def output_pass(self) -> PassKernel:
        t, ou, nt, e, sc = self.target, self.output_unroll, self.nontemporal, self.format, \
            self.scaled
        params = f"{_elements(t, ou)}{'_nt' if nt else ''}"
        scaled = "_scaled" if sc else ""
        return PassKernel(f"{self.element}_vsubsub{scaled}__{self.isa}_{params}",
                          f"vsubsub_{params}",
                          lambda s: log_softmax.build_vsubsub(s, t, ou, nt, e, sc))

    @property
    def overflow_check(self) -> PassKernel | None:
        """A scaled module's roverflow pass (None in an unscaled one)."""
        if not self.scaled:
            return None
        t, u, k, e = self.target, self.rmax_unroll, self.rmax_accumulators, self.format
        params = f"{_elements(t, u)}_acc{k}"
        return PassKernel(f"{self.element}_roverflow_scaled__{self.isa}_{params}",
                          f"roverflow_{params}",
                          lambda s: log_softmax.build_roverflow(s, t, u, k, e))

    @property
    def stores_difference(self) -> bool:
        """float32 three-pass: the log_softmax driver stores y = x - m beside the sum and
        subtracts ln(sum) in place (codegen/kernels/sumexp.py). (16-bit y would round x - m
        before the subtraction, so their rows keep the subtracting output pass.)"""
        return self.algorithm == "three-pass" and self.element == F32.name

    def _sum_passes(self) -> tuple:
        """(three-pass) the sum of exp(x - m) of codegen/kernels/sumexp.py: without a store
        (raddexpminusmax) and, float32 only, with y = x - m stored (raddexpstoreminusmax)."""
        t, ru, ra, e, sc = (self.target, self.reduce_unroll, self.reduce_accumulators,
                            self.format, self.scaled)
        block = self._softmax().block
        flavour = f"rr1_lut{t.lanes}_p3"
        # tiles of four vectors: every constant of the table exp keeps a register beside them
        # (13.0 against 14.9 us for eight at once at 10^5 on the development host)
        interleave = DIFFERENCE_TILE if ru > DIFFERENCE_TILE else 0
        params = f"{_elements(t, ru)}_acc{ra}_b{block}{f'_i{interleave}' if interleave else ''}"
        minmax = self.stores_difference  # after rminmax: rows of a small spread skip the clamp
        scaled = "_scaled" if sc else ""
        return tuple(
            PassKernel(f"{self.element}_{op}{scaled}__{self.isa}_{flavour}_{params}",
                       f"{op}_{params}",
                       lambda s, store=store: sumexp.build_sum_pass(s, t, ru, ra, block,
                                                                    interleave, store, e,
                                                                    minmax, sc))
            for op, store in (("raddexpminusmax", False), ("raddexpstoreminusmax", True))
            if not store or self.stores_difference)

    @property
    def difference_passes(self) -> tuple:
        """(stores_difference) the log_softmax driver's middle and last passes."""
        last = _elements(self.target, self.output_unroll)
        return (self._sum_passes()[1],
                PassKernel(f"f32_vsub__{self.isa}_{last}", f"vsub_{last}",
                           lambda s: log_softmax.build_vsub(s, self.target, self.output_unroll)))

    @property
    def passes(self) -> tuple:
        """Every pass kernel of the module (the row plan below says which a row runs)."""
        two_pass = self.algorithm == "two-pass"
        return (*(self.reduce_passes if two_pass else ()), *self.three_pass_passes,
                *((self._ln_pass(False),) if two_pass else ()), self._ln_pass(True),
                *((self.overflow_check,) if self.scaled else ()),
                # (a scaled module has no apply driver: its float32 three-pass rows end in vsub)
                *(() if self.scaled and self.stores_difference else (self.output_pass,)),
                *(self.difference_passes if self.stores_difference else ()))

    @property
    def row_plan(self) -> "log_softmax.RowPlan":
        two_pass = self.algorithm == "two-pass"
        return log_softmax.RowPlan(
            self.reduce_passes[0].symbol if two_pass else None,
            tuple(p.symbol for p in self.three_pass_passes),
            self._ln_pass(False).symbol if two_pass else None, self._ln_pass(True).symbol,
            tuple(p.symbol for p in self.difference_passes) if self.stores_difference
            else None, self.overflow_check.symbol if self.scaled else None)

    @property
    def name(self) -> str:
        row = ((self.reduce_passes[0], *self.difference_passes) if self.stores_difference
               else (*self.reduce_passes, self.output_pass))
        tail = "_".join(p.short_name for p in row)
        scaled = "_scaled" if self.scaled else ""
        return (f"{self.element}_logsoftmax_{self.algorithm.replace('-', '')}{scaled}__"
                f"{self.isa}_{tail}")

    @property
    def reduce_symbol(self) -> str:
        return self.name + REDUCE_SUFFIX

    @property
    def apply_symbol(self) -> str:
        return self.name + APPLY_SUFFIX

    @property
    def logsumexp_symbol(self) -> str:
        return self.name + LOGSUMEXP_SUFFIX

    @property
    def log_softmax_symbol(self) -> str:
        return self.name + LOG_SOFTMAX_SUFFIX

    def functions(self) -> tuple:
        kernels = [p.build(p.symbol) for p in self.passes]
        logsumexp = log_softmax.build_logsumexp_driver(self.logsumexp_symbol, self.target,
                                                       self.row_plan, element=self.format)
        rows = log_softmax.build_log_softmax_driver(self.log_softmax_symbol, self.target,
                                                    self.row_plan, self.output_pass.symbol,
                                                    element=self.format)
        if self.scaled:  # (softjit.dask's batch drivers: of unscaled modules only)
            return (*kernels, logsumexp, rows)
        reduce = log_softmax.build_reduce_driver(
            self.reduce_symbol, self.target, [p.symbol for p in self.reduce_passes],
            may_flag=self.algorithm == "two-pass", element=self.format)
        apply = log_softmax.build_apply_driver(self.apply_symbol, self.target,
                                               self.output_pass.symbol, element=self.format)
        return (*kernels, logsumexp, rows, reduce, apply)


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
