"""An emulator for the x86-64 assembly text softjit emits, so AVX-512 kernels run on any host.

    m = Machine(render_module(variant.build()))
    x_addr = m.map(x, writable=False)       # numpy arrays become emulated memory regions
    y_addr = m.map(y)                       # writes go straight through to the array
    m.call("f32_vexp__avx512f_rr2_p5_scalef_u64", x_addr, y_addr, n)

What it is for: running the AVX-512 kernels on hosts without AVX-512, bit-exactly, and catching
every out-of-bounds access. It is not a general x86 emulator: it reads GNU as Intel-syntax text
(`.intel_syntax noprefix`) of the shape softjit renders, and it knows the mnemonics of
codegen/instructions.py (an unknown one is an AsmParseError naming the line).

Memory model. Every mapped array is a region placed so that its emulated address has the same
address mod 64 as the array's real data pointer (alignment behaviour is preserved), with
unmapped gaps of at least 4096 bytes between regions. The data sections of the text (.rodata,
read-only; .data/.bss, writable) and a stack are regions too; code is not readable memory. Any
access touching a byte outside a region, or writing a read-only one, raises EmulatedFault naming
the instruction, its line, the address and the size. Masked lanes (AVX-512 {k} write masks,
VMASKMOVPS lanes whose mask sign bit is clear) do not access memory, as on hardware (fault
suppression); an access is checked lane by lane only when the whole vector is not in bounds.
One stricter-than-hardware choice: an embedded broadcast ({1toN}, "DWORD BCST") always reads
its element, and shuffles with a memory source read the whole vector, whatever the mask.
VMOVAPS and VMOVNTPS with a misaligned memory operand raise EmulatedFault (#GP on hardware).

Arithmetic is bit-exact IEEE-754 as the hardware computes it with the default MXCSR (round to
nearest even, no FTZ/DAZ, exceptions masked): float32 add/sub/mul/div are numpy float32 ops,
and NaN results are then rewritten by the x86 rules (the first NaN source in operand order,
quieted; the "real indefinite" default NaN for invalid operations; for FMA the first NaN of
the multiplicands then the addend, as measured on hardware). Fused multiply-add rounds once:
for float32 the exact product a*b (float64) is added to c in float64 rounded to odd (the RN sum
stepped one ulp toward the TwoSum error term when inexact and even), then rounded to float32;
rounding to odd at 53 >= 24 + 2 bits makes the double rounding innocuous (the odd rounding is
only needed, and only done, when the RN sum sits exactly on a float32 midpoint or below 2^-126).
Float64 FMA (used only in accumulation folds) is computed exactly with fractions.Fraction per
lane and rounded once by CPython's correctly rounded int/int division; non-finite inputs and
exact zero results take numpy's a*b + c, which is exact in those cases. VSCALEFPS is a float64
ldexp (exact for float32 inputs with the exponent clamped to +-400) rounded once to float32,
with the SDM's special cases for infinite and NaN operands.

Registers: 16 general-purpose registers (Python ints), 32 vector registers (one numpy uint32
array of 32 x 16 lanes, viewed as float32 / uint64 / float64 as needed), 8 mask registers and
the CF/ZF/SF/OF/PF flags. VEX/EVEX writes of xmm/ymm zero the rest of the zmm register. At
every call the registers that carry no argument are poisoned (signalling-NaN lanes, 0xA5.. gp
values), and on return from the top-level call rbx, rbp, r12-r15 and rsp must hold their entry
values (ABIViolation otherwise); internal `call`s must find rsp 16-byte aligned.

Every instruction is decoded once, at construction, into a Python closure; the run loop calls
closures and follows the index they return.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "Machine", "EmulationError", "AsmParseError", "EmulatedFault", "ABIViolation",
    "InstructionLimitExceeded", "SUPPORTED_MNEMONICS",
]

M64 = (1 << 64) - 1
M32 = 0xFFFFFFFF

# The emulated address space. Code is not readable memory: an instruction's "address" exists
# only as a return address on the stack (TEXT_BASE + 16 * index).
TEXT_BASE = 0x0000_1000_0000
DATA_BASE = 0x0000_2000_0000
MAP_BASE = 0x0000_4000_0000
STACK_TOP = 0x7FFF_F000_0000
RETURN_SENTINEL = 0x0000_DEAD_BEEF_0000  # the top-level call returns here: emulation ends
GAP = 4096

GP64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
GP32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
        "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d")
RSP = 4
SYSV_ARGS = (7, 6, 2, 1, 8, 9)  # rdi, rsi, rdx, rcx, r8, r9
SYSV_CALLEE_SAVED = (3, 5, 12, 13, 14, 15)  # rbx, rbp, r12-r15

PTR_BITS = {"BYTE": 8, "WORD": 16, "DWORD": 32, "QWORD": 64, "XMMWORD": 128, "YMMWORD": 256,
            "ZMMWORD": 512}
VEC_BITS = {"x": 128, "y": 256, "z": 512}

_U = {32: np.uint32, 64: np.uint64}
_F = {32: np.float32, 64: np.float64}
_I = {32: np.int32, 64: np.int64}
_QUIET = {32: np.uint32(0x0040_0000), 64: np.uint64(0x0008_0000_0000_0000)}
_DEFAULT_NAN = {32: np.uint32(0xFFC0_0000), 64: np.uint64(0xFFF8_0000_0000_0000)}
_ONES = {32: np.uint32(M32), 64: np.uint64(M64)}
_ZERO = {32: np.uint32(0), 64: np.uint64(0)}
_PARITY = tuple(int(bin(i).count("1") % 2 == 0) for i in range(256))  # PF: even number of ones

POISON_GP = 0xA5A5_A5A5_A5A5_A5A5
POISON_VEC = 0x7FA5_A5A5  # a signalling NaN in every float32 lane
POISON_K = 0xA5A5


# ---------------------------------------------------------------------------------------------
# errors


class EmulationError(Exception):
    """Base of everything the emulator raises about the program it runs."""


class AsmParseError(EmulationError):
    """The text cannot be parsed or decoded (unknown mnemonic, bad operand, undefined label)."""

    def __init__(self, message: str, line: int | None = None, text: str | None = None):
        self.line, self.text = line, text
        where = f"line {line}: {text.strip()!r}: " if line is not None else ""
        super().__init__(where + message)


class _ExecError(EmulationError):
    """An error at run time, located at an instruction."""

    def __init__(self, reason: str, instruction: str, line: int, address: int | None = None,
                 size: int | None = None):
        self.reason, self.instruction, self.line = reason, instruction, line
        self.address, self.size = address, size
        at = f" (address 0x{address:X}, {size} bytes)" if address is not None else ""
        super().__init__(f"{reason}{at} at line {line}: {instruction}")


class EmulatedFault(_ExecError):
    """A memory access outside every mapped region, a write to a read-only one, a misaligned
    aligned-only access, or control flow leaving the code. .instruction, .line, .address and
    .size say where."""


class ABIViolation(_ExecError):
    """The SysV contract broken: a callee-saved register or rsp not restored, a misaligned
    stack at a call."""


class InstructionLimitExceeded(_ExecError):
    """More instructions executed than the limit (a runaway loop)."""


class _Fault(Exception):
    """Raised inside instruction closures; the run loop adds the instruction's text and line."""

    def __init__(self, reason, address=None, size=None, kind=EmulatedFault):
        super().__init__(reason)
        self.reason, self.address, self.size, self.kind = reason, address, size, kind


class _DecodeError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# parsing


@dataclass
class _Line:
    number: int
    text: str  # the original line
    body: str  # without comment and labels


@dataclass
class _Operand:
    kind: str  # "gp", "vec", "k", "mem", "imm", "label"
    text: str
    num: int = 0  # register number
    bits: int | None = None  # register width / memory access size (None: unsized)
    bcst: bool = False  # embedded broadcast of one `bits`-sized element
    mask: int | None = None  # {kN}
    zero: bool = False  # {z}
    value: int = 0  # immediate
    name: str = ""  # label
    base: int | None = None
    index: int | None = None
    scale: int = 1
    disp: int = 0
    label: str | None = None  # a label in the address (rip-relative or absolute)
    rip: bool = False
    addr: object = None  # decoded: a zero-argument function giving the effective address
    const_addr: int | None = None  # decoded: the address when it does not depend on registers


@dataclass
class _Ins:
    index: int
    mnemonic: str
    ops: list
    line: int
    text: str


_LABEL_RE = re.compile(r"^\s*([A-Za-z_.$][\w.$@]*)\s*:(?!:)")
_INT_RE = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)$")
_IDENT_RE = re.compile(r"^[A-Za-z_.$][\w.$@]*$")
_VEC_RE = re.compile(r"^([xyz])mm(\d+)$")
_MEM_RE = re.compile(
    r"^(?:(BYTE|WORD|DWORD|QWORD|XMMWORD|YMMWORD|ZMMWORD)\s+(PTR|BCST)\s*)?\[([^\]]*)\]\s*(.*)$",
    re.IGNORECASE)
_DECO_RE = re.compile(r"\{([^}]*)\}")
_GP64_NUM = {n: i for i, n in enumerate(GP64)}
_GP32_NUM = {n: i for i, n in enumerate(GP32)}


def _strip_comment(line: str) -> str:
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line


def _split_operands(s: str) -> list:
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    last = "".join(cur).strip()
    if last or parts:
        parts.append(last)
    return parts


def _parse_int(s: str) -> int:
    s = s.strip()
    if not _INT_RE.match(s):
        raise _DecodeError(f"not an integer: {s!r}")
    return int(s, 0)


def _decorations(rest: str, op: _Operand) -> None:
    """{kN}, {z} and {1toN} after an operand."""
    pos = 0
    for m in _DECO_RE.finditer(rest):
        if rest[pos:m.start()].strip():
            raise _DecodeError(f"cannot parse operand {op.text!r}")
        pos = m.end()
        d = m.group(1).strip().lower()
        if re.fullmatch(r"k[0-7]", d):
            if d == "k0":
                raise _DecodeError("k0 cannot be a write mask")
            op.mask = int(d[1])
        elif d == "z":
            op.zero = True
        elif re.fullmatch(r"1to\d+", d):
            if op.kind != "mem":
                raise _DecodeError(f"{{{d}}} on a register operand")
            op.bcst = True
        else:
            raise _DecodeError(f"unknown operand decoration {{{d}}}")
    if rest[pos:].strip():
        raise _DecodeError(f"cannot parse operand {op.text!r}")
    if op.zero and op.mask is None:
        raise _DecodeError("{z} without a {k} write mask")


