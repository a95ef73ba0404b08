"""16-bit lanes, as float16 / bfloat16 buffers need them: vpmovzxwd (words zero-extended to
dwords, from the low half of a register or from memory half the width), vpmovdw (dwords
truncated to words, into the low half of a register or into memory half the width; a masked
element is not written) and vpackusdw (VEX: dwords narrowed to words with unsigned saturation,
per 128-bit lane)."""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import elementwise_closure
from softjit.codegen.emulator.errors import DecodeError
from softjit.codegen.emulator.handlers.table import handles


def _widen_words(words: np.ndarray) -> np.ndarray:
    return words.astype(np.uint32)


def word_lanes_source(dec, ins, mnemonic: str):
    """(d, getter, n) of an instruction that widens the W/32 16-bit lanes of an xmm/ymm
    register's low part, or of W/2 bits of memory, into W bits of dwords (vpmovzxwd,
    vcvtph2ps): the destination, a getter of the words as uint16, and the lane count."""
    dec.nops(ins, 2)
    d, s = dec.vec_dest(ins), ins.ops[1]
    W = d.bits
    n = W // 32
    if s.kind == "vec":
        if s.mask is not None or s.bits != max(W // 2, 128):
            raise DecodeError(f"{mnemonic} of {W} bits reads a {max(W // 2, 128)}-bit register")
        words = dec.vu[s.num].view(np.uint16)[:n]
        g = lambda lanes=None: words  # noqa: E731
    elif s.kind == "mem":
        if s.bcst or s.bits not in (None, W // 2):
            raise DecodeError(f"{mnemonic} of {W} bits reads {W // 2} bits of memory")
        g = dec.mem_getter(s, 2, n, np.uint16, masked=True)
    else:
        raise DecodeError(f"{mnemonic} reads a vector register or memory")
    return d, g, n


@handles("vpmovzxwd")
def _h_vpmovzxwd(dec, ins):
    """d (W bits of dwords) = the W/32 words of an xmm/ymm register's low part or of W/2 bits
    of memory, zero-extended (a masked lane's word is not read)."""
    d, g, n = word_lanes_source(dec, ins, "vpmovzxwd")
    return elementwise_closure([g], _widen_words, dec.writer(d, d.bits, 32), dec.lanes_fn(d, n))


@handles("vpmovdw")
def _h_vpmovdw(dec, ins):
    """d = the low 16 bits of each of the W/32 dwords of s: into the low part of an xmm/ymm
    register (the rest of it zeroed; a masked lane merges or zeroes) or into W/2 bits of
    memory (a masked element is not written)."""
    dec.nops(ins, 2)
    d, s = ins.ops
    if s.kind != "vec" or s.mask is not None:
        raise DecodeError("the source of vpmovdw is a vector register")
    W = s.bits
    n = W // 32
    source = dec.vu[s.num, :n]
    lanes_fn = dec.lanes_fn(d, n)
    if d.kind == "vec":
        if d.bits != max(W // 2, 128):
            raise DecodeError(f"vpmovdw of {W} bits writes a {max(W // 2, 128)}-bit register")
        row = dec.vu[d.num]
        low = row.view(np.uint16)[:n]
        zero = d.zero

        def run():
            words = source.astype(np.uint16)
            kept = words if lanes_fn is None else np.where(lanes_fn(), words, 0 if zero else low)
            row[...] = 0
            low[...] = kept
        return run
    if d.kind != "mem" or d.bcst or d.zero or d.bits not in (None, W // 2):
        raise DecodeError(f"vpmovdw of {W} bits writes {W // 2} bits of memory or a register")
    addrf, store, store_lanes = d.addr, dec.memory.store, dec.memory.store_lanes

    def run_store():
        words = source.astype(np.uint16)
        if lanes_fn is None:
            store(addrf(), words)
        else:
            store_lanes(addrf(), 2, words, lanes_fn())
    return run_store


def _pack_unsigned_saturated(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per 128-bit lane: the lane's four dwords of a, then b's, each clamped to [0, 65535]."""
    sa, sb = a.view(np.int32).reshape(-1, 4), b.view(np.int32).reshape(-1, 4)
    words = np.concatenate((sa, sb), axis=1).clip(0, 0xFFFF).astype(np.uint16)
    return words.reshape(-1).view(np.uint32)


@handles("vpackusdw")
def _h_vpackusdw(dec, ins):
    return dec.elementwise(ins, 32, 2, _pack_unsigned_saturated, vex_only=True)
