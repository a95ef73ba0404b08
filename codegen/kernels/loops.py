"""The one loop helper and the one tail helper that every pass uses.

    for_each_vector(f, n, pointers, unroll, step)

walks `n` elements: an unrolled loop of `unroll` vectors a step, then a one-vector loop,
then one masked step for the last n mod lanes elements. `step(tile)` emits the body for
tile.count vectors and reads and writes memory only through the tile, so the same body serves
the unrolled loop, the one-vector loop and the masked tail. Masked lanes never touch memory
(AVX-512 k-masks, AVX2 VMASKMOVPS); loads fill them with a chosen constant (-inf makes them
vanish from every reduction softmax does: max ignores it, exp(-inf) adds 0).

Each pointer has an element format (codegen/abi.py ElementFormat; float32 unless `elements`
names another): its offsets and increments count its element size, and the tile widens a
float16 / bfloat16 vector to float32 as it loads it and rounds it back as it stores it
(codegen/kernels/elements.py), so a step body always sees float32 lanes. AVX2 has no 16-bit
masked moves: a 16-bit tail is copied word by word through a stack buffer, so it too touches
exactly its elements.

elementwise=True says that the step treats every lane on its own (no sums across vectors, no
lane order): when every pointer holds bfloat16 elements, they are then read and written two
vectors at a time where a step holds pairs of vectors, as even and odd elements
(elements.load_pair_even / _odd, store_pair), which saves the word shuffles. stored_values says what the step stores (elements.VALUE_RANGES), so
that the bfloat16 rounding can leave out the NaN handling where no NaN is stored.

A ScaledInput(pointer, factor) given to for_each_vector multiplies every vector loaded through
that pointer by the factor right after the load (one VMULPS, the load folded into it when the
factor is a register and the elements are float32; 16-bit elements are widened first): the
scaled kernels compute softmax(scale * x) with no extra pass. In the masked tail only the
loaded lanes are multiplied; the fill goes in afterwards, untouched (-inf * a negative scale
would be +inf and poison the row).
"""
from __future__ import annotations

from typing import NamedTuple

from softjit.codegen.abi import BF16, F32, ElementFormat
from softjit.codegen.kernels import elements as conversions
from softjit.codegen.operands import Masked, Mem, Register, ptr
from softjit.codegen.stream import Function


class ScaledInput(NamedTuple):
    """Loads through `pointer` are multiplied by `factor`: the scale in every lane of a vector
    register, or of a vector in memory where registers are short (AVX2 kernels that keep a
    dozen values live)."""

    pointer: Register
    factor: Register | Mem


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
        self.remaining = remaining
        self._words = None  # AVX2: the stack buffer 16-bit tails go through

    def load(self, dest: Register, address: Mem, fill: Mem | None,
             element: ElementFormat = F32, factor: Register | Mem | None = None) -> None:
        """dest = the loaded lanes (times factor, when given), fill (or 0) in the others."""
        f = self.f
        if element is not F32:
            self._load_converted(dest, address, fill, element, factor)
            return
        if f.target.has_masks:
            masked = Masked(dest.view(dest.bits), self.k.view(16), zeroing=fill is None)
            if fill is not None:
                f.vbroadcastss(dest, Mem(fill.base, bits=32))
            if isinstance(factor, Register):  # masked-out lanes of x are not read (no fault)
                f.vmulps(masked, factor, address)
            else:
                f.vmovups(masked, address)
                if factor is not None:
                    f.vmulps(Masked(dest.view(dest.bits), self.k.view(16)), dest, factor)
        else:
            f.vmaskmovps(dest, self.window, address)
            if factor is not None:  # the masked-out lanes are 0 here: 0 * scale stays finite
                f.vmulps(dest, dest, factor)
            if fill is not None:
                filler = f.vec("tail_fill")
                f.vmovups(filler, fill)
                f.vblendvps(dest, filler, dest, self.window)

    def store(self, address: Mem, src: Register, element: ElementFormat = F32,
              values: str = conversions.ANY) -> None:
        f = self.f
        if element is not F32:
            self._store_converted(address, src, element, values)
        elif f.target.has_masks:
            f.vmovups(Masked(address, self.k.view(16)), src)
        else:
            f.vmaskmovps(address, self.window, src)

    # -- 16-bit elements ------------------------------------------------------------------
    def _load_converted(self, dest: Register, address: Mem, fill: Mem | None,
                        element: ElementFormat, factor: Register | Mem | None = None) -> None:
        """dest = the first `remaining` elements at address, widened (times factor, when
        given); the other lanes hold fill (or 0)."""
        f = self.f
        if f.target.has_masks:
            if fill is None:
                f.vxorps(dest, dest, dest)
            else:
                f.vbroadcastss(dest, Mem(fill.base, bits=32))
            conversions.load(f, element, dest, address, self.k)
            if factor is not None:  # the loaded lanes only: the fill stays as it is
                f.vmulps(Masked(dest.view(dest.bits), self.k.view(16)), dest, factor)
            return
        words = self._words_buffer()
        zero = f.vec("tail_zero")
        f.vxorps(zero.xmm, zero.xmm, zero.xmm)
        f.vmovups(words, zero.xmm)
        copy_words(f, words, address, self.remaining)
        conversions.load(f, element, dest, words)
        if factor is not None:  # the lanes past the tail are 0 here: 0 * scale stays finite
            f.vmulps(dest, dest, factor)
        if fill is not None:
            filler = f.vec("tail_fill")
            f.vmovups(filler, fill)
            f.vblendvps(dest, filler, dest, self.window)

    def _store_converted(self, address: Mem, src: Register, element: ElementFormat,
                         values: str) -> None:
        f = self.f
        if f.target.has_masks:
            conversions.store(f, element, address, src, self.k, values)
            return
        words = self._words_buffer()
        conversions.store(f, element, words, src, values=values)
        copy_words(f, address, words, self.remaining)

    def _words_buffer(self) -> Mem:
        """One vector of 16-bit elements on the stack (AVX2: 16 bytes)."""
        if self._words is None:
            self._words = self.f.stack(self.f.target.lanes * 2)
        return self._words


