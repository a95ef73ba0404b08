"""Gathers: vgatherdps, lane i loaded from base + index[i] * scale + disp (a VSIB address).

AVX2:    vgatherdps d, [base + vindex*s], m   loads the lanes whose mask vector lane m[i] has its
         sign bit set; the others keep d. m is cleared to zero; the bits of d and m above W too.
AVX-512: vgatherdps d{k}, [base + vindex*s]   loads the lanes whose bit of k is set; k is
         cleared (merging only: the CPU has no zeroing form).

Lanes that are not loaded are not read (no fault), as on hardware. The CPU raises #UD when d,
the index and m are not three different registers; the emulator refuses such text too.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.table import handles
from softjit.codegen.emulator.ieee import M64


@handles("vgatherdps")
def _h_vgatherdps(dec, ins):
    dec.nops(ins, 2, 3)
    d, address = dec.vec_dest(ins), ins.ops[1]
    W = d.bits
    n = W // 32
    if address.kind != "mem" or address.vindex is None:
        raise DecodeError("vgatherdps reads a vector-indexed address [base + vindex*scale]")
    if address.vindex_bits != W or address.bcst or address.bits not in (None, 32):
        raise DecodeError(f"vgatherdps of {W} bits takes a DWORD PTR address indexed by a "
                          f"{W}-bit register")
    numbers = [d.num, address.vindex]
    if len(ins.ops) == 3:  # AVX2: a mask vector
        m = ins.ops[2]
        if m.kind != "vec" or m.bits != W or W > 256 or d.mask is not None or m.mask is not None:
            raise DecodeError("the AVX2 vgatherdps is vgatherdps xmm/ymm, [base + vindex*s], "
                              "xmm/ymm mask")
        if any(op.num > 15 for op in (d, m)) or address.vindex > 15:
            raise DecodeError("the AVX2 vgatherdps (VEX) names registers 0-15 only")
        numbers.append(m.num)
    elif d.mask is None or d.zero:
        raise DecodeError("the AVX-512 vgatherdps needs a merging {k} mask: vgatherdps d{k}, "
                          "[base + vindex*s]")
    if len(set(numbers)) != len(numbers):
        raise DecodeError("vgatherdps needs different registers for the destination, the index "
                          "and the mask (#UD)")
    scale, addrf, load = address.scale, address.addr, dec.memory.load
    index = dec.vu[address.vindex, :n].view(np.int32)
    dest = dec.vu[d.num, :n]
    upper = dec.vu[d.num, n:]
    if len(ins.ops) == 3:
        mask_row = dec.vu[ins.ops[2].num]
        mask = mask_row[:n].view(np.int32)

        def run():
            base = addrf()
            for i in np.flatnonzero(mask < 0):
                a = (base + int(index[i]) * scale) & M64
                dest[i] = load(a, 4, np.uint32)[0]
            mask_row[...] = 0
            upper[...] = 0
        return run
    kr, km = dec.kregs, d.mask

    def run_masked():
        base, bits = addrf(), kr[km]
        for i in range(n):
            if bits >> i & 1:
                a = (base + int(index[i]) * scale) & M64
                dest[i] = load(a, 4, np.uint32)[0]
        kr[km] = 0
        upper[...] = 0
    return run_masked
