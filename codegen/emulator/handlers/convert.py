"""Conversions: float32 <-> int32 lanes, float32 <-> float64 (packed, widening from the low
half / narrowing into it, and scalar)."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import elementwise_closure
from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.float_arith import scalar_op
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import cvtdq2ps, cvtpd2ps, cvtps2dq, cvtps2pd


handles("vcvtps2dq")(lambda dec, ins: dec.elementwise(ins, 32, 1, cvtps2dq))
handles("vcvtdq2ps")(lambda dec, ins: dec.elementwise(ins, 32, 1, cvtdq2ps))


@handles("vcvtps2pd")
def _h_vcvtps2pd(dec, ins):
    dec.nops(ins, 2)
    d = dec.vec_dest(ins)
    W = d.bits
    s = ins.ops[1]
    if s.kind == "vec" and W == 128:  # vcvtps2pd xmm, xmm reads the low two lanes
        if s.bits != 128 or s.mask is not None:
            raise DecodeError("vcvtps2pd xmm takes an xmm source")
        low = dec.vu[s.num, :2]
        g = lambda lanes=None: low  # noqa: E731
    else:
        g = dec.src(s, W // 2, 32)
    write = dec.writer(d, W, 64)
    lanes_fn = dec.lanes_fn(d, W // 64)
    return elementwise_closure([g], cvtps2pd, write, lanes_fn)


@handles("vcvtpd2ps")
def _h_vcvtpd2ps(dec, ins):
    dec.nops(ins, 2)
    d, s = dec.vec_dest(ins), ins.ops[1]
    W = s.bits if s.kind == "vec" else (s.bits if not s.bcst else None)
    if W is None:
        raise DecodeError("vcvtpd2ps needs a sized source (XMMWORD/YMMWORD/ZMMWORD PTR)")
    if d.bits != max(W // 2, 128):
        raise DecodeError(f"vcvtpd2ps of {W} bits writes {max(W // 2, 128)} bits")
    g = dec.src(s, W, 64)
    n = W // 64
    write = dec.writer(d, d.bits, 32)
    lanes_fn = dec.lanes_fn(d, n)
    pad = d.bits // 32 - n
    tail = dec.vu[d.num, n:]

    def compute(a):
        r = cvtpd2ps(a)
        return np.concatenate((r, np.zeros(pad, np.uint32))) if pad else r
    if lanes_fn is None:
        return lambda: write(compute(g()), None)

    def run():
        L = lanes_fn()
        write(compute(g(L)), np.concatenate((L, np.zeros(pad, bool))) if pad else L)
        tail[...] = 0  # DEST[127:64] of an xmm result is zeroed whatever the mask
    return run


handles("vcvtss2sd")(lambda dec, ins: scalar_op(dec, ins, 64, cvtps2pd, 64, 32))
handles("vcvtsd2ss")(lambda dec, ins: scalar_op(dec, ins, 32, cvtpd2ps, 32, 64))