def _parse_operand(s: str) -> _Operand:
    text = s
    m = _MEM_RE.match(s)
    if m:
        op = _Operand("mem", text)
        if m.group(1):
            op.bits = PTR_BITS[m.group(1).upper()]
            op.bcst = m.group(2).upper() == "BCST"
        _parse_address(m.group(3), op)
        _decorations(m.group(4), op)
        return op
    head = s.split("{", 1)[0].strip()
    rest = s[len(s.split("{", 1)[0]):]
    low = head.lower()
    if low in _GP64_NUM:
        op = _Operand("gp", text, num=_GP64_NUM[low], bits=64)
    elif low in _GP32_NUM:
        op = _Operand("gp", text, num=_GP32_NUM[low], bits=32)
    elif _VEC_RE.match(low):
        vm = _VEC_RE.match(low)
        num = int(vm.group(2))
        if num > 31:
            raise _DecodeError(f"no register {head}")
        op = _Operand("vec", text, num=num, bits=VEC_BITS[vm.group(1)])
    elif re.fullmatch(r"k[0-7]", low):
        op = _Operand("k", text, num=int(low[1]), bits=64)
    elif _INT_RE.match(head):
        op = _Operand("imm", text, value=int(head, 0))
    elif _IDENT_RE.match(head):
        if low in ("al", "ax", "cl", "cx", "dl", "dx", "bl", "bx", "sil", "dil", "spl", "bpl",
                   "si", "di", "sp", "bp") or re.fullmatch(r"r\d+[wb]", low):
            raise _DecodeError(f"8- and 16-bit registers are not supported: {head}")
        op = _Operand("label", text, name=head)
    else:
        raise _DecodeError(f"cannot parse operand {s!r}")
    _decorations(rest, op)
    return op


def _parse_address(inner: str, op: _Operand) -> None:
    terms = inner.replace("-", "+-").split("+")
    for term in terms:
        t = term.strip()
        neg = False
        if t.startswith("-"):
            neg, t = True, t[1:].strip()
        if not t:
            if neg:
                raise _DecodeError(f"bad address [{inner}]")
            continue
        if "*" in t:
            a, b = (x.strip().lower() for x in t.split("*", 1))
            if a in _GP64_NUM and _INT_RE.match(b):
                reg, scale = _GP64_NUM[a], int(b, 0)
            elif b in _GP64_NUM and _INT_RE.match(a):
                reg, scale = _GP64_NUM[b], int(a, 0)
            else:
                raise _DecodeError(f"bad index term {t!r} in [{inner}]")
            if neg or scale not in (1, 2, 4, 8) or op.index is not None:
                raise _DecodeError(f"bad index term {t!r} in [{inner}]")
            op.index, op.scale = reg, scale
        elif t.lower() == "rip":
            if neg or op.rip or op.base is not None:
                raise _DecodeError(f"bad address [{inner}]")
            op.rip = True
        elif t.lower() in _GP64_NUM:
            if neg:
                raise _DecodeError(f"a register cannot be subtracted: [{inner}]")
            if op.base is None and not op.rip:
                op.base = _GP64_NUM[t.lower()]
            elif op.index is None:
                op.index, op.scale = _GP64_NUM[t.lower()], 1
            else:
                raise _DecodeError(f"too many registers in [{inner}]")
        elif t.lower() in _GP32_NUM:
            raise _DecodeError(f"32-bit address registers are not supported: [{inner}]")
        elif _INT_RE.match(t):
            op.disp += -int(t, 0) if neg else int(t, 0)
        elif _IDENT_RE.match(t):
            if neg or op.label is not None:
                raise _DecodeError(f"bad label term in [{inner}]")
            op.label = t
        else:
            raise _DecodeError(f"cannot parse address [{inner}]")
    if op.rip and (op.index is not None):
        raise _DecodeError(f"rip-relative addresses take no index: [{inner}]")
    if op.label is not None and (op.base is not None or op.index is not None):
        raise _DecodeError(f"a label address cannot add registers (not position independent): "
                           f"[{inner}]")


def _expand_rept(lines: list) -> list:
    """Expand .rept N ... .endr blocks (nested), keeping each line's number."""
    out, i = [], 0
    while i < len(lines):
        ln = lines[i]
        words = ln.body.split(None, 1)
        if words and words[0] == ".rept":
            count = _parse_int(words[1]) if len(words) > 1 else None
            if count is None or count < 0:
                raise AsmParseError("bad .rept count", ln.number, ln.text)
            depth, j = 1, i + 1
            while j < len(lines):
                w = lines[j].body.split(None, 1)
                if w and w[0] == ".rept":
                    depth += 1
                elif w and w[0] == ".endr":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            else:
                raise AsmParseError(".rept without .endr", ln.number, ln.text)
            block = _expand_rept(lines[i + 1:j])
            out += block * count
            i = j + 1
        elif words and words[0] == ".endr":
            raise AsmParseError(".endr without .rept", ln.number, ln.text)
        else:
            out.append(ln)
            i += 1
    return out


# ---------------------------------------------------------------------------------------------
# float helpers (all take and return unsigned bit-pattern arrays)


_count = np.count_nonzero  # much cheaper than ndarray.any() on 16 lanes


def _nanfix(r, srcs, eb):
    """x86 NaN results: the first NaN among srcs (operand order), quieted; else the default
    NaN (real indefinite) for an invalid operation. r is a fresh, writable result."""
    f = _F[eb]
    bad = np.isnan(r.view(f))
    if not _count(bad):
        return r
    out = np.full(r.shape, _DEFAULT_NAN[eb], dtype=r.dtype)
    q = _QUIET[eb]
    for s in reversed(srcs):
        np.copyto(out, s | q, where=np.isnan(s.view(f)))
    np.copyto(r, out, where=bad)
    return r


def _quiet_nans(r, src, eb):
    """NaN lanes of src come out as src quieted (rounding, conversions to the same width)."""
    nan = np.isnan(src.view(_F[eb]))
    if _count(nan):
        r = np.array(r, copy=True)
        np.copyto(r, src | _QUIET[eb], where=nan)
    return r


def _fp_binop(ufunc, eb):
    f = _F[eb]

    def compute(a, b):
        r = ufunc(a.view(f), b.view(f)).view(a.dtype)
        return _nanfix(r, (a, b), eb)
    return compute


def _fp_max(eb):
    f = _F[eb]

    def compute(a, b):  # (a > b) ? a : b; NaN or equal (incl. +-0): b
        return np.where(a.view(f) > b.view(f), a, b)
    return compute


def _fp_min(eb):
    f = _F[eb]

    def compute(a, b):
        return np.where(a.view(f) < b.view(f), a, b)
    return compute


def _round_to_odd_sum(p, c):
    """p + c (float64 arrays) rounded to odd: exact when representable, else the neighbour of
    the exact sum whose last significand bit is 1. Valid while the TwoSum error is exact (no
    overflow; the inputs here are far from the subnormal range)."""
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    fix = (err != 0) & ((s.view(np.uint64) & np.uint64(1)) == 0) & np.isfinite(s)
    if _count(fix):
        s = np.where(fix, np.nextafter(s, np.copysign(np.inf, err)), s)
    return s


def _fma32(x, y, z, negate):
    """round_float32(+-(x*y) + z) with one rounding; x, y, z uint32 bit arrays.

    The product is exact in float64. s = RN64(p + z) then rounds to the same float32 as the
    exact sum unless s is exactly a float32 rounding boundary (a midpoint: no float64 number
    lies strictly between the exact sum and s, and every float32 midpoint is one), or lies in
    the float32 subnormal range (other midpoints). Only then is the sum redone rounded to odd."""
    p = x.view(np.float32).astype(np.float64)
    p *= y.view(np.float32)
    if negate:
        np.negative(p, out=p)
    c = z.view(np.float32).astype(np.float64)
    s = p + c
    sb = s.view(np.uint64)
    suspect = (sb & _LOW29) == _MID29
    suspect |= (sb & _EXP64) < _TINY32
    if _count(suspect):
        s = _round_to_odd_sum(p, c)
    return s.astype(np.float32).view(np.uint32)


_LOW29, _MID29 = np.uint64((1 << 29) - 1), np.uint64(1 << 28)
_EXP64 = np.uint64(0x7FF0_0000_0000_0000)
_TINY32 = np.uint64((1023 - 126) << 52)  # |s| < 2^-126 (zeros included)


def _fma64(x, y, z, negate):
    """round_float64(+-(x*y) + z) exactly, lane by lane (Fraction, one correct rounding)."""
    xf, yf, zf = (np.broadcast_to(v.view(np.float64), np.broadcast_shapes(x.shape, y.shape,
                                                                           z.shape))
                  for v in (x, y, z))
    p = xf * yf
    out = np.array((-p if negate else p) + zf, dtype=np.float64)
    finite = np.isfinite(xf) & np.isfinite(yf) & np.isfinite(zf)
    for i in np.flatnonzero(finite):
        exact = Fraction(float(xf[i])) * Fraction(float(yf[i]))
        if negate:
            exact = -exact
        exact += Fraction(float(zf[i]))
        if exact == 0:
            continue  # numpy's value has the IEEE sign of an exact zero
        try:
            out[i] = float(exact)
        except OverflowError:
            out[i] = np.inf if exact > 0 else -np.inf
    return out.view(np.uint64)


def _fma(eb, order, negate):
    """vfmadd{order}: operands (dst, src2, src3) -> a*b + c with, per order, 132: (dst, src3,
    src2), 213: (src2, dst, src3), 231: (src2, src3, dst). A NaN result is the first NaN of
    (a, b, c), quieted, sign kept (vfnmadd does not negate it): measured on hardware, see
    test_single_instructions_match_the_cpu."""
    core = _fma32 if eb == 32 else _fma64
    roles = {"132": (0, 2, 1), "213": (1, 0, 2), "231": (1, 2, 0)}[order]

    def compute(d, s2, s3):
        ops = (d, s2, s3)
        a, b, c = (ops[i] for i in roles)
        return _nanfix(core(a, b, c, negate), (a, b, c), eb)
    return compute


def _scalef(eb):
    f = _F[eb]
    limit = 400.0 if eb == 32 else 2200.0

    def compute(a, b):
        af, bf = a.view(f), b.view(f)
        # floor(b) clamped (NaN becomes the limit: fmin/fmax skip NaN; fixed below)
        k = np.fmax(np.fmin(np.floor(bf), limit), -limit).astype(np.int32)
        # a * 2^k is exact in float64 for float32 a (|k| <= 400); then one rounding to the width
        if eb == 32:
            r = np.ldexp(af.astype(np.float64), k).astype(f).view(a.dtype)
        else:
            r = np.ldexp(af, k).view(a.dtype)
        if _count(~np.isfinite(bf)):  # b = +-inf: 0*inf, inf*0 are invalid; NaN in b or a
            invalid = ((af == 0) & (bf == np.inf)) | (np.isinf(af) & (bf == -np.inf))
            invalid |= np.isnan(af) | np.isnan(bf)
            np.copyto(r, _DEFAULT_NAN[eb], where=invalid)
        return _nanfix(r, (a, b), eb)
    return compute


_ROUNDERS = {0: np.rint, 1: np.floor, 2: np.ceil, 3: np.trunc}


