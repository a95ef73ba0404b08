"""16-bit elements converted in registers: every kernel computes in float32, and a float16 or
bfloat16 buffer (codegen/abi.py ElementFormat) is widened as it is loaded and rounded as it is
stored, one vector of elements at a time:

    float16  -> float32   VCVTPH2PS (F16C's VEX form on AVX2, AVX-512F's EVEX form): exact
    bfloat16 -> float32   the words zero-extended to dwords (VPMOVZXWD), shifted left 16: exact;
                          AVX-512 loops: the 16 words loaded into a ymm, then one VPERMW with
                          zeroing puts word i in the upper half of dword i (Bf16Widening: an
                          index register and a k mask of the odd words, set once per loop),
                          which saves the shift (the FADD pipes' share of the conversion)
    float32 -> float16    VCVTPS2PH with immediate 0: round to nearest even, whatever MXCSR says
    float32 -> bfloat16   round to nearest even in integer lanes, then the dwords narrowed to
                          words (VPMOVDW on AVX-512; VPACKUSDW of the two 128-bit halves on AVX2,
                          whose packs stay inside a 128-bit lane)

The bfloat16 rounding of a float32 bit pattern b keeps the upper half of
    b + 0x7FFF + (bit 16 of b)
which rounds to nearest with ties to the even upper half; a finite value past the largest
bfloat16 carries into the exponent and becomes the infinity of its sign, and +-inf stay.
A NaN lane is not rounded (the add could carry it into an infinity or flip its sign): on
AVX-512 it keeps its upper half with the quiet bit (0x00400000) set, so a NaN whose payload lies
in the low half stays a NaN; on AVX2 it becomes 0xFFFF, a quiet NaN (sign and payload are not
kept there: two operations instead of four).

What a kernel knows of the values it stores shortens the rounding (`values`):
    ANY                  any float32: the NaN handling above
    NONNEGATIVE_OR_NAN   +0 up to +inf, or NaN (softmax outputs of three passes): one unsigned
                         minimum with 0x7FC00000 first makes every NaN that quiet NaN (any sign,
                         any payload) and leaves +0..+inf alone, so the add cannot carry a NaN
                         out of the NaNs; the result is 0x7FC0 for every NaN
    UNIT_INTERVAL        finite values in [+0, 1] (two-pass softmax outputs, clamped at 1 and
                         never NaN): nothing to handle
The values are the same bits either way except for the NaN patterns, which stay NaN.

The loads and stores here take an address of one vector of elements (16 of them on AVX-512, 8
on AVX2) and an optional AVX-512 k mask, one bit per element: masked-out elements are neither
read nor written (EVEX masking suppresses their faults). AVX2 has no 16-bit masked moves: its
tails go through a stack buffer (codegen/kernels/loops.py Tail).

Pairs of bfloat16 vectors, for passes whose lanes are independent (elementwise passes; the sums
must see the elements in float32's lane order). One full register of words (2 vectors of
elements) is split without shuffles: its dwords shifted left 16 are the even elements as
float32, its dwords with the low half cleared are the odd ones. The results go back the same
way: the rounded odd elements keep their upper halves, the rounded even ones are shifted down
into the lower halves, one bitwise select merges them, one full-width store writes both
vectors. That drops VPMOVZXWD and VPMOVDW (cross-lane shuffles on Zen 4 that take a share of
the FMA pipes) and a shift per vector.
"""
from __future__ import annotations

from typing import NamedTuple

from softjit.codegen.abi import BF16, F16, F32, ElementFormat
from softjit.codegen.kernels.reduce import UNORDERED
from softjit.codegen.operands import Masked, Mem, Register
from softjit.codegen.stream import Function
ROUND_TO_NEAREST_EVEN = 0  # VCVTPS2PH immediate: round to nearest even, not MXCSR's mode
BF16_ROUNDING_BIAS = 0x7FFF
QUIET_BIT = 0x00400000
QUIET_NAN = 0x7FC00000  # above +inf (0x7F800000) and below every NaN with the quiet bit, as unsigned
UPPER_HALF = 0xFFFF0000
SELECT_FIRST_WHERE_THIRD = 0xE4  # VPTERNLOGD: c ? a : b, bit by bit

