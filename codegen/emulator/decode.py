"""Decoding: an instruction's parsed operands become closures over the machine's registers and
memory, once, before anything runs.

A Decoder hands the handlers (handlers/) what they need to build an instruction's closure:
getters for vector sources (registers, memory with fault-suppressing masked lanes, embedded
broadcasts, read-only data folded into constants), writers for vector destinations (zeroing
the bits above an xmm/ymm write, merging or zeroing under a {k} mask), integer operand
readers, label targets, and `elementwise` for the common dst, src1[, src2[, src3]][, imm] shape.
A closure returns None to fall through, an instruction index to jump, or -1 to end the call.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.errors import AsmParseError, DecodeError, Fault
from softjit.codegen.emulator.ieee import M64, UINT, ZERO
from softjit.codegen.emulator.memory import TEXT_BASE
from softjit.codegen.emulator.text import Operand


#: The instructions whose memory operand has a vector index (VSIB): the address of lane i is
#: base + index[i] * scale + disp, and op.addr gives base + disp.
VSIB_MNEMONICS = frozenset({"vgatherdps"})


class Decoder:
    def __init__(self, registers, memory, labels: dict, instructions: list, handlers: dict):
        self.registers, self.memory = registers, memory
        self.gp, self.kregs, self.flags = registers.gp, registers.kregs, registers.flags
        self.vu, self.vv = registers.vu, registers.vv
        self.labels = labels  # name -> ("text", index) or ("data", address)
        self.instructions = instructions
        self.handlers = handlers
        self._lane_cache: dict = {}

    def decode(self, ins):
        """The closure that executes ins."""
        try:
            for op in ins.ops:
                if op.kind == "mem":
                    if op.vindex is not None and ins.mnemonic not in VSIB_MNEMONICS:
                        raise DecodeError(f"a vector index ({op.text}) is an address of "
                                          f"{', '.join(sorted(VSIB_MNEMONICS))} only")
                    self._decode_address(op)
            return self.handlers[ins.mnemonic](self, ins)
        except DecodeError as e:
            raise AsmParseError(str(e), ins.line, ins.text) from None

    # -- addresses and labels -----------------------------------------------------------------

    def _decode_address(self, op):
        disp = op.disp
        if op.label is not None:
            where = self.labels.get(op.label)
            if where is None:
                raise DecodeError(f"undefined label {op.label}")
            disp += where[1] if where[0] == "data" else TEXT_BASE + 16 * where[1]
        elif op.rip:
            raise DecodeError("rip-relative address without a label")
        g, b, i, s = self.gp, op.base, op.index, op.scale
        if b is None and i is None:
            const = disp & M64
            op.const_addr = const
            op.addr = lambda: const
        elif i is None:
            op.addr = lambda: (g[b] + disp) & M64
        elif b is None:
            op.addr = lambda: (g[i] * s + disp) & M64
        else:
            op.addr = lambda: (g[b] + g[i] * s + disp) & M64

    def label_target(self, op):
        if op.kind != "label":
            raise DecodeError(f"expected a label, got {op.text!r}")
        where = self.labels.get(op.name)
        if where is None:
            raise DecodeError(f"undefined label {op.name} (calls leave the text only on ret)")
        if where[0] != "text":
            raise DecodeError(f"{op.name} is a data label")
        return where[1]

    # -- operand shapes -------------------------------------------------------------------------

    def vec_dest(self, ins):
        op = ins.ops[0] if ins.ops else None
        if op is None or op.kind != "vec":
            raise DecodeError(f"the destination of {ins.mnemonic} must be a vector register")
        return op

    def nops(self, ins, *counts):
        if len(ins.ops) not in counts:
            raise DecodeError(f"{ins.mnemonic} takes {' or '.join(map(str, counts))} operands,"
                              f" got {len(ins.ops)}")

    def imm(self, op):
        if op.kind != "imm":
            raise DecodeError(f"expected an immediate, got {op.text!r}")
        return op.value

    # -- vector operands ------------------------------------------------------------------------

    def lanes_fn(self, op, n):
        """A function giving the enabled lanes of op's {k} mask as a bool array (None: none)."""
        if op.mask is None:
            return None
        kr, km = self.kregs, op.mask
        cache = self._lane_cache.setdefault(n, {})
        full = (1 << n) - 1
        shifts = np.arange(n, dtype=np.int64)

        def lanes():
            v = kr[km] & full
            L = cache.get(v)
            if L is None:
                L = ((v >> shifts) & 1).astype(bool)
                L.flags.writeable = False
                cache[v] = L
            return L
        return lanes

    def src(self, op, W, eb, *, allow_mem=True, allow_bcst=True, elementwise=True):
        """A getter for a vector source of W bits as uint{eb} lanes: get(lanes) -> array.

        lanes (a bool array or None) is the destination write mask; an element-wise memory
        source reads only the enabled lanes (fault suppression)."""
        n = W // eb
        dt = UINT[eb]
        if op.kind == "vec":
            if op.mask is not None:
                raise DecodeError(f"a write mask on a source operand {op.text!r}")
            if op.bits != W:
                raise DecodeError(f"{op.text} is not a {W}-bit register here")
            view = self.vv[eb][op.num, :n]
            return lambda lanes=None: view
        if op.kind != "mem":
            raise DecodeError(f"expected a vector register or memory, got {op.text!r}")
        if op.mask is not None:
            raise DecodeError(f"a write mask on a source operand {op.text!r}")
        if op.bcst:
            if not allow_bcst:
                raise DecodeError("no embedded broadcast in this form")
            if op.bits not in (None, eb):
                raise DecodeError(f"broadcast element must be {eb} bits here")
            return self.mem_getter(op, eb // 8, 1, dt, n_out=n)
        if not allow_mem:
            raise DecodeError("no memory operand in this form")
        if op.bits not in (None, W):
            raise DecodeError(f"memory operand must be {W} bits here, not {op.bits}")
        return self.mem_getter(op, eb // 8, n, dt, masked=elementwise)

    def mem_getter(self, op, esize, n, dt, *, n_out=None, masked=False, align=None):
        """get(lanes) reading n elements of esize bytes at op's address (n_out: one element
        broadcast to n_out lanes; masked: only the enabled lanes when not all in bounds;
        align: #GP unless the address is a multiple). A constant address in read-only data is
        read once, now."""
        nbytes = esize * n
        memory = self.memory
        if op.const_addr is not None and not (align and op.const_addr % align):
            try:
                u8, off = memory.locate(op.const_addr, nbytes)
                if not memory.region_at(op.const_addr).writable:
                    val = u8[off:off + nbytes].view(dt).copy()
                    if n_out is not None:
                        val = np.repeat(val, n_out)
                    val.flags.writeable = False
                    return lambda lanes=None: val
            except Fault:
                pass  # faults when (if) it executes
        addrf = op.addr
        load, load_lanes = memory.load, memory.load_lanes
        if n_out is not None:
            def get(lanes=None):
                return np.repeat(load(addrf(), nbytes, dt), n_out)
        elif masked:
            def get(lanes=None):
                a = addrf()
                if align and a % align:
                    raise Fault(f"misaligned {nbytes}-byte access (#GP)", a, nbytes)
                if lanes is None:
                    return load(a, nbytes, dt)
                return load_lanes(a, esize, n, lanes, dt)
        else:
            def get(lanes=None):
                a = addrf()
                if align and a % align:
                    raise Fault(f"misaligned {nbytes}-byte access (#GP)", a, nbytes)
                return load(a, nbytes, dt)
        return get

    def writer(self, op, W, eb, *, align=None):
        """write(result, lanes) for a vector destination of W bits in uint{eb} lanes: a register
        (zeroing the bits above W) or memory; lanes is the {k} mask or None."""
        n = W // eb
        if op.kind == "vec":
            if op.bits != W:
                raise DecodeError(f"{op.text} is not a {W}-bit register here")
            view = self.vv[eb][op.num, :n]
            upper = self.vu[op.num, W // 32:] if W < 512 else None
            zero = op.zero

            def write(r, lanes):
                if lanes is None:
                    view[...] = r
                elif zero:
                    view[...] = np.where(lanes, r, ZERO[eb])
                else:
                    np.copyto(view, r, where=lanes)
                if upper is not None:
                    upper[...] = 0
            return write
        if op.kind == "mem":
            if op.bcst:
                raise DecodeError("a broadcast cannot be a destination")
            if op.zero:
                raise DecodeError("{z} on a memory destination")
            if op.bits not in (None, W):
                raise DecodeError(f"memory operand must be {W} bits here, not {op.bits}")
            addrf, store, store_lanes = op.addr, self.memory.store, self.memory.store_lanes
            nbytes = W // 8

            def write(r, lanes):
                a = addrf()
                if align and a % align:
                    raise Fault(f"misaligned {nbytes}-byte store (#GP)", a, nbytes)
                if lanes is None:
                    store(a, r)
                else:
                    store_lanes(a, eb // 8, np.ascontiguousarray(r), lanes)
            return write
        raise DecodeError(f"expected a vector register or memory destination, got {op.text!r}")

    def elementwise(self, ins, eb, nsrc, compute, *, rmw=False, imm=False, allow_bcst=True,
                    allow_mask=True, allow_mem=True, vex_only=False):
        """Element-wise vector instruction: dst, src1[, src2[, src3]][, imm]. compute takes
        the sources' lanes (with the destination's first when rmw; compute(imm) builds it when
        imm) and returns the result's."""
        self.nops(ins, 1 + nsrc + int(imm))
        if vex_only:
            check_vex(ins)
            allow_bcst = allow_mask = False
        d = self.vec_dest(ins)
        if d.mask is not None and not allow_mask:
            raise DecodeError(f"{ins.mnemonic} takes no write mask")
        W = d.bits
        srcs = []
        for k, op in enumerate(ins.ops[1:1 + nsrc]):
            last = k == nsrc - 1
            srcs.append(self.src(op, W, eb, allow_mem=allow_mem and last,
                                 allow_bcst=allow_bcst and last))
        if imm:
            compute = compute(self.imm(ins.ops[-1]))
        if rmw:
            srcs.insert(0, self.src(Operand("vec", d.text, num=d.num, bits=W), W, eb))
        write = self.writer(d, W, eb)
        lanes_fn = self.lanes_fn(d, W // eb)
        return elementwise_closure(srcs, compute, write, lanes_fn)

    # -- integer operands -----------------------------------------------------------------------

    def gp_reader(self, op, bits):
        """A getter for an integer source of `bits` bits (register, memory or immediate)."""
        g = self.gp
        mask = (1 << bits) - 1
        if op.kind == "gp":
            if op.bits != bits:
                raise DecodeError(f"{op.text} is not a {bits}-bit register here")
            n = op.num
            if bits == 64:
                return lambda: g[n]
            return lambda: g[n] & mask
        if op.kind == "imm":
            if not -(1 << 31) <= op.value < (1 << 32) and \
                    not (bits == 64 and op.value < (1 << 64)):
                raise DecodeError(f"immediate {op.value} out of range")
            v = op.value & mask
            return lambda: v
        if op.kind == "mem":
            if op.bits not in (None, bits) or op.bcst or op.mask is not None:
                raise DecodeError(f"memory operand must be {bits} bits here")
            addrf, read, size = op.addr, self.memory.read_int, bits // 8
            return lambda: read(addrf(), size)
        raise DecodeError(f"expected a register, memory or immediate, got {op.text!r}")

    def gp_dest(self, ins):
        d = ins.ops[0]
        if d.kind != "gp" or d.mask is not None:
            raise DecodeError(f"{ins.mnemonic} writes a general-purpose register here")
        if d.bits == 16:  # a 16-bit write keeps bits 16-63: not modelled, and not emitted
            raise DecodeError(f"{ins.mnemonic} {d.text}: 16-bit register destinations are not "
                              f"supported (a 16-bit register is only stored: mov m16, r16)")
        return d


def check_vex(ins):
    """VEX-only forms: no zmm, no xmm16-31/ymm16-31, no masks, no broadcasts."""
    for op in ins.ops:
        if op.kind == "vec" and (op.bits > 256 or op.num > 15):
            raise DecodeError(f"{ins.mnemonic} has only a VEX encoding: {op.text} is not "
                              f"encodable (xmm/ymm 0-15 only)")
        if op.mask is not None or op.bcst:
            raise DecodeError(f"{ins.mnemonic} has only a VEX encoding: no masks or "
                              f"broadcasts")


def elementwise_closure(srcs, compute, write, lanes_fn):
    """run() = write(compute(sources), mask), unrolled by source count so that the common
    cases cost one call per operand."""
    if len(srcs) == 1:
        (g1,) = srcs
        if lanes_fn is None:
            def run():
                write(compute(g1()), None)
        else:
            def run():
                L = lanes_fn()
                write(compute(g1(L)), L)
    elif len(srcs) == 2:
        g1, g2 = srcs
        if lanes_fn is None:
            def run():
                write(compute(g1(), g2()), None)
        else:
            def run():
                L = lanes_fn()
                write(compute(g1(L), g2(L)), L)
    else:
        g1, g2, g3 = srcs
        if lanes_fn is None:
            def run():
                write(compute(g1(), g2(), g3()), None)
        else:
            def run():
                L = lanes_fn()
                write(compute(g1(L), g2(L), g3(L)), L)
    return run
