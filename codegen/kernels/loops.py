"""The one loop helper and the one tail helper that every pass uses.

    for_each_vector(f, n, pointers, unroll, step)

walks `n` float32 elements: an unrolled loop of `unroll` vectors a step, then a one-vector loop,
then one masked step for the last n mod lanes elements. `step(tile)` emits the body for
tile.count vectors and reads and writes memory only through the tile, so the same body serves
the unrolled loop, the one-vector loop and the masked tail. Masked lanes never touch memory
(AVX-512 k-masks, AVX2 VMASKMOVPS); loads fill them with a chosen constant (-inf makes them
vanish from every reduction softmax does: max ignores it, exp(-inf) adds 0).
"""
from __future__ import annotations

from softjit.codegen.operands import Masked, Mem, Register, ptr
from softjit.codegen.stream import Function


class Tail:
    """The mask for the last `remaining` (< lanes) elements, built once per kernel call."""

    def __init__(self, f: Function, remaining: Register):
        self.f = f
        table_ptr = f.gp("tail_table")
        if f.target.has_masks:
            # dword r holds (1 << r) - 1; kmovw reads its low 16 bits
            table = f.table("tail_kmasks", tuple((1 << r) - 1 for r in range(f.target.lanes)), 4)
            self.k = f.mask("tail_mask")
            f.lea(table_ptr, Mem(table))
            f.kmovw(self.k, ptr(table_ptr, 0, remaining, 4, bits=16))
        else:
            # a window over lanes x -1 then lanes x 0, starting `remaining` dwords before the zeros
            lanes = f.target.lanes
            table = f.table("tail_window", (0xFFFFFFFF,) * lanes + (0,) * lanes, 32)
            back = f.gp("tail_back")
            self.window = f.vec("tail_lanes")
            f.lea(table_ptr, Mem(table))
            f.mov(back, remaining)
            f.neg(back)
            f.vmovups(self.window, ptr(table_ptr, 4 * lanes, back, 4))

    def load(self, dest: Register, address: Mem, fill: Mem | None) -> None:
        f = self.f
        if f.target.has_masks:
            if fill is None:
                f.vmovups(Masked(dest.view(dest.bits), self.k.view(16), zeroing=True), address)
            else:
                f.vbroadcastss(dest, Mem(fill.base, bits=32))
                f.vmovups(Masked(dest.view(dest.bits), self.k.view(16)), address)
        else:
            f.vmaskmovps(dest, self.window, address)
            if fill is not None:
                filler = f.vec("tail_fill")
                f.vmovups(filler, fill)
                f.vblendvps(dest, filler, dest, self.window)

    def store(self, address: Mem, src: Register) -> None:
        f = self.f
        if f.target.has_masks:
            f.vmovups(Masked(address, self.k.view(16)), src)
        else:
            f.vmaskmovps(address, self.window, src)


class Tile:
    """One step of a loop: `count` consecutive vectors at the pointers' current positions."""

    def __init__(self, f: Function, count: int, tail: Tail | None = None, nontemporal: bool = False,
                 first: int = 0):
        self.f, self.count, self.tail, self.nontemporal = f, count, tail, nontemporal
        self.first = first  # index of this tile's first vector within the loop step

    def load(self, dest: Register, base: Register, i: int, fill: Mem | None = None) -> None:
        address = ptr(base, (self.first + i) * self.f.target.vector_bytes)
        if self.tail is not None:
            self.tail.load(dest, address, fill)
        else:
            self.f.vmovups(dest, address)

    def store(self, base: Register, i: int, src: Register) -> None:
        address = ptr(base, (self.first + i) * self.f.target.vector_bytes)
        if self.tail is not None:
            self.tail.store(address, src)
        elif self.nontemporal:
            self.f.vmovntps(address, src)
        else:
            self.f.vmovups(address, src)

    def accumulator(self, accumulators: list, i: int):
        """Vector i of a step feeds accumulator i mod K (the one-vector steps feed the first)."""
        return accumulators[(self.first + i) % len(accumulators)]


def for_each_vector(f: Function, n: Register, pointers: list, unroll: int, step, name: str,
                    *, nontemporal_stores: bool = False, interleave: int = 0) -> None:
    """Run step over n elements (n is consumed); see the module docstring.

    interleave = g > 0 emits an unrolled step as tiles of g vectors: the stages of one tile are
    interleaved, tiles follow one another. Fewer values are live at once (so larger unrolls fit
    the register file) while out-of-order cores still overlap the independent tiles.
    """
    lanes, vbytes = f.target.lanes, f.target.vector_bytes
    if nontemporal_stores:
        _align_stores(f, n, pointers, step)
    if unroll > 1:
        with f.count_down_loop(n, unroll * lanes, f"{name}_u{unroll}"):
            group = interleave or unroll
            for first in range(0, unroll, group):
                step(Tile(f, min(group, unroll - first), nontemporal=nontemporal_stores,
                          first=first))
            for p in pointers:
                f.add(p, unroll * vbytes)
    with f.count_down_loop(n, lanes, f"{name}_v1"):
        step(Tile(f, 1, nontemporal=nontemporal_stores))
        for p in pointers:
            f.add(p, vbytes)
    done = f.label(f"{name}_tail_done")
    f.test(n, n)
    f.je(done)
    step(Tile(f, 1, Tail(f, n)))
    f.bind(done)
    if nontemporal_stores:
        f.sfence()  # order the write-combining stores before anything the caller does next


def _align_stores(f: Function, n: Register, pointers: list, step) -> None:
    """Non-temporal stores need vector-aligned addresses: run one masked step over the elements
    before the output pointer (the last of `pointers`) reaches a vector boundary.

    The output must be 4-byte aligned (a float32 array's natural alignment; the Python layer
    guarantees it)."""
    vbytes = f.target.vector_bytes
    head = f.gp("head")
    f.comment("head = min(n, elements until y is vector-aligned)")
    f.mov(head, pointers[-1])
    f.neg(head)
    f.and_(head, vbytes - 1)
    f.shr(head, 2)
    f.cmp(head, n)
    f.cmova(head, n)
    aligned = f.label("aligned")
    f.test(head, head)
    f.je(aligned)
    step(Tile(f, 1, Tail(f, head)))
    for p in pointers:
        f.lea(p, ptr(p, 0, head, 4))
    f.sub(n, head)
    f.bind(aligned)
