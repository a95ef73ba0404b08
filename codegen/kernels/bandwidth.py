"""Bandwidth probes: kernels that move exactly the bytes of two-pass softmax, with no arithmetic
worth the name, so that their time is what the memory system allows.

Two-pass softmax reads x (pass 1), then reads x again and writes y (pass 2). On one row:

    f32_stream_read(x, n, out)    reads x once: out[0] = sum(x) (the sum keeps the loads live)
    f32_stream_copy(x, y, n)      reads x, writes y = x (optionally with non-temporal stores)

and time(read) + time(copy) is the "2 reads + 1 write" bound a two-pass softmax can approach.
With non-temporal stores the copy skips the write-allocate read of every y line, which is the
bound for the softmax variants that store the same way.

Each probe's module also holds a row driver, NAME_rows(x, y, n, rows, x_stride, y_stride), that
calls the probe once per row exactly as the softmax row drivers call their passes, so that a
benchmark can time many rows (or one row many times, with zero strides) in one native call and
compare like with like.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..emit import Module
from ..isa import OnTarget, Target
from ..operands import Symbol, ptr
from ..stream import Function, Param, Signature
from .loops import for_each_vector
from .reduce import horizontal, tree, view_combiner

ROWS_SUFFIX = "_rows"


def build_stream_read(name: str, target: Target, unroll: int, accumulators: int) -> Function:
    sig = Signature(
        name, (Param("const float*", "x"), Param("size_t", "n"), Param("float*", "out")),
        doc="out[0] = the float32 sum of x[0:n] (0 for n == 0); a probe of read bandwidth, the\n"
            "sum only keeps the loads from being dead.")
    f = Function(sig, target)
    x, n, out = f.args
    sums = f.vecs("sum", accumulators)
    f.comment("sum = 0 in every lane of every accumulator")
    for acc in sums:
        f.vxorps(acc, acc, acc)

    def step(tile):
        xs = f.vecs("x", tile.count)
        for i, v in enumerate(xs):
            tile.load(v, x, i)  # masked tail lanes load as +0
        f.comment("sum += x, accumulator i mod K for vector i")
        for i, v in enumerate(xs):
            acc = tile.accumulator(sums, i)
            f.vaddps(acc, acc, v)

    for_each_vector(f, n, [x], unroll, step, "read")
    f.comment("sum over accumulators, then over lanes")
    total = tree(f, sums, lambda d, a, b: f.vaddps(d, a, b))
    horizontal(f, total, view_combiner(f, "vaddps"))
    f.vmovss(ptr(out, bits=32), total.xmm)
    f.ret()
    return f


def build_stream_copy(name: str, target: Target, unroll: int, nontemporal: bool) -> Function:
    how = ("non-temporal stores (after a masked head that aligns y; y must be 4-byte aligned)"
           if nontemporal else "ordinary stores")
    sig = Signature(
        name, (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n")),
        doc=f"y[0:n] = x[0:n] with {how}; a probe of read+write bandwidth.")
    f = Function(sig, target)
    x, y, n = f.args

    def step(tile):
        vs = f.vecs("v", tile.count)
        for i, v in enumerate(vs):
            tile.load(v, x, i)
        for i, v in enumerate(vs):
            tile.store(y, i, v)

    # y last among the pointers: the non-temporal head peel aligns the last one
    for_each_vector(f, n, [x, y], unroll, step, "copy", nontemporal_stores=nontemporal)
    f.ret()
    return f


def build_rows_driver(name: str, target: Target, kernel: str, reads_only: bool) -> Function:
    """Call `kernel` once per row: rows r at x + r*x_stride and y + r*y_stride bytes (strides may
    be 0 to repeat one row). For a read probe, y is where each row's sum goes."""
    sig = Signature(
        name,
        (Param("const float*", "x"), Param("float*", "y"), Param("size_t", "n"),
         Param("size_t", "rows"), Param("int64_t", "x_stride"), Param("int64_t", "y_stride")),
        doc=f"{kernel} on `rows` rows of n floats, row r at x + r*x_stride bytes and\n"
            f"y + r*y_stride bytes" + (" (y receives the row's sum)." if reads_only else "."))
    f = Function(sig, target)
    x, y, n, rows, x_stride, y_stride = f.args
    kept = {}
    for arg in (x, y, n, rows, x_stride, y_stride):
        kept[arg.name] = f.gp(f"{arg.name}_kept", callee_saved=True)
        f.mov(kept[arg.name], arg)
    done, top = f.label("done"), f.label("row")
    f.test(kept["rows"], kept["rows"])
    f.je(done)
    f.bind(top)
    if reads_only:
        arguments = (("rdi", "x"), ("rsi", "n"), ("rdx", "y"))
    else:
        arguments = (("rdi", "x"), ("rsi", "y"), ("rdx", "n"))
    for register, value in arguments:
        f.mov(f.physical_gp(register), kept[value])
    f.call(Symbol(kernel))
    f.add(kept["x"], kept["x_stride"])
    f.add(kept["y"], kept["y_stride"])
    f.sub(kept["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.ret()
    return f


@dataclass(frozen=True)
class StreamRead(OnTarget):
    """Read bandwidth probe: f32_stream_read__ISA_uU_accK (plus its _rows driver)."""

    isa: str
    unroll: int = 8  # vectors per main-loop step
    accumulators: int = 4

    op = "stream_read"

    @property
    def name(self) -> str:
        return (f"f32_stream_read__{self.isa}_u{self.unroll * self.target.lanes}"
                f"_acc{self.accumulators}")

    @property
    def driver_symbol(self) -> str:
        return self.name + ROWS_SUFFIX

    def build(self) -> Module:
        kernel = build_stream_read(self.name, self.target, self.unroll, self.accumulators)
        driver = build_rows_driver(self.driver_symbol, self.target, self.name, reads_only=True)
        return Module(self.name, self.target, "read bandwidth probe: the sum of a row",
                      (kernel, driver))


@dataclass(frozen=True)
class StreamCopy(OnTarget):
    """Read+write bandwidth probe: f32_stream_copy__ISA_uU[_nt] (plus its _rows driver)."""

    isa: str
    unroll: int = 8
    nontemporal: bool = False

    op = "stream_copy"

    @property
    def name(self) -> str:
        nt = "_nt" if self.nontemporal else ""
        return f"f32_stream_copy__{self.isa}_u{self.unroll * self.target.lanes}{nt}"

    @property
    def driver_symbol(self) -> str:
        return self.name + ROWS_SUFFIX

    def build(self) -> Module:
        kernel = build_stream_copy(self.name, self.target, self.unroll, self.nontemporal)
        driver = build_rows_driver(self.driver_symbol, self.target, self.name, reads_only=False)
        stores = "non-temporal" if self.nontemporal else "ordinary"
        return Module(self.name, self.target, f"read+write bandwidth probe: a copy, {stores} "
                      "stores", (kernel, driver))


def probes(isa: str) -> tuple:
    """The probes benchmarks time for `isa`: read, copy, copy with non-temporal stores."""
    return (StreamRead(isa), StreamCopy(isa), StreamCopy(isa, nontemporal=True))
