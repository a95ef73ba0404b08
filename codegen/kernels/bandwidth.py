"""Bandwidth probes: kernels that move exactly the bytes of two-pass softmax, with no arithmetic
worth the name, so that their time is what the memory system allows.

Two-pass softmax reads x (pass 1), then reads x again and writes y (pass 2). On one row:

    f32_stream_read(x, n, out)    reads x once: out[0] = sum(x) (the sum keeps the loads live)
    f32_stream_copy(x, y, n)      reads x, writes y = x (optionally with non-temporal stores)

and time(read) + time(copy) is the "2 reads + 1 write" bound a two-pass softmax can approach.
With non-temporal stores the copy skips the write-allocate read of every y line, which is the
bound for the softmax variants that store the same way.

The probe variants (StreamRead, StreamCopy) are registered in codegen/variants.py. Each
probe's module also holds a row driver, NAME_rows(x, y, n, rows, x_stride, y_stride), that
calls the probe once per row exactly as the softmax row drivers call their passes, so that a
benchmark can time many rows (or one row many times, with zero strides) in one native call and
compare like with like.
"""
from __future__ import annotations

from softjit.codegen.abi import (PROBE_ROWS_PARAMS, STREAM_COPY_PARAMS, STREAM_READ_PARAMS,
                                 Param, Signature)
from softjit.codegen.isa import Target
from softjit.codegen.operands import Symbol, ptr
from softjit.codegen.stream import Function
from softjit.codegen.kernels.loops import for_each_vector
from softjit.codegen.kernels.reduce import horizontal, tree, view_combiner

ROWS_SUFFIX = "_rows"


def build_stream_read(name: str, target: Target, unroll: int, accumulators: int) -> Function:
    sig = Signature(
        name, STREAM_READ_PARAMS,
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
        name, STREAM_COPY_PARAMS,
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
        PROBE_ROWS_PARAMS,
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
    # the probe's arguments in SysV order: read(x, n, out = y), copy(x, y, n)
    arguments = ("x", "n", "y") if reads_only else ("x", "y", "n")
    for index, value in enumerate(arguments):
        f.mov(f.argument_register(index), kept[value])
    f.call(Symbol(kernel))
    f.add(kept["x"], kept["x_stride"])
    f.add(kept["y"], kept["y_stride"])
    f.sub(kept["rows"], 1)
    f.jne(top)
    f.bind(done)
    f.ret()
    return f


CLOCK_CHAIN_ADDS = 8  # dependent one-cycle adds per loop iteration


def build_clock_chain(name: str, target: Target) -> Function:
    """The clock probe the benchmark turns cycles into nanoseconds with (bench/port_floor.py;
    not a registered variant: nothing but the benchmark calls it)."""
    sig = Signature(name, (Param("size_t", "n"),), "size_t",
                    doc=f"n iterations of {CLOCK_CHAIN_ADDS} dependent 64-bit adds: n * "
                        f"{CLOCK_CHAIN_ADDS} core cycles on any x86-64 core (an add has a "
                        "latency of one cycle); returns the chain's value.")
    f = Function(sig, target)
    (n,) = f.args
    chain = f.physical_gp("rax")
    f.mov(chain, 0)
    with f.count_down_loop(n, 1, "chain"):
        for _ in range(CLOCK_CHAIN_ADDS):
            f.add(chain, 1)
    f.ret()
    return f