def _round_imm(eb, imm, scaled):
    """vrndscaleps (scaled: imm[7:4] = M) and vroundps: imm[1:0] mode unless imm[2] (MXCSR:
    nearest even); imm[3] only suppresses the precision exception."""
    f = _F[eb]
    mode = 0 if imm & 4 else imm & 3
    rounder = _ROUNDERS[mode]
    m = (imm >> 4) & 15 if scaled else 0

    def compute(a):
        x = a.view(f).astype(np.float64)
        if m:
            x = rounder(x * 2.0 ** m) / 2.0 ** m  # exact scalings
        else:
            x = rounder(x)
        r = x.astype(f).view(a.dtype)
        return _quiet_nans(r, a, eb)
    return compute


_CMP = {
    0: lambda a, b: a == b,
    1: lambda a, b: a < b,
    2: lambda a, b: a <= b,
    3: lambda a, b: np.isnan(a) | np.isnan(b),
    4: lambda a, b: a != b,
    5: lambda a, b: ~(a < b),
    6: lambda a, b: ~(a <= b),
    7: lambda a, b: ~(np.isnan(a) | np.isnan(b)),
    8: lambda a, b: (a == b) | np.isnan(a) | np.isnan(b),
    9: lambda a, b: ~(a >= b),
    10: lambda a, b: ~(a > b),
    11: lambda a, b: np.zeros(np.broadcast_shapes(a.shape, b.shape), bool),
    12: lambda a, b: (a != b) & ~(np.isnan(a) | np.isnan(b)),
    13: lambda a, b: a >= b,
    14: lambda a, b: a > b,
    15: lambda a, b: np.ones(np.broadcast_shapes(a.shape, b.shape), bool),
}


def _cvtps2pd(a):
    d = a.view(np.float32).astype(np.float64).view(np.uint64)
    nan = np.isnan(a.view(np.float32))
    if _count(nan):
        w = a.astype(np.uint64)
        q = ((w & np.uint64(0x8000_0000)) << np.uint64(32)) | np.uint64(0x7FF8_0000_0000_0000) \
            | ((w & np.uint64(0x3F_FFFF)) << np.uint64(29))
        d = np.where(nan, q, d)
    return d


def _cvtpd2ps(a):
    r = a.view(np.float64).astype(np.float32).view(np.uint32)
    nan = np.isnan(a.view(np.float64))
    if _count(nan):
        q = (((a >> np.uint64(32)) & np.uint64(0x8000_0000)) | np.uint64(0x7FC0_0000)
             | ((a >> np.uint64(29)) & np.uint64(0x3F_FFFF))).astype(np.uint32)
        r = np.where(nan, q, r)
    return r


def _cvtps2dq(a):
    x = np.rint(a.view(np.float32).astype(np.float64))
    ok = (x >= -2147483648.0) & (x <= 2147483647.0)
    return np.where(ok, x, -2147483648.0).astype(np.int64).astype(np.int32).view(np.uint32)


def _bits_to_int(bools) -> int:
    v = 0
    for i in np.flatnonzero(bools):
        v |= 1 << int(i)
    return v


# ---------------------------------------------------------------------------------------------
# memory


class _Region:
    __slots__ = ("start", "end", "u8", "writable", "name", "array")

    def __init__(self, start, u8, writable, name, array=None):
        self.start, self.end = start, start + u8.size
        self.u8, self.writable, self.name, self.array = u8, writable, name, array

    def __repr__(self):
        rw = "rw" if self.writable else "r-"
        return f"<region {self.name} [0x{self.start:X}, 0x{self.end:X}) {rw}>"


def _align_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


# ---------------------------------------------------------------------------------------------
# the machine

_HANDLERS: dict = {}


def _handles(*mnemonics):
    def deco(fn):
        for m in mnemonics:
            _HANDLERS[m] = fn
        return fn
    return deco