def copy_words(f: Function, dest: Mem, src: Mem, count: Register) -> None:
    """dest[i] = src[i] for the 16-bit words i < count, one at a time (count is kept)."""
    index, word = f.gp("word_index"), f.gp("word")
    top, done = f.label("copy_words"), f.label("copy_words_done")
    f.xor(index.r32, index.r32)
    f.bind(top)
    f.cmp(index, count)
    f.jae(done)
    f.movzx(word.r32, Mem(src.base, index.view(64), 2, src.disp, 16))
    f.mov(Mem(dest.base, index.view(64), 2, dest.disp, 16), word.r16)
    f.add(index, 1)
    f.jmp(top)
    f.bind(done)


class Tile:
    """One step of a loop: `count` consecutive vectors at the pointers' current positions."""

    def __init__(self, f: Function, count: int, tail: Tail | None = None, nontemporal: bool = False,
                 first: int = 0, elements: dict | None = None,
                 scaled: ScaledInput | None = None, elementwise: bool = False,
                 stored_values: str = conversions.ANY,
                 widening: conversions.Bf16Widening | None = None):
        self.f, self.count, self.tail, self.nontemporal = f, count, tail, nontemporal
        self.first = first  # index of this tile's first vector within the loop step
        self.elements = elements or {}  # pointer register -> ElementFormat (default float32)
        self.scaled = scaled
        self.stored_values = stored_values
        self.widening = widening  # AVX-512 bfloat16 loads by VPERMW (elements.Bf16Widening)
        # bfloat16 pairs (module docstring): vectors 2k and 2k + 1 of an untailed tile
        self.paired = elementwise and tail is None and count >= 2
        self._pair_words: dict = {}  # pointer -> the words its odd elements come from
        self._held: dict = {}  # pointer -> the even vector's value, stored with the odd one

    def _pair(self, base: Register, i: int) -> bool:
        """Vector i of `base` goes through a bfloat16 pair (i even: the first of it)."""
        return (self.paired and self.element(base) is BF16
                and (i % 2 == 1 or i + 1 < self.count))

    def element(self, base: Register) -> ElementFormat:
        return self.elements.get(base, F32)

    def _address(self, base: Register, i: int) -> Mem:
        return ptr(base, (self.first + i) * self.f.target.lanes * self.element(base).size)

    def load(self, dest: Register, base: Register, i: int, fill: Mem | None = None) -> None:
        address, element = self._address(base, i), self.element(base)
        factor = self.scaled.factor if self.scaled and base is self.scaled.pointer else None
        if self._pair(base, i):
            if i % 2 == 0:
                self._pair_words[base] = conversions.load_pair_even(self.f, dest, address)
            else:
                conversions.load_pair_odd(self.f, dest, self._pair_words.pop(base))
            if factor is not None:
                self.f.vmulps(dest, dest, factor)
            return
        if self.tail is not None:
            self.tail.load(dest, address, fill, element, factor)
        elif element is not F32:
            conversions.load(self.f, element, dest, address, widening=self.widening)
            if factor is not None:
                self.f.vmulps(dest, dest, factor)
        elif isinstance(factor, Register):
            self.f.vmulps(dest, factor, address)
        else:
            self.f.vmovups(dest, address)
            if factor is not None:
                self.f.vmulps(dest, dest, factor)

    def store(self, base: Register, i: int, src: Register) -> None:
        address, element = self._address(base, i), self.element(base)
        values = self.stored_values
        if self._pair(base, i):
            if i % 2 == 0:
                self._held[base] = src  # the step must leave it alone until vector i + 1
            else:
                conversions.store_pair(self.f, self._address(base, i - 1), self._held.pop(base),
                                       src, values, self.nontemporal)
            return
        if self.tail is not None:
            self.tail.store(address, src, element, values)
        elif element is not F32:
            if self.nontemporal:
                conversions.store_nontemporal(self.f, element, address, src, values)
            else:
                conversions.store(self.f, element, address, src, values=values)
        elif self.nontemporal:
            self.f.vmovntps(address, src)
        else:
            self.f.vmovups(address, src)

    def check_complete(self) -> None:
        """Every pair a step began was finished (a half-stored pair would lose its vector)."""
        if self._pair_words or self._held:
            raise ValueError(f"{self.f.name}: a step loaded or stored the first vector of a "
                             f"bfloat16 pair and not the second")

    def accumulator(self, accumulators: list, i: int):
        """Vector i of a step feeds accumulator i mod K (the one-vector steps feed the first)."""
        return accumulators[(self.first + i) % len(accumulators)]