# What the stored float32 values may be (module docstring)
ANY = "any"
NONNEGATIVE_OR_NAN = "nonnegative or NaN"
UNIT_INTERVAL = "[0, 1]"
VALUE_RANGES = (ANY, NONNEGATIVE_OR_NAN, UNIT_INTERVAL)


class Bf16Widening(NamedTuple):
    """AVX-512: what load() widens a bfloat16 vector with in one VPERMW (module docstring)."""

    index: Register  # word 2i + 1 <- word i (the even words are zeroed)
    odd_words: Register  # k mask: the odd words


def bf16_widening(f: Function) -> Bf16Widening:
    """Bf16Widening's constants, set where this is called (before the loops that use them)."""
    index, odd_words, bits = f.vec("bf16_widen_index"), f.mask("bf16_odd_words"), f.gp("odd_bits")
    f.vmovups(index, Mem(f.table("bf16_widen_index", tuple(i << 16 for i in range(16)), 64)))
    f.mov(bits.r32, 0xAAAAAAAA)
    f.kmovd(odd_words, bits.r32)
    return Bf16Widening(index, odd_words)


def half_vector(f: Function, reg: Register):
    """The view of reg holding one vector of 16-bit elements: half the target's width."""
    return reg.view(max(f.target.vector_bits // 2, 128))


def load(f: Function, element: ElementFormat, dest: Register, address: Mem, mask=None,
         widening: Bf16Widening | None = None) -> None:
    """dest = the float32 values of one vector of `element`s at address. With an AVX-512 k
    `mask`, only its elements are read and the other lanes keep what dest held (merging).
    widening (AVX-512, no mask): bfloat16 widened by VPERMW."""
    if element is F32:
        raise ValueError("float32 elements are loaded by the loop helper itself")
    target = dest if mask is None else Masked(dest.view(dest.bits), mask.view(16))
    if element is F16:
        f.vcvtph2ps(target, address)
    elif element is BF16 and widening is not None and mask is None:
        f.vmovups(half_vector(f, dest), address)
        f.vpermw(Masked(dest.view(dest.bits), widening.odd_words.view(16), zeroing=True),
                 widening.index, dest)
    elif element is BF16:
        f.vpmovzxwd(target, address)
        f.vpslld(target, dest, 16)
    else:
        raise ValueError(f"no conversion from element format {element.name!r}")


def store(f: Function, element: ElementFormat, address: Mem, src: Register, mask=None,
          values: str = ANY) -> None:
    """One vector of `element`s at address = src rounded to nearest even (src is kept). With an
    AVX-512 k `mask`, only its elements are written. `values`: what src may hold (module
    docstring)."""
    if element is F16:
        target = address if mask is None else Masked(address, mask.view(16))
        f.vcvtps2ph(target, src, ROUND_TO_NEAREST_EVEN)
    elif element is BF16:
        words = round_to_bfloat16(f, src, values)
        if f.target.has_masks:
            target = address if mask is None else Masked(address, mask.view(16))
            f.vpmovdw(target, words)
        else:
            if mask is not None:
                raise ValueError("AVX2 has no k masks: its tails store through a stack buffer")
            f.vmovups(address, pack_words(f, words))
    else:
        raise ValueError(f"no conversion to element format {element.name!r}")


def store_nontemporal(f: Function, element: ElementFormat, address: Mem, src: Register,
                      values: str = ANY) -> None:
    """store(), written around the caches: the converted elements are built in a register
    (half the width) and stored with VMOVNTPS; address must be aligned to that half."""
    if element is F16:
        halves = half_vector(f, f.vec("f16_halves"))
        f.vcvtps2ph(halves, src, ROUND_TO_NEAREST_EVEN)
    elif element is BF16:
        words = round_to_bfloat16(f, src, values)
        if f.target.has_masks:
            halves = half_vector(f, words)
            f.vpmovdw(halves, words)
        else:
            halves = pack_words(f, words)
    else:
        raise ValueError(f"no conversion to element format {element.name!r}")
    f.vmovntps(address, halves)


def round_to_bfloat16(f: Function, src: Register, values: str = ANY,
                      shift_down: bool = True) -> Register:
    """A new register whose dword lanes hold the bfloat16 patterns (0..0xFFFF) of src's
    float32 lanes, rounded to nearest even; NaN stays NaN (see the module docstring). `values`:
    what src may hold. shift_down=False leaves each pattern in the upper half of its dword (the
    lower half then holds rounding leftovers)."""
    if values not in VALUE_RANGES:
        raise ValueError(f"values={values!r}: one of {VALUE_RANGES}")
    words = f.vec("bf16_words")
    bits = src
    if values == NONNEGATIVE_OR_NAN:
        f.comment("every NaN -> 0x7FC00000 (unsigned min: +0..+inf lie below it)")
        bits = f.vec("bf16_bits")
        f.vpminud(bits, src, f.constant_bits("quiet_nan", QUIET_NAN))
    f.comment("bfloat16 = upper half of (b + 0x7FFF + bit 16 of b)"
              + ("; NaN lanes stay NaN" if values == ANY else ""))
    f.vpsrld(words, bits, 16)
    # (VPAND has no EVEX form; VPANDD is EVEX only)
    f.emit("vpandd" if f.target.has_masks else "vpand", words, words,
           f.constant_bits("one_bits", 1))
    f.vpaddd(words, words, f.constant_bits("bf16_rounding_bias", BF16_ROUNDING_BIAS))
    f.vpaddd(words, words, bits)
    if values == ANY and f.target.has_masks:
        nan = f.mask("nan_lanes")
        f.vcmpps(nan, src, src, UNORDERED)
        f.vpord(Masked(words.view(words.bits), nan.view(16)), src,
                f.constant_bits("quiet_nan_bit", QUIET_BIT))
    elif values == ANY:
        # AVX2: a NaN lane becomes all ones (0xFFFF after the shift: a quiet NaN, its sign and
        # payload not kept), two operations where keeping them took four (the output pass of
        # bfloat16 measured 16% faster)
        nan = f.vec("nan_lanes")
        f.vcmpps(nan, src, src, UNORDERED)
        f.vpor(words, words, nan)
    if shift_down:
        f.vpsrld(words, words, 16)
    return words


def load_pair_even(f: Function, even: Register, address: Mem) -> Register:
    """bfloat16 pairs (module docstring): even = the float32 values of the elements 0, 2, 4, ...
    of the two vectors of elements at address (one register's width of words); returns the
    register of words that load_pair_odd takes the odd elements from."""
    words = f.vec("bf16_pair")
    f.vmovups(words, address)
    f.vpslld(even, words, 16)
    return words


def load_pair_odd(f: Function, odd: Register, words: Register) -> None:
    """odd = the float32 values of the elements 1, 3, 5, ... of load_pair_even's words."""
    f.emit("vpandd" if f.target.has_masks else "vpand", odd, words,
           f.constant_bits("upper_half", UPPER_HALF))


def store_pair(f: Function, address: Mem, even: Register, odd: Register, values: str = ANY,
               nontemporal: bool = False) -> None:
    """The inverse of load_pair_even and load_pair_odd: two vectors of bfloat16 elements at address from the float32
    values of the even and the odd elements, each rounded to nearest even (even, odd kept).
    nontemporal: one VMOVNTPS, address aligned to a register's width."""
    low = round_to_bfloat16(f, even, values)
    merged = round_to_bfloat16(f, odd, values, shift_down=False)
    f.comment("words: odd elements' patterns in the upper halves, even ones' in the lower")
    if f.target.has_masks:
        f.vpternlogd(merged, low, f.constant_bits("upper_half", UPPER_HALF),
                     SELECT_FIRST_WHERE_THIRD)
    else:
        f.vpand(merged, merged, f.constant_bits("upper_half", UPPER_HALF))
        f.vpor(merged, merged, low)
    if nontemporal:
        f.vmovntps(address, merged)
    else:
        f.vmovups(address, merged)


def pack_words(f: Function, dwords: Register):
    """AVX2: the xmm holding the eight dword lanes of ymm `dwords` (each 0..0xFFFF) as words,
    in order. VPACKUSDW packs within 128-bit lanes, so the upper half is packed beside the
    lower one from an xmm of its own."""
    upper = f.vec("upper_dwords")
    f.vextractf128(upper.xmm, dwords.ymm, 1)
    f.vpackusdw(dwords.xmm, dwords.xmm, upper.xmm)
    return dwords.xmm