class Machine:
    """Parse an assembly text once; map arrays; call its functions as often as needed."""

    def __init__(self, asm_text: str, *, stack_size: int = 64 * 1024,
                 instruction_limit: int = 50_000_000, poison: bool = True):
        _check_float_environment()
        self.instruction_limit = instruction_limit
        self.poison = poison
        self.instructions_executed = 0  # by the last call
        self.total_instructions_executed = 0
        # state
        self.gp = [0] * 16
        self.kregs = [0] * 8
        self.flags = [0, 0, 0, 0, 0]  # CF, ZF, SF, OF, PF
        self.vu = np.zeros((32, 16), np.uint32)
        self.vq = self.vu.view(np.uint64)
        self._vv = {32: self.vu, 64: self.vq}
        self._lane_cache: dict = {}
        # memory
        self._regions: list = []
        self._starts: list = []
        self._next_map = MAP_BASE
        # program
        self._labels: dict = {}  # name -> ("text", index) or ("data", address)
        self.globals: set = set()
        self._ins: list = []
        self._parse(asm_text)
        stack = np.full(stack_size, 0xCC, np.uint8)
        self._stack_top = STACK_TOP
        self._add_region(_Region(STACK_TOP - stack_size, stack, True, "stack"))
        self._code = [self._decode(ins) for ins in self._ins]
        self._code.append(self._fell_off)

    # -- public API -------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple:
        """The .globl function symbols of the text."""
        return tuple(sorted(s for s in self.globals if self._labels.get(s, ("",))[0] == "text"))

    def address_of(self, label: str) -> int:
        """The emulated address of a data label (or the pseudo-address of a code label)."""
        where = self._labels.get(label)
        if where is None:
            raise KeyError(label)
        return where[1] if where[0] == "data" else TEXT_BASE + 16 * where[1]

    def map(self, array: np.ndarray, writable: bool = True) -> int:
        """Place a C-contiguous numpy array in emulated memory; return its emulated address.

        The region aliases the array (writes show up in it at once) and has the array's
        address mod 64; nothing else is mapped within 4096 bytes of it."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"map() takes a numpy array, not {type(array).__name__}")
        if not array.flags.c_contiguous:
            raise ValueError("map() needs a C-contiguous array (use np.ascontiguousarray)")
        if writable and not array.flags.writeable:
            raise ValueError("the array is read-only: map it with writable=False")
        u8 = array.reshape(-1).view(np.uint8)
        real = array.__array_interface__["data"][0]
        start = _align_up(self._next_map, GAP) + real % 64
        self._next_map = start + u8.size + GAP
        name = f"array{len(self._regions)}<{array.dtype}{list(array.shape)}>"
        self._add_region(_Region(start, u8, writable, name, array))
        return start

    def unmap(self, address: int) -> None:
        """Remove the mapped array that starts at address."""
        for i, r in enumerate(self._regions):
            if r.start == address and r.array is not None:
                del self._regions[i]
                del self._starts[i]
                return
        raise KeyError(f"no mapped array at 0x{address:X}")

    @property
    def regions(self) -> tuple:
        return tuple(self._regions)

    def call(self, symbol: str, *args, instruction_limit: int | None = None,
             trace=None) -> int:
        """Run symbol(args) per SysV: ints (addresses, sizes) into rdi, rsi, rdx, rcx, r8, r9
        and then the stack; np.float32 / np.float64 into xmm0-7. Returns rax (unsigned).

        trace, if given, is called as trace(line, text) before every instruction (slow)."""
        where = self._labels.get(symbol)
        if where is None or where[0] != "text":
            raise KeyError(f"no function {symbol!r} in the text")
        if symbol not in self.globals:
            raise KeyError(f"{symbol!r} is not a .globl symbol")
        g, limit = self.gp, instruction_limit or self.instruction_limit
        ints, vecs = [], []
        for a in args:
            if isinstance(a, (np.float32, np.float64)):
                vecs.append(a)
            elif isinstance(a, float):
                raise TypeError("pass float arguments as np.float32 or np.float64")
            else:
                ints.append(int(a) & M64)
        if len(vecs) > 8:
            raise ValueError("more than 8 floating-point arguments")
        self._reset_state()
        for reg, v in zip(SYSV_ARGS, ints):
            g[reg] = v
        for i, v in enumerate(vecs):
            self.vu[i, :] = 0
            if isinstance(v, np.float32):
                self.vu[i, 0] = np.array(v, np.float32).view(np.uint32)
            else:
                self.vq[i, 0] = np.array(v, np.float64).view(np.uint64)
        # stack: top 16-byte aligned; extra integer args, then the sentinel return address
        rsp = self._stack_top - 64
        extra = ints[6:]
        if len(extra) % 2:
            rsp -= 8
        for v in reversed(extra):
            rsp -= 8
            self._write_int(rsp, 8, v)
        rsp -= 8
        self._write_int(rsp, 8, RETURN_SENTINEL)
        g[RSP] = rsp
        saved = [g[r] for r in SYSV_CALLEE_SAVED]
        self._run(where[1], limit, trace)
        if g[RSP] != rsp + 8:
            raise ABIViolation(f"rsp is 0x{g[RSP]:X} after return, expected 0x{rsp + 8:X}",
                               "ret", self._last_line)
        for r, v in zip(SYSV_CALLEE_SAVED, saved):
            if g[r] != v:
                raise ABIViolation(f"callee-saved {GP64[r]} not restored "
                                   f"(0x{g[r]:X}, was 0x{v:X})", "ret", self._last_line)
        return g[0]

    def reg(self, name: str):
        """A register after a call: int for gp (r64/r32) and k registers, a uint32 array copy
        for xmm/ymm/zmm."""
        low = name.lower()
        if low in _GP64_NUM:
            return self.gp[_GP64_NUM[low]]
        if low in _GP32_NUM:
            return self.gp[_GP32_NUM[low]] & M32
        m = _VEC_RE.match(low)
        if m and int(m.group(2)) < 32:
            return self.vu[int(m.group(2)), :VEC_BITS[m.group(1)] // 32].copy()
        if re.fullmatch(r"k[0-7]", low):
            return self.kregs[int(low[1])]
        raise KeyError(name)

    @property
    def flag_values(self) -> dict:
        return dict(zip(("CF", "ZF", "SF", "OF", "PF"), (int(bool(f)) for f in self.flags)))

    # -- running ----------------------------------------------------------------------------

    def _reset_state(self):
        g = self.gp
        for i in range(16):
            g[i] = (POISON_GP ^ i) if self.poison else 0
        for i, r in enumerate(SYSV_CALLEE_SAVED):
            g[r] = 0x5EED_0000_0000_0000 | (r << 8) if self.poison else 0
        self.vu[...] = POISON_VEC if self.poison else 0
        for i in range(8):
            self.kregs[i] = POISON_K if self.poison else 0
        self.flags[:] = [0, 0, 0, 0, 0]

    def _run(self, pc, limit, trace):
        code, ins = self._code, self._ins
        n = 0
        self._last_line = 0
        try:
            with np.errstate(all="ignore"):
                if trace is None:
                    while True:
                        r = code[pc]()
                        n += 1
                        if r is None:
                            pc += 1
                        elif r >= 0:
                            pc = r
                        else:
                            break
                        if n >= limit:
                            raise _Fault(f"instruction limit of {limit} reached",
                                         kind=InstructionLimitExceeded)
                else:
                    while True:
                        if pc < len(ins):
                            trace(ins[pc].line, ins[pc].text)
                        r = code[pc]()
                        n += 1
                        if r is None:
                            pc += 1
                        elif r >= 0:
                            pc = r
                        else:
                            break
                        if n >= limit:
                            raise _Fault(f"instruction limit of {limit} reached",
                                         kind=InstructionLimitExceeded)
        except _Fault as f:
            if pc < len(ins):
                text, line = ins[pc].text.strip(), ins[pc].line
            else:
                text, line = "<end of text>", (ins[-1].line if ins else 0)
            raise f.kind(f.reason, text, line, f.address, f.size) from None
        finally:
            self.instructions_executed = n
            self.total_instructions_executed += n
        self._last_line = ins[pc].line

    def _fell_off(self):
        raise _Fault("execution ran past the last instruction of the text")

    # -- memory -----------------------------------------------------------------------------

    def _add_region(self, region):
        i = bisect.bisect_left(self._starts, region.start)
        self._starts.insert(i, region.start)
        self._regions.insert(i, region)

    def _describe_miss(self, addr, size, write):
        what = "write" if write else "read"
        i = bisect.bisect_right(self._starts, addr) - 1
        near = []
        if i >= 0:
            r = self._regions[i]
            if addr < r.end:
                near.append(f"runs {addr + size - r.end} bytes past the end of {r.name} "
                            f"[0x{r.start:X}, 0x{r.end:X})")
            else:
                near.append(f"starts {addr - r.end} bytes past the end of {r.name} "
                            f"[0x{r.start:X}, 0x{r.end:X})")
        if i + 1 < len(self._regions):
            r = self._regions[i + 1]
            if addr + size > r.start:
                near.append(f"starts {r.start - addr} bytes before {r.name}")
        return f"{what} outside mapped memory" + (": " + "; ".join(near) if near else "")

    def _locate(self, addr, size, write=False):
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            r = self._regions[i]
            if addr + size <= r.end:
                if write and not r.writable:
                    raise _Fault(f"write to read-only {r.name}", addr, size)
                return r.u8, addr - r.start
        raise _Fault(self._describe_miss(addr, size, write), addr, size)

    def _load(self, addr, nbytes, dtype):
        u8, off = self._locate(addr, nbytes)
        return u8[off:off + nbytes].view(dtype)

    def _load_lanes(self, addr, esize, n, lanes, dtype):
        """Read only the enabled lanes (fault suppression); disabled lanes read as 0 unless the
        whole vector is in bounds (then they hold memory, and the caller masks them)."""
        try:
            return self._load(addr, esize * n, dtype)
        except _Fault:
            pass
        out = np.zeros(n, dtype)
        for i in np.flatnonzero(lanes):
            out[i] = self._load(addr + esize * int(i), esize, dtype)[0]
        return out

    def _store(self, addr, data):
        b = np.ascontiguousarray(data).view(np.uint8)
        u8, off = self._locate(addr, b.size, True)
        u8[off:off + b.size] = b

    def _store_lanes(self, addr, esize, data, lanes):
        n = data.shape[0]
        try:
            u8, off = self._locate(addr, esize * n, True)
        except _Fault:
            for i in np.flatnonzero(lanes):
                self._store(addr + esize * int(i), data[i:i + 1])
            return
        np.copyto(u8[off:off + esize * n].view(data.dtype), data, where=lanes)

    def _read_int(self, addr, size):
        u8, off = self._locate(addr, size)
        return int.from_bytes(u8[off:off + size].tobytes(), "little")

    def _write_int(self, addr, size, value):
        u8, off = self._locate(addr, size, True)
        u8[off:off + size] = np.frombuffer((value & ((1 << 8 * size) - 1)).to_bytes(
            size, "little"), np.uint8)

    # -- parsing ----------------------------------------------------------------------------

    def _parse(self, text: str):
        raw = []
        for number, line in enumerate(text.splitlines(), 1):
            body = _strip_comment(line).strip()
            while True:
                m = _LABEL_RE.match(body)
                if not m:
                    break
                raw.append(_Line(number, line, m.group(1) + ":"))
                body = body[m.end():].strip()
            if body:
                raw.append(_Line(number, line, body))
        try:
            lines = _expand_rept(raw)
        except _DecodeError as e:
            raise AsmParseError(str(e)) from None
        section = "text"
        data = {"rodata": bytearray(), "data": bytearray(), "bss": bytearray()}
        data_labels = []  # (name, section, offset)
        for ln in lines:
            try:
                section = self._parse_line(ln, section, data, data_labels)
            except _DecodeError as e:
                raise AsmParseError(str(e), ln.number, ln.text) from None
        # lay the data sections out
        base = DATA_BASE
        bases = {}
        for name in ("rodata", "data", "bss"):
            buf = data[name]
            bases[name] = base
            if buf:
                arr = np.frombuffer(bytes(buf), np.uint8).copy()
                if name == "rodata":
                    arr.flags.writeable = False
                self._add_region(_Region(base, arr, name != "rodata", f".{name}"))
            base = _align_up(base + len(buf) + GAP, GAP)
        for name, sec, off in data_labels:
            self._labels[name] = ("data", bases[sec] + off)

    def _bind(self, name, where, ln):
        if name in self._labels:
            raise _DecodeError(f"label {name} defined twice")
        self._labels[name] = where

    def _parse_line(self, ln, section, data, data_labels):
        body = ln.body
        if body.endswith(":") and _IDENT_RE.match(body[:-1]):
            name = body[:-1]
            if section == "text":
                self._bind(name, ("text", len(self._ins)), ln)
            elif section in data:
                self._bind(name, ("pending", 0), ln)
                data_labels.append((name, section, len(data[section])))
            return section
        words = body.split(None, 1)
        head, rest = words[0], (words[1] if len(words) > 1 else "")
        if head.startswith("."):
            return self._directive(head, rest, section, data)
        if section != "text":
            raise _DecodeError(f"instruction outside .text (in {section})")
        mnemonic = head.lower()
        if mnemonic not in _HANDLERS:
            raise _DecodeError(f"unknown mnemonic {head!r} (the emulator supports: "
                               f"{', '.join(sorted(_HANDLERS))})")
        ops = [_parse_operand(s) for s in _split_operands(rest)] if rest.strip() else []
        self._ins.append(_Ins(len(self._ins), mnemonic, ops, ln.number, ln.text))
        return section

    def _directive(self, head, rest, section, data):
        d = head.lower()
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if d == ".intel_syntax":
            if rest.strip() != "noprefix":
                raise _DecodeError(".intel_syntax needs noprefix")
            return section
        if d == ".att_syntax":
            raise _DecodeError("AT&T syntax is not supported")
        if d == ".text":
            return "text"
        if d in (".data", ".bss"):
            return d[1:]
        if d == ".section":
            name = args[0] if args else ""
            if name == ".text" or name.startswith(".text."):
                return "text"
            if name.startswith(".rodata"):
                return "rodata"
            if name.startswith(".data"):
                return "data"
            if name.startswith(".bss"):
                return "bss"
            if name.startswith(".note") or name.startswith(".comment"):
                return "ignored"
            raise _DecodeError(f"unsupported section {name!r}")
        if d in (".globl", ".global"):
            for a in args:
                self.globals.add(a)
            return section
        if d in (".type", ".size", ".file", ".ident", ".local", ".hidden") or \
                d.startswith(".cfi_"):
            return section
        # alignment and data
        if section == "ignored":
            return section
        if section == "text":
            if d in (".p2align", ".balign", ".align"):
                return section
            raise _DecodeError(f"directive {head} in .text is not supported")
        buf = data[section]
        if d in (".p2align", ".balign", ".align"):
            n = _parse_int(args[0])
            align = 1 << n if d == ".p2align" else n
            if align <= 0 or align & (align - 1):
                raise _DecodeError(f"bad alignment {rest}")
            buf.extend(b"\0" * (_align_up(len(buf), align) - len(buf)))
            return section
        sizes = {".byte": 1, ".short": 2, ".value": 2, ".word": 2, ".2byte": 2, ".long": 4,
                 ".int": 4, ".4byte": 4, ".quad": 8, ".8byte": 8}
        if d in sizes:
            if section == "bss":
                raise _DecodeError("data in .bss")
            for a in args:
                buf.extend((_parse_int(a) & ((1 << 8 * sizes[d]) - 1)).to_bytes(sizes[d],
                                                                              "little"))
            return section
        if d in (".float", ".single", ".double"):
            dt = "<f4" if d != ".double" else "<f8"
            for a in args:
                buf.extend(np.array(float(a), dt).tobytes())
            return section
        if d in (".zero", ".skip", ".space"):
            fill = _parse_int(args[1]) & 0xFF if len(args) > 1 else 0
            buf.extend(bytes([fill]) * _parse_int(args[0]))
            return section
        raise _DecodeError(f"unsupported directive {head}")

    # -- decoding -----------------------------------------------------------------------------

    def _decode(self, ins: _Ins):
        try:
            for op in ins.ops:
                if op.kind == "mem":
                    self._decode_address(op)
            return _HANDLERS[ins.mnemonic](self, ins)
        except _DecodeError as e:
            raise AsmParseError(str(e), ins.line, ins.text) from None

    def _decode_address(self, op):
        disp = op.disp
        if op.label is not None:
            where = self._labels.get(op.label)
            if where is None:
                raise _DecodeError(f"undefined label {op.label}")
            disp += where[1] if where[0] == "data" else TEXT_BASE + 16 * where[1]
        elif op.rip:
            raise _DecodeError("rip-relative address without a label")
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

    def _label_target(self, op):
        if op.kind != "label":
            raise _DecodeError(f"expected a label, got {op.text!r}")
        where = self._labels.get(op.name)
        if where is None:
            raise _DecodeError(f"undefined label {op.name} (calls leave the text only on ret)")
        if where[0] != "text":
            raise _DecodeError(f"{op.name} is a data label")
        return where[1]

    # -- operand helpers ------------------------------------------------------------------------

    def _lanes_fn(self, op, n):
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

    def _src(self, op, W, eb, *, allow_mem=True, allow_bcst=True, elementwise=True):
        """A getter for a vector source of W bits as uint{eb} lanes: get(lanes) -> array.

        lanes (a bool array or None) is the destination write mask; an element-wise memory
        source reads only the enabled lanes (fault suppression)."""
        n = W // eb
        dt = _U[eb]
        if op.kind == "vec":
            if op.mask is not None:
                raise _DecodeError(f"a write mask on a source operand {op.text!r}")
            if op.bits != W:
                raise _DecodeError(f"{op.text} is not a {W}-bit register here")
            view = self._vv[eb][op.num, :n]
            return lambda lanes=None: view
        if op.kind != "mem":
            raise _DecodeError(f"expected a vector register or memory, got {op.text!r}")
        if op.mask is not None:
            raise _DecodeError(f"a write mask on a source operand {op.text!r}")
        if op.bcst:
            if not allow_bcst:
                raise _DecodeError("no embedded broadcast in this form")
            if op.bits not in (None, eb):
                raise _DecodeError(f"broadcast element must be {eb} bits here")
            return self._mem_getter(op, eb // 8, 1, dt, n_out=n)
        if not allow_mem:
            raise _DecodeError("no memory operand in this form")
        if op.bits not in (None, W):
            raise _DecodeError(f"memory operand must be {W} bits here, not {op.bits}")
        return self._mem_getter(op, eb // 8, n, dt, masked=elementwise)

    def _mem_getter(self, op, esize, n, dt, *, n_out=None, masked=False, align=None):
        nbytes = esize * n
        if op.const_addr is not None and not (align and op.const_addr % align):
            try:
                u8, off = self._locate(op.const_addr, nbytes)
                region = self._regions[bisect.bisect_right(self._starts, op.const_addr) - 1]
                if not region.writable:  # read-only data never changes: read it now
                    val = u8[off:off + nbytes].view(dt).copy()
                    if n_out is not None:
                        val = np.repeat(val, n_out)
                    val.flags.writeable = False
                    return lambda lanes=None: val
            except _Fault:
                pass  # faults when (if) it executes
        addrf = op.addr
        load, load_lanes = self._load, self._load_lanes
        if n_out is not None:
            def get(lanes=None):
                return np.repeat(load(addrf(), nbytes, dt), n_out)
        elif masked:
            def get(lanes=None):
                a = addrf()
                if align and a % align:
                    raise _Fault(f"misaligned {nbytes}-byte access (#GP)", a, nbytes)
                if lanes is None:
                    return load(a, nbytes, dt)
                return load_lanes(a, esize, n, lanes, dt)
        else:
            def get(lanes=None):
                a = addrf()
                if align and a % align:
                    raise _Fault(f"misaligned {nbytes}-byte access (#GP)", a, nbytes)
                return load(a, nbytes, dt)
        return get

    def _writer(self, op, W, eb, *, align=None):
        """write(result, lanes) for a vector destination of W bits in uint{eb} lanes: a register
        (zeroing the bits above W) or memory; lanes is the {k} mask or None."""
        n = W // eb
        if op.kind == "vec":
            if op.bits != W:
                raise _DecodeError(f"{op.text} is not a {W}-bit register here")
            view = self._vv[eb][op.num, :n]
            upper = self.vu[op.num, W // 32:] if W < 512 else None
            zero = op.zero

            def write(r, lanes):
                if lanes is None:
                    view[...] = r
                elif zero:
                    view[...] = np.where(lanes, r, _ZERO[eb])
                else:
                    np.copyto(view, r, where=lanes)
                if upper is not None:
                    upper[...] = 0
            return write
        if op.kind == "mem":
            if op.bcst:
                raise _DecodeError("a broadcast cannot be a destination")
            if op.zero:
                raise _DecodeError("{z} on a memory destination")
            if op.bits not in (None, W):
                raise _DecodeError(f"memory operand must be {W} bits here, not {op.bits}")
            addrf, store, store_lanes = op.addr, self._store, self._store_lanes
            nbytes = W // 8

            def write(r, lanes):
                a = addrf()
                if align and a % align:
                    raise _Fault(f"misaligned {nbytes}-byte store (#GP)", a, nbytes)
                if lanes is None:
                    store(a, r)
                else:
                    store_lanes(a, eb // 8, np.ascontiguousarray(r), lanes)
            return write
        raise _DecodeError(f"expected a vector register or memory destination, got {op.text!r}")

    def _vec_dest(self, ins):
        op = ins.ops[0] if ins.ops else None
        if op is None or op.kind != "vec":
            raise _DecodeError(f"the destination of {ins.mnemonic} must be a vector register")
        return op

    def _nops(self, ins, *counts):
        if len(ins.ops) not in counts:
            raise _DecodeError(f"{ins.mnemonic} takes {' or '.join(map(str, counts))} operands,"
                               f" got {len(ins.ops)}")

    def _imm(self, op):
        if op.kind != "imm":
            raise _DecodeError(f"expected an immediate, got {op.text!r}")
        return op.value

    def _ew(self, ins, eb, nsrc, compute, *, rmw=False, imm=False, allow_bcst=True,
            allow_mask=True, allow_mem=True, vex_only=False):
        """Element-wise vector instruction: dst, src1[, src2[, src3]][, imm]."""
        self._nops(ins, 1 + nsrc + int(imm))
        if vex_only:
            _check_vex(ins)
            allow_bcst = allow_mask = False
        d = self._vec_dest(ins)
        if d.mask is not None and not allow_mask:
            raise _DecodeError(f"{ins.mnemonic} takes no write mask")
        W = d.bits
        srcs = []
        for k, op in enumerate(ins.ops[1:1 + nsrc]):
            last = k == nsrc - 1
            srcs.append(self._src(op, W, eb, allow_mem=allow_mem and last,
                                  allow_bcst=allow_bcst and last))
        if imm:
            compute = compute(self._imm(ins.ops[-1]))
        if rmw:
            srcs.insert(0, self._src(_Operand("vec", d.text, num=d.num, bits=W), W, eb))
        write = self._writer(d, W, eb)
        lanes_fn = self._lanes_fn(d, W // eb)
        return _ew_closure(srcs, compute, write, lanes_fn)


def _check_vex(ins):
    """VEX-only forms: no zmm, no xmm16-31/ymm16-31, no masks, no broadcasts."""
    for op in ins.ops:
        if op.kind == "vec" and (op.bits > 256 or op.num > 15):
            raise _DecodeError(f"{ins.mnemonic} has only a VEX encoding: {op.text} is not "
                               f"encodable (xmm/ymm 0-15 only)")
        if op.mask is not None or op.bcst:
            raise _DecodeError(f"{ins.mnemonic} has only a VEX encoding: no masks or "
                               f"broadcasts")


def _ew_closure(srcs, compute, write, lanes_fn):
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


def _check_float_environment():
    # The emulator's float32 arithmetic is numpy's: it must not flush subnormals (MXCSR FTZ/DAZ).
    tiny = np.array([1e-38], np.float32)
    if (tiny * np.float32(0.01))[0] == 0 or (np.array([1e-45], np.float32) + 0)[0] == 0:
        raise EmulationError("this process flushes subnormal floats (MXCSR FTZ/DAZ set): the "
                             "emulator's IEEE arithmetic would be wrong")


# ---------------------------------------------------------------------------------------------
# handlers: packed floating point


for _name, _uf in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                   ("div", np.divide)):
    for _sfx, _eb in (("ps", 32), ("pd", 64)):
        _handles(f"v{_name}{_sfx}")(
            lambda self, ins, _c=_fp_binop(_uf, _eb), _eb=_eb: self._ew(ins, _eb, 2, _c))
for _sfx, _eb in (("ps", 32), ("pd", 64)):
    _handles(f"vmax{_sfx}")(lambda self, ins, _c=_fp_max(_eb), _eb=_eb: self._ew(ins, _eb, 2, _c))
    _handles(f"vmin{_sfx}")(lambda self, ins, _c=_fp_min(_eb), _eb=_eb: self._ew(ins, _eb, 2, _c))
    _handles(f"vscalef{_sfx}")(
        lambda self, ins, _c=_scalef(_eb), _eb=_eb: self._ew(ins, _eb, 2, _c))
    for _neg in (False, True):
        for _order in ("132", "213", "231"):
            _handles(f"vf{'n' if _neg else ''}madd{_order}{_sfx}")(
                lambda self, ins, _c=_fma(_eb, _order, _neg), _eb=_eb:
                self._ew(ins, _eb, 2, _c, rmw=True))


@_handles("vrndscaleps")
def _h_vrndscaleps(self, ins):
    return self._ew(ins, 32, 1, lambda imm: _round_imm(32, imm, True), imm=True)


@_handles("vroundps")
def _h_vroundps(self, ins):
    return self._ew(ins, 32, 1, lambda imm: _round_imm(32, imm, False), imm=True,
                    vex_only=True)


# bitwise and integer lanes
_handles("vandps", "vpandd", "vpand")(lambda self, ins: self._ew(
    ins, 32, 2, np.bitwise_and, vex_only=ins.mnemonic == "vpand"))
_handles("vorps", "vpord", "vpor")(lambda self, ins: self._ew(
    ins, 32, 2, np.bitwise_or, vex_only=ins.mnemonic == "vpor"))
_handles("vxorps", "vpxord")(lambda self, ins: self._ew(ins, 32, 2, np.bitwise_xor))
_handles("vandnps")(lambda self, ins: self._ew(ins, 32, 2, lambda a, b: ~a & b))
_handles("vpaddd")(lambda self, ins: self._ew(ins, 32, 2, np.add))
_handles("vpsubd")(lambda self, ins: self._ew(ins, 32, 2, np.subtract))
_handles("vpaddq")(lambda self, ins: self._ew(ins, 64, 2, np.add))
_handles("vpcmpgtd")(lambda self, ins: self._ew(
    ins, 32, 2, lambda a, b: np.where(a.view(np.int32) > b.view(np.int32), _ONES[32], _ZERO[32]),
    vex_only=True))


def _shift(kind, eb):
    width = eb

    def make(imm):
        count = imm & 0xFF
        if kind == "sra":
            c = np.int64(min(count, width - 1)) if eb == 64 else np.int32(min(count, width - 1))
            return lambda a: (a.view(_I[eb]) >> c).view(_U[eb])
        if count >= width:
            return lambda a: np.zeros(a.shape, _U[eb])
        c = _U[eb](count)
        if kind == "sll":
            return lambda a: a << c
        return lambda a: a >> c
    return make


for _mn, _kind, _eb in (("vpslld", "sll", 32), ("vpsrld", "srl", 32), ("vpsllq", "sll", 64),
                        ("vpsraq", "sra", 64)):
    _handles(_mn)(lambda self, ins, _k=_kind, _eb=_eb: self._ew(
        ins, _eb, 1, _shift(_k, _eb), imm=True))


@_handles("vpternlogd")
def _h_vpternlogd(self, ins):
    def make(imm):
        terms = [i for i in range(8) if imm >> i & 1]

        def compute(a, b, c):
            r = np.zeros(np.broadcast_shapes(a.shape, b.shape, c.shape), np.uint32)
            for i in terms:
                r |= (a if i & 4 else ~a) & (b if i & 2 else ~b) & (c if i & 1 else ~c)
            return r
        return compute
    return self._ew(ins, 32, 2, make, rmw=True, imm=True)


@_handles("vblendvps")
def _h_vblendvps(self, ins):
    self._nops(ins, 4)
    _check_vex(ins)
    d = self._vec_dest(ins)
    W = d.bits
    ga = self._src(ins.ops[1], W, 32, allow_mem=False)
    gb = self._src(ins.ops[2], W, 32, allow_bcst=False)
    gm = self._src(ins.ops[3], W, 32, allow_mem=False)
    write = self._writer(d, W, 32)

    def run():
        write(np.where(gm().view(np.int32) < 0, gb(), ga()), None)
    return run


@_handles("vblendmps")
def _h_vblendmps(self, ins):
    """d{k}, a, b: k ? b : a; {z}: k ? b : 0. Without a mask every lane is b."""
    self._nops(ins, 3)
    d = self._vec_dest(ins)
    W = d.bits
    ga = self._src(ins.ops[1], W, 32, allow_mem=False)
    gb = self._src(ins.ops[2], W, 32)
    plain = _Operand("vec", d.text, num=d.num, bits=W)
    write = self._writer(plain, W, 32)
    lanes_fn = self._lanes_fn(d, W // 32)
    zero = d.zero
    if lanes_fn is None:
        return lambda: write(np.array(gb()), None)

    def run():
        L = lanes_fn()
        write(np.where(L, gb(L), _ZERO[32] if zero else ga()), None)
    return run


# conversions
_handles("vcvtps2dq")(lambda self, ins: self._ew(ins, 32, 1, _cvtps2dq))
_handles("vcvtdq2ps")(lambda self, ins: self._ew(
    ins, 32, 1, lambda a: a.view(np.int32).astype(np.float32).view(np.uint32)))


@_handles("vcvtps2pd")
def _h_vcvtps2pd(self, ins):
    self._nops(ins, 2)
    d = self._vec_dest(ins)
    W = d.bits
    s = ins.ops[1]
    if s.kind == "vec" and W == 128:  # vcvtps2pd xmm, xmm reads the low two lanes
        if s.bits != 128 or s.mask is not None:
            raise _DecodeError("vcvtps2pd xmm takes an xmm source")
        low = self.vu[s.num, :2]
        g = lambda lanes=None: low  # noqa: E731
    else:
        g = self._src(s, W // 2, 32)
    write = self._writer(d, W, 64)
    lanes_fn = self._lanes_fn(d, W // 64)
    return _ew_closure([g], _cvtps2pd, write, lanes_fn)


@_handles("vcvtpd2ps")
def _h_vcvtpd2ps(self, ins):
    self._nops(ins, 2)
    d, s = self._vec_dest(ins), ins.ops[1]
    W = s.bits if s.kind == "vec" else (s.bits if not s.bcst else None)
    if W is None:
        raise _DecodeError("vcvtpd2ps needs a sized source (XMMWORD/YMMWORD/ZMMWORD PTR)")
    if d.bits != max(W // 2, 128):
        raise _DecodeError(f"vcvtpd2ps of {W} bits writes {max(W // 2, 128)} bits")
    g = self._src(s, W, 64)
    n = W // 64
    write = self._writer(d, d.bits, 32)
    lanes_fn = self._lanes_fn(d, n)
    pad = d.bits // 32 - n
    tail = self.vu[d.num, n:]

    def compute(a):
        r = _cvtpd2ps(a)
        return np.concatenate((r, np.zeros(pad, np.uint32))) if pad else r
    if lanes_fn is None:
        return lambda: write(compute(g()), None)

    def run():
        L = lanes_fn()
        write(compute(g(L)), np.concatenate((L, np.zeros(pad, bool))) if pad else L)
        tail[...] = 0  # DEST[127:64] of an xmm result is zeroed whatever the mask
    return run


# compares
@_handles("vcmpps")
def _h_vcmpps(self, ins):
    self._nops(ins, 4)
    d = ins.ops[0]
    if not 0 <= self._imm(ins.ops[3]) <= 31:
        raise _DecodeError("the vcmpps predicate must be 0..31")
    pred = _CMP[ins.ops[3].value & 15]
    if d.kind == "vec":
        _check_vex(ins)
        return self._ew(_Ins(ins.index, ins.mnemonic, ins.ops[:3], ins.line, ins.text),
                        32, 2, lambda a, b: np.where(pred(a.view(np.float32),
                                                          b.view(np.float32)),
                                                     _ONES[32], _ZERO[32]))
    if d.kind != "k":
        raise _DecodeError("vcmpps writes a vector or a k register")
    if d.zero:
        raise _DecodeError("{z} on a k destination")
    W = ins.ops[1].bits if ins.ops[1].kind == "vec" else None
    if W is None:
        raise _DecodeError("the first source of vcmpps must be a register")
    n = W // 32
    g1 = self._src(ins.ops[1], W, 32, allow_mem=False)
    g2 = self._src(ins.ops[2], W, 32)
    lanes_fn = self._lanes_fn(d, n)
    kr, kd = self.kregs, d.num

    def run():
        L = None if lanes_fn is None else lanes_fn()
        c = pred(g1().view(np.float32), g2(L).view(np.float32))
        if L is not None:
            c = c & L
        kr[kd] = _bits_to_int(c)
    return run


# moves, loads, stores
@_handles("vmovups", "vmovaps", "vmovntps")
def _h_vmov(self, ins):
    self._nops(ins, 2)
    d, s = ins.ops
    aligned = ins.mnemonic != "vmovups"
    if d.kind == "mem":  # store
        if s.kind != "vec" or s.mask is not None:
            raise _DecodeError("a store's source must be a vector register")
        W = s.bits
        if ins.mnemonic == "vmovntps" and d.mask is not None:
            raise _DecodeError("vmovntps takes no write mask")
        g = self._src(s, W, 32)
        write = self._writer(d, W, 32, align=W // 8 if aligned else None)
        lanes_fn = self._lanes_fn(d, W // 32)
        if lanes_fn is None:
            return lambda: write(g(), None)
        return lambda: write(g(), lanes_fn())
    if ins.mnemonic == "vmovntps":
        raise _DecodeError("vmovntps only stores (vmovntps m, v)")
    d = self._vec_dest(ins)
    W = d.bits
    if s.kind == "mem":
        if s.bcst:
            raise _DecodeError(f"{ins.mnemonic} takes no broadcast")
        if s.bits not in (None, W):
            raise _DecodeError(f"memory operand must be {W} bits here")
        g = self._mem_getter(s, 4, W // 32, np.uint32, masked=True,
                             align=W // 8 if aligned else None)
    else:
        g = self._src(s, W, 32)
    write = self._writer(d, W, 32)
    lanes_fn = self._lanes_fn(d, W // 32)
    return _ew_closure([g], lambda a: a, write, lanes_fn)


@_handles("vmaskmovps")
def _h_vmaskmovps(self, ins):
    self._nops(ins, 3)
    a, b, c = ins.ops
    if a.kind == "vec":  # load: a = lanes of [c] where sign(b)
        if c.kind != "mem" or b.kind != "vec":
            raise _DecodeError("vmaskmovps load is vmaskmovps v, vmask, m")
        W = a.bits
        gm = self._src(b, W, 32, allow_mem=False)
        if c.bits not in (None, W) or c.bcst:
            raise _DecodeError(f"memory operand must be {W} bits here")
        addrf, load_lanes, n = c.addr, self._load_lanes, W // 32
        write = self._writer(_Operand("vec", a.text, num=a.num, bits=W), W, 32)

        def run():
            L = gm().view(np.int32) < 0
            write(np.where(L, load_lanes(addrf(), 4, n, L, np.uint32), _ZERO[32]), None)
        return run
    if a.kind != "mem" or b.kind != "vec" or c.kind != "vec":
        raise _DecodeError("vmaskmovps store is vmaskmovps m, vmask, v")
    W = c.bits
    gm = self._src(b, W, 32, allow_mem=False)
    gd = self._src(c, W, 32, allow_mem=False)
    if a.bits not in (None, W) or a.mask is not None or a.bcst:
        raise _DecodeError(f"memory operand must be {W} bits here")
    addrf, store_lanes = a.addr, self._store_lanes

    def run():
        store_lanes(addrf(), 4, gd(), gm().view(np.int32) < 0)
    return run


@_handles("vbroadcastss")
def _h_vbroadcastss(self, ins):
    self._nops(ins, 2)
    d = self._vec_dest(ins)
    s = ins.ops[1]
    W, n = d.bits, d.bits // 32
    if s.kind == "vec":
        if s.bits != 128:
            raise _DecodeError("vbroadcastss broadcasts from an xmm register")
        view = self.vu[s.num, :1]
        g = lambda lanes=None: np.repeat(view, n)  # noqa: E731
    elif s.kind == "mem":
        if s.bits not in (None, 32) or s.bcst:
            raise _DecodeError("vbroadcastss reads a DWORD")
        g = self._mem_getter(s, 4, 1, np.uint32, n_out=n)
    else:
        raise _DecodeError("vbroadcastss reads a DWORD or an xmm register")
    write = self._writer(d, W, 32)
    lanes_fn = self._lanes_fn(d, n)
    if lanes_fn is None:
        return lambda: write(g(), None)
    return lambda: write(g(), lanes_fn())


def _scalar_move(self, ins, eb):
    self._nops(ins, 2)
    d, s = ins.ops
    dt = _U[eb]
    if d.kind == "vec":  # load: zero the rest
        if d.bits != 128 or s.kind != "mem" or s.bits not in (None, eb) or s.bcst or d.mask:
            raise _DecodeError(f"{ins.mnemonic} loads as {ins.mnemonic} xmm, m{eb}")
        g = self._mem_getter(s, eb // 8, 1, dt)
        view = self._vv[eb][d.num]
        upper = self.vu[d.num]

        def run():
            v = g()[0]
            upper[...] = 0
            view[0] = v
        return run
    if d.kind != "mem" or s.kind != "vec" or s.bits != 128 or d.bits not in (None, eb) \
            or d.mask is not None:
        raise _DecodeError(f"{ins.mnemonic} stores as {ins.mnemonic} m{eb}, xmm")
    view = self._vv[eb][s.num, :1]
    addrf, store = d.addr, self._store
    return lambda: store(addrf(), view)


_handles("vmovss")(lambda self, ins: _scalar_move(self, ins, 32))
_handles("vmovsd")(lambda self, ins: _scalar_move(self, ins, 64))


@_handles("vmovd")
def _h_vmovd(self, ins):
    self._nops(ins, 2)
    d, s = ins.ops
    g = self.gp
    if d.kind == "vec" and s.kind == "gp" and d.bits == 128 and s.bits == 32:
        row, n = self.vu[d.num], s.num

        def run():
            row[...] = 0
            row[0] = g[n] & M32
        return run
    if d.kind == "gp" and s.kind == "vec" and d.bits == 32 and s.bits == 128:
        lane, n = self.vu[s.num, :1], d.num

        def run():
            g[n] = int(lane[0])
        return run
    raise _DecodeError("vmovd is vmovd xmm, r32 or vmovd r32, xmm")


# width changes and shuffles
def _extract(self, ins, W_src, W_out, eb):
    self._nops(ins, 3)
    d, s = ins.ops[0], ins.ops[1]
    if s.kind != "vec" or s.bits != W_src:
        raise _DecodeError(f"the source of {ins.mnemonic} must be a {W_src}-bit register")
    chunks = W_src // W_out
    chunk = self._imm(ins.ops[2]) & (chunks - 1)
    n = W_out // eb
    view = self._vv[eb][s.num, chunk * n:(chunk + 1) * n]
    if d.kind == "vec" and d.bits != W_out:
        raise _DecodeError(f"{ins.mnemonic} writes a {W_out}-bit register")
    write = self._writer(d, W_out, eb)
    lanes_fn = self._lanes_fn(d, n)
    if lanes_fn is None:
        return lambda: write(view.copy(), None)
    return lambda: write(view.copy(), lanes_fn())


@_handles("vextractf128")
def _h_vextractf128(self, ins):
    if ins.ops[0].mask is not None:
        raise _DecodeError("vextractf128 takes no write mask")
    return _extract(self, ins, 256, 128, 32)


@_handles("vextractf32x4")
def _h_vextractf32x4(self, ins):
    if ins.ops[1].kind != "vec" or ins.ops[1].bits not in (256, 512):
        raise _DecodeError("vextractf32x4 extracts from a ymm or zmm register")
    return _extract(self, ins, ins.ops[1].bits, 128, 32)


_handles("vextractf64x4")(lambda self, ins: _extract(self, ins, 512, 256, 64))
_handles("vextractf32x8")(lambda self, ins: _extract(self, ins, 512, 256, 32))


def _permute(self, ins, eb, nsrc, index_of):
    """A shuffle with an immediate: result lane i = concat(sources)[index[i]]."""
    self._nops(ins, nsrc + 2)
    d = self._vec_dest(ins)
    W = d.bits
    n = W // eb
    idx = np.array(index_of(self._imm(ins.ops[-1]), n), np.intp)
    srcs = [self._src(op, W, eb, allow_mem=(k == nsrc - 1), elementwise=False,
                      allow_bcst=False) for k, op in enumerate(ins.ops[1:1 + nsrc])]
    write = self._writer(d, W, eb)
    lanes_fn = self._lanes_fn(d, n)
    if nsrc == 1:
        compute = lambda a: a[idx]  # noqa: E731
    else:
        compute = lambda a, b: np.concatenate((a, b))[idx]  # noqa: E731
    return _ew_closure(srcs, compute, write, lanes_fn)


@_handles("vpermilps")
def _h_vpermilps(self, ins):
    return _permute(self, ins, 32, 1, lambda imm, n: [
        4 * (i // 4) + ((imm >> 2 * (i % 4)) & 3) for i in range(n)])


@_handles("vpermilpd")
def _h_vpermilpd(self, ins):
    return _permute(self, ins, 64, 1, lambda imm, n: [
        2 * (i // 2) + ((imm >> i) & 1) for i in range(n)])


@_handles("vshufps")
def _h_vshufps(self, ins):
    def index(imm, n):
        out = []
        for i in range(n):
            base, j = 4 * (i // 4), i % 4
            sel = (imm >> 2 * j) & 3
            out.append(base + sel + (n if j >= 2 else 0))
        return out
    return _permute(self, ins, 32, 2, index)


@_handles("vmovshdup")
def _h_vmovshdup(self, ins):
    self._nops(ins, 2)
    ins2 = _Ins(ins.index, ins.mnemonic, ins.ops + [_Operand("imm", "0")], ins.line, ins.text)
    return _permute(self, ins2, 32, 1, lambda imm, n: [i | 1 for i in range(n)])


@_handles("vunpckhpd")
def _h_vunpckhpd(self, ins):
    self._nops(ins, 3)
    ins2 = _Ins(ins.index, ins.mnemonic, ins.ops + [_Operand("imm", "0")], ins.line, ins.text)
    return _permute(self, ins2, 64, 2, lambda imm, n: [
        2 * (i // 2) + 1 + (n if i % 2 else 0) for i in range(n)])


@_handles("vmovhlps")
def _h_vmovhlps(self, ins):
    self._nops(ins, 3)
    if any(op.kind != "vec" or op.bits != 128 for op in ins.ops) or ins.ops[0].mask:
        raise _DecodeError("vmovhlps is vmovhlps xmm, xmm, xmm")
    ins2 = _Ins(ins.index, ins.mnemonic, ins.ops + [_Operand("imm", "0")], ins.line, ins.text)
    # DEST[63:0] = SRC2[127:64]; DEST[127:64] = SRC1[127:64]
    return _permute(self, ins2, 64, 2, lambda imm, n: [3, 1])


# scalar float32 / float64
def _scalar_op(self, ins, eb, compute, out_eb=None, src_eb=None):
    """d, s1, s2: the low element from compute(s1[0], s2[0]), the rest of 128 bits from s1."""
    self._nops(ins, 3)
    d, s1, s2 = ins.ops
    out_eb = out_eb or eb
    src_eb = src_eb or eb
    if d.kind != "vec" or d.bits != 128 or d.mask is not None:
        raise _DecodeError(f"{ins.mnemonic} writes an xmm register")
    if s1.kind != "vec" or s1.bits != 128:
        raise _DecodeError(f"the first source of {ins.mnemonic} is an xmm register")
    rest = self._vv[out_eb][s1.num, :128 // out_eb]
    if s2.kind == "vec":
        if s2.bits != 128:
            raise _DecodeError(f"the second source of {ins.mnemonic} is an xmm register")
        v2 = self._vv[src_eb][s2.num, :1]
        g2 = lambda: v2  # noqa: E731
    elif s2.kind == "mem" and s2.bits in (None, src_eb) and not s2.bcst:
        g2 = self._mem_getter(s2, src_eb // 8, 1, _U[src_eb])
    else:
        raise _DecodeError(f"the second source of {ins.mnemonic} is xmm or m{src_eb}")
    first = self._vv[out_eb][s1.num, :1]
    row = self._vv[out_eb][d.num]
    full = self.vu[d.num]

    def run():
        low = compute(first, g2()) if src_eb == out_eb else compute(g2())
        keep = rest.copy()
        full[...] = 0
        row[:128 // out_eb] = keep
        row[0] = low[0]
    return run


for _name, _c32, _c64 in (
        ("add", _fp_binop(np.add, 32), _fp_binop(np.add, 64)),
        ("sub", _fp_binop(np.subtract, 32), _fp_binop(np.subtract, 64)),
        ("mul", _fp_binop(np.multiply, 32), _fp_binop(np.multiply, 64)),
        ("div", _fp_binop(np.divide, 32), _fp_binop(np.divide, 64)),
        ("max", _fp_max(32), _fp_max(64)),
        ("min", _fp_min(32), _fp_min(64))):
    _handles(f"v{_name}ss")(lambda self, ins, _c=_c32: _scalar_op(self, ins, 32, _c))
    _handles(f"v{_name}sd")(lambda self, ins, _c=_c64: _scalar_op(self, ins, 64, _c))
_handles("vcvtss2sd")(lambda self, ins: _scalar_op(self, ins, 64, _cvtps2pd, 64, 32))
_handles("vcvtsd2ss")(lambda self, ins: _scalar_op(self, ins, 32, _cvtpd2ps, 32, 64))


@_handles("vucomiss")
def _h_vucomiss(self, ins):
    self._nops(ins, 2)
    a, b = ins.ops
    if a.kind != "vec" or a.bits != 128:
        raise _DecodeError("vucomiss compares xmm with xmm or m32")
    va = self.vu[a.num, :1].view(np.float32)
    if b.kind == "vec" and b.bits == 128:
        vb = self.vu[b.num, :1].view(np.float32)
        gb = lambda: vb  # noqa: E731
    elif b.kind == "mem" and b.bits in (None, 32) and not b.bcst:
        g = self._mem_getter(b, 4, 1, np.uint32)
        gb = lambda: g().view(np.float32)  # noqa: E731
    else:
        raise _DecodeError("vucomiss compares xmm with xmm or m32")
    fl = self.flags

    def run():
        x, y = float(va[0]), float(gb()[0])
        if x != x or y != y:
            fl[:] = [1, 1, 0, 0, 1]
        elif x < y:
            fl[:] = [1, 0, 0, 0, 0]
        elif x == y:
            fl[:] = [0, 1, 0, 0, 0]
        else:
            fl[:] = [0, 0, 0, 0, 0]
    return run


@_handles("vmovmskps")
def _h_vmovmskps(self, ins):
    self._nops(ins, 2)
    d, s = ins.ops
    if d.kind != "gp" or s.kind != "vec" or s.bits not in (128, 256):
        raise _DecodeError("vmovmskps is vmovmskps r32/r64, xmm/ymm")
    view, g, n = self.vu[s.num, :s.bits // 32].view(np.int32), self.gp, d.num

    def run():
        g[n] = _bits_to_int(view < 0)
    return run


@_handles("sfence", "lfence", "mfence")
def _h_fence(self, ins):
    """Memory ordering only: nothing to do in a single-threaded emulator."""
    self._nops(ins, 0)
    return lambda: None


@_handles("vzeroupper")
def _h_vzeroupper(self, ins):
    self._nops(ins, 0)
    upper = self.vu[:16, 4:]

    def run():
        upper[...] = 0
    return run


# mask registers
def _kmov(self, ins, bits):
    self._nops(ins, 2)
    d, s = ins.ops
    kr, g, mask = self.kregs, self.gp, (1 << bits) - 1
    if d.kind == "k" and d.mask is None:
        if s.kind == "gp" and s.bits == 32:
            n = s.num
            kd = d.num

            def run():
                kr[kd] = g[n] & mask
            return run
        if s.kind == "k":
            ks, kd = s.num, d.num

            def run():
                kr[kd] = kr[ks] & mask
            return run
        if s.kind == "mem" and s.bits in (None, bits) and not s.bcst:
            addrf, read, kd = s.addr, self._read_int, d.num

            def run():
                kr[kd] = read(addrf(), bits // 8)
            return run
    if s.kind == "k" and d.kind == "gp" and d.bits == 32:
        ks, n = s.num, d.num

        def run():
            g[n] = kr[ks] & mask
        return run
    if s.kind == "k" and d.kind == "mem" and d.bits in (None, bits):
        ks, addrf, write = s.num, d.addr, self._write_int

        def run():
            write(addrf(), bits // 8, kr[ks])
        return run
    raise _DecodeError(f"{ins.mnemonic} is {ins.mnemonic} k, r32/m{bits} (or back)")


_handles("kmovw")(lambda self, ins: _kmov(self, ins, 16))
_handles("kmovd")(lambda self, ins: _kmov(self, ins, 32))


@_handles("kortestw")
def _h_kortestw(self, ins):
    self._nops(ins, 2)
    a, b = ins.ops
    if a.kind != "k" or b.kind != "k":
        raise _DecodeError("kortestw takes two k registers")
    kr, fl, i, j = self.kregs, self.flags, a.num, b.num

    def run():
        v = (kr[i] | kr[j]) & 0xFFFF
        fl[:] = [int(v == 0xFFFF), int(v == 0), 0, 0, 0]
    return run


# ---------------------------------------------------------------------------------------------
# handlers: general purpose


def _gp_reader(self, op, bits):
    """A getter for an integer source of `bits` bits (register, memory or immediate)."""
    g = self.gp
    mask = (1 << bits) - 1
    if op.kind == "gp":
        if op.bits != bits:
            raise _DecodeError(f"{op.text} is not a {bits}-bit register here")
        n = op.num
        if bits == 64:
            return lambda: g[n]
        return lambda: g[n] & mask
    if op.kind == "imm":
        if not -(1 << 31) <= op.value < (1 << 32) and not (bits == 64 and op.value < (1 << 64)):
            raise _DecodeError(f"immediate {op.value} out of range")
        v = op.value & mask
        return lambda: v
    if op.kind == "mem":
        if op.bits not in (None, bits) or op.bcst or op.mask is not None:
            raise _DecodeError(f"memory operand must be {bits} bits here")
        addrf, read, size = op.addr, self._read_int, bits // 8
        return lambda: read(addrf(), size)
    raise _DecodeError(f"expected a register, memory or immediate, got {op.text!r}")


def _gp_dest(self, ins):
    d = ins.ops[0]
    if d.kind != "gp" or d.mask is not None:
        raise _DecodeError(f"{ins.mnemonic} writes a general-purpose register here")
    return d


def _set_logic_flags(fl, r, bits):
    fl[0] = 0
    fl[1] = int(r == 0)
    fl[2] = (r >> (bits - 1)) & 1
    fl[3] = 0
    fl[4] = _PARITY[r & 0xFF]


@_handles("mov")
def _h_mov(self, ins):
    self._nops(ins, 2)
    d, s = ins.ops
    g = self.gp
    if d.kind == "gp":
        src = _gp_reader(self, s, d.bits)
        n = d.num

        def run():
            g[n] = src()
        return run
    if d.kind == "mem":
        bits = d.bits or (s.bits if s.kind == "gp" else None)
        if bits not in (8, 16, 32, 64):
            raise _DecodeError("mov to memory needs a size (BYTE/WORD/DWORD/QWORD PTR)")
        if s.kind == "mem":
            raise _DecodeError("mov cannot copy memory to memory")
        src = _gp_reader(self, s, bits) if s.kind != "gp" or s.bits == bits else None
        if src is None:
            raise _DecodeError("operand sizes differ")
        addrf, write, size = d.addr, self._write_int, bits // 8

        def run():
            write(addrf(), size, src())
        return run
    raise _DecodeError("mov writes a register or memory")


@_handles("lea")
def _h_lea(self, ins):
    self._nops(ins, 2)
    d = _gp_dest(self, ins)
    s = ins.ops[1]
    if s.kind != "mem" or s.bcst:
        raise _DecodeError("lea takes an address")
    g, n, addrf, mask = self.gp, d.num, s.addr, (1 << d.bits) - 1

    def run():
        g[n] = addrf() & mask
    return run


def _alu(kind):
    def handler(self, ins):
        self._nops(ins, 2)
        d = _gp_dest(self, ins)
        bits = d.bits
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        a_get = _gp_reader(self, d, bits)
        b_get = _gp_reader(self, ins.ops[1], bits)
        g, fl, n = self.gp, self.flags, d.num
        par = _PARITY
        write = kind not in ("cmp", "test")

        if kind in ("add",):
            def run():
                a, b = a_get(), b_get()
                full = a + b
                r = full & mask
                fl[0] = int(full > mask)
                fl[1] = int(r == 0)
                fl[2] = int(r & sign != 0)
                fl[3] = int((a ^ r) & (b ^ r) & sign != 0)
                fl[4] = par[r & 0xFF]
                g[n] = r
        elif kind in ("sub", "cmp"):
            def run():
                a, b = a_get(), b_get()
                r = (a - b) & mask
                fl[0] = int(a < b)
                fl[1] = int(r == 0)
                fl[2] = int(r & sign != 0)
                fl[3] = int((a ^ b) & (a ^ r) & sign != 0)
                fl[4] = par[r & 0xFF]
                if write:
                    g[n] = r
        elif kind in ("and", "or", "xor", "test"):
            op = {"and": int.__and__, "test": int.__and__, "or": int.__or__,
                  "xor": int.__xor__}[kind]

            def run():
                r = op(a_get(), b_get())
                _set_logic_flags(fl, r, bits)
                if write:
                    g[n] = r
        elif kind == "imul":
            if ins.ops[1].kind == "imm":
                raise _DecodeError("imul r, imm is not supported (use the 2-operand r, r/m)")

            def run():
                a, b = a_get(), b_get()
                sa = a - (a & sign) * 2
                sb = b - (b & sign) * 2
                prod = sa * sb
                r = prod & mask
                sr = r - (r & sign) * 2
                fl[0] = fl[3] = int(sr != prod)
                fl[1] = int(r == 0)
                fl[2] = int(r & sign != 0)
                fl[4] = par[r & 0xFF]
                g[n] = r
        return run
    return handler


for _k in ("add", "sub", "cmp", "and", "or", "xor", "test", "imul"):
    _handles(_k)(_alu(_k))


def _shift_gp(kind):
    def handler(self, ins):
        self._nops(ins, 2)
        d = _gp_dest(self, ins)
        bits = d.bits
        count = self._imm(ins.ops[1]) & (63 if bits == 64 else 31)
        mask, sign = (1 << bits) - 1, 1 << (bits - 1)
        g, fl, n, par = self.gp, self.flags, d.num, _PARITY

        def run():
            a = g[n] & mask
            if count == 0:
                g[n] = a
                return
            if kind == "shl":
                r = (a << count) & mask
                cf = (a >> (bits - count)) & 1
                of = int(bool(r & sign)) ^ cf
            else:
                r = a >> count
                cf = (a >> (count - 1)) & 1
                of = int(bool(a & sign))
            fl[0], fl[1], fl[2], fl[3], fl[4] = cf, int(r == 0), int(r & sign != 0), of, \
                par[r & 0xFF]
            g[n] = r
        return run
    return handler


_handles("shl")(_shift_gp("shl"))
_handles("shr")(_shift_gp("shr"))


@_handles("neg")
def _h_neg(self, ins):
    self._nops(ins, 1)
    d = _gp_dest(self, ins)
    bits = d.bits
    mask, sign = (1 << bits) - 1, 1 << (bits - 1)
    g, fl, n, par = self.gp, self.flags, d.num, _PARITY

    def run():
        a = g[n] & mask
        r = (-a) & mask
        fl[0], fl[1], fl[2], fl[3], fl[4] = int(a != 0), int(r == 0), int(r & sign != 0), \
            int(a == sign), par[r & 0xFF]
        g[n] = r
    return run


_CONDITIONS = {
    "b": lambda f: f[0], "c": lambda f: f[0], "nae": lambda f: f[0],
    "ae": lambda f: not f[0], "nb": lambda f: not f[0], "nc": lambda f: not f[0],
    "a": lambda f: not f[0] and not f[1], "nbe": lambda f: not f[0] and not f[1],
    "be": lambda f: f[0] or f[1], "na": lambda f: f[0] or f[1],
    "e": lambda f: f[1], "z": lambda f: f[1],
    "ne": lambda f: not f[1], "nz": lambda f: not f[1],
    "p": lambda f: f[4], "pe": lambda f: f[4],
    "np": lambda f: not f[4], "po": lambda f: not f[4],
    "s": lambda f: f[2], "ns": lambda f: not f[2],
    "o": lambda f: f[3], "no": lambda f: not f[3],
    "l": lambda f: f[2] != f[3], "ge": lambda f: f[2] == f[3],
    "le": lambda f: f[1] or f[2] != f[3], "g": lambda f: not f[1] and f[2] == f[3],
}


def _cmov(cond):
    def handler(self, ins):
        self._nops(ins, 2)
        d = _gp_dest(self, ins)
        src = _gp_reader(self, ins.ops[1], d.bits)
        g, fl, n, mask = self.gp, self.flags, d.num, (1 << d.bits) - 1

        def run():
            v = src()  # the source is read (and may fault) whatever the condition
            g[n] = v if cond(fl) else g[n] & mask  # a 32-bit cmov always zero-extends
        return run
    return handler


def _jcc(cond):
    def handler(self, ins):
        self._nops(ins, 1)
        target, fl = self._label_target(ins.ops[0]), self.flags

        def run():
            return target if cond(fl) else None
        return run
    return handler


for _c, _fn in _CONDITIONS.items():
    _handles(f"cmov{_c}")(_cmov(_fn))
    _handles(f"j{_c}")(_jcc(_fn))


@_handles("jmp")
def _h_jmp(self, ins):
    self._nops(ins, 1)
    target = self._label_target(ins.ops[0])
    return lambda: target


@_handles("push")
def _h_push(self, ins):
    self._nops(ins, 1)
    s = ins.ops[0]
    if s.kind not in ("gp", "imm") or (s.kind == "gp" and s.bits != 64):
        raise _DecodeError("push takes a 64-bit register")
    src = _gp_reader(self, s, 64)
    g, write = self.gp, self._write_int

    def run():
        v = src()
        sp = (g[RSP] - 8) & M64
        write(sp, 8, v)
        g[RSP] = sp
    return run


@_handles("pop")
def _h_pop(self, ins):
    self._nops(ins, 1)
    d = _gp_dest(self, ins)
    if d.bits != 64:
        raise _DecodeError("pop takes a 64-bit register")
    g, read, n = self.gp, self._read_int, d.num

    def run():
        sp = g[RSP]
        v = read(sp, 8)
        g[RSP] = (sp + 8) & M64
        g[n] = v
    return run


@_handles("call")
def _h_call(self, ins):
    self._nops(ins, 1)
    target = self._label_target(ins.ops[0])
    ret_addr = TEXT_BASE + 16 * (ins.index + 1)
    g, write = self.gp, self._write_int

    def run():
        sp = g[RSP]
        if sp % 16:
            raise _Fault(f"call with rsp = 0x{sp:X}, not 16-byte aligned (SysV)",
                         kind=ABIViolation)
        sp = (sp - 8) & M64
        write(sp, 8, ret_addr)
        g[RSP] = sp
        return target
    return run


@_handles("ret")
def _h_ret(self, ins):
    self._nops(ins, 0)
    g, read = self.gp, self._read_int
    n_code = len(self._ins)

    def run():
        sp = g[RSP]
        a = read(sp, 8)
        g[RSP] = (sp + 8) & M64
        if a == RETURN_SENTINEL:
            return -1
        idx, rem = divmod(a - TEXT_BASE, 16)
        if rem or not 0 <= idx <= n_code:
            raise _Fault(f"ret to 0x{a:X}, which is not a return address (stack corrupted?)")
        return idx
    return run


SUPPORTED_MNEMONICS = frozenset(_HANDLERS)