def for_each_vector(f: Function, n: Register, pointers: list, unroll: int, step, name: str,
                    *, nontemporal_stores: bool = False, interleave: int = 0,
                    elements: dict | None = None, scaled: ScaledInput | None = None,
                    elementwise: bool = False, stored_values: str = conversions.ANY) -> None:
    """Run step over n elements (n is consumed); see the module docstring.

    interleave = g > 0 emits an unrolled step as tiles of g vectors: the stages of one tile are
    interleaved, tiles follow one another. Fewer values are live at once (so larger unrolls fit
    the register file) while out-of-order cores still overlap the independent tiles.
    elements: pointer register -> ElementFormat for the pointers that are not float32.
    scaled: loads through scaled.pointer are multiplied by scaled.factor (module docstring). elementwise, stored_values: see the module docstring.
    """
    lanes = f.target.lanes
    elements = elements or {}

    def vector_bytes(p) -> int:
        return lanes * elements.get(p, F32).size

    def run(tile: Tile) -> None:
        step(tile)
        tile.check_complete()

    group = interleave or unroll
    # pairs permute the lanes (even elements, then odd ones): every pointer must go through them
    elementwise = elementwise and all(elements.get(p, F32) is BF16 for p in pointers)
    paired_output = elementwise and unroll > 1 and min(group, unroll) >= 2
    if nontemporal_stores:
        # a bfloat16 pair is stored as one register: aligned to its full width
        _align_stores(f, n, pointers, run, elements, scaled, stored_values,
                      vectors=2 if paired_output else 1)
    # AVX-512 bfloat16 loads outside pairs: one VPERMW a vector (its constants set here, once)
    widening = (conversions.bf16_widening(f) if f.target.has_masks
                and BF16 in elements.values() else None)
    if unroll > 1:
        with f.count_down_loop(n, unroll * lanes, f"{name}_u{unroll}"):
            for first in range(0, unroll, group):
                run(Tile(f, min(group, unroll - first), nontemporal=nontemporal_stores,
                         first=first, elements=elements, scaled=scaled,
                         elementwise=elementwise, stored_values=stored_values,
                         widening=widening))
            for p in pointers:
                f.add(p, unroll * vector_bytes(p))
    with f.count_down_loop(n, lanes, f"{name}_v1"):
        run(Tile(f, 1, nontemporal=nontemporal_stores, elements=elements, scaled=scaled,
                 stored_values=stored_values, widening=widening))
        for p in pointers:
            f.add(p, vector_bytes(p))
    done = f.label(f"{name}_tail_done")
    f.test(n, n)
    f.je(done)
    run(Tile(f, 1, Tail(f, n), elements=elements, scaled=scaled, stored_values=stored_values))
    f.bind(done)
    if nontemporal_stores:
        f.sfence()  # order the write-combining stores before anything the caller does next


def _align_stores(f: Function, n: Register, pointers: list, step, elements: dict,
                  scaled: ScaledInput | None, stored_values: str, vectors: int = 1) -> None:
    """Non-temporal stores need aligned addresses: run masked steps over the elements before the
    output pointer (the last of `pointers`) reaches a boundary of `vectors` vectors of its own
    elements (one vector of 16-bit elements is half a register's width).

    With vectors=2 the head may hold a vector or more: one unmasked step takes the first one.
    The output must be aligned to its element size (a numpy array's natural alignment; the
    Python layer guarantees it)."""
    output = elements.get(pointers[-1], F32).size
    lanes = f.target.lanes
    head = f.gp("head")
    f.comment("head = min(n, elements until y is " + ("vector-aligned)" if vectors == 1 else
                                                      f"aligned to {vectors} vectors)"))
    f.mov(head, pointers[-1])
    f.neg(head)
    f.and_(head, vectors * lanes * output - 1)
    f.shr(head, output.bit_length() - 1)
    f.cmp(head, n)
    f.cmova(head, n)
    aligned = f.label("aligned")
    if vectors > 1:
        short = f.label("head_short")
        f.cmp(head, lanes)
        f.jb(short)
        step(Tile(f, 1, elements=elements, scaled=scaled, stored_values=stored_values))
        for p in pointers:
            f.add(p, lanes * elements.get(p, F32).size)
        f.sub(n, lanes)
        f.sub(head, lanes)
        f.bind(short)
    f.test(head, head)
    f.je(aligned)
    step(Tile(f, 1, Tail(f, head), elements=elements, scaled=scaled,
              stored_values=stored_values))
    for p in pointers:
        f.lea(p, ptr(p, 0, head, elements.get(p, F32).size))
    f.sub(n, head)
    f.bind(aligned)
