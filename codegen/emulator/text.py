"""Parsing the assembly text softjit emits: GNU as, `.intel_syntax noprefix`.

parse_program(text, mnemonics) reads lines, labels, comments, .rept blocks, section and data
directives, and instructions with their operands (registers, sized memory with {kN}{z}{1toN}
decorations and embedded broadcasts, immediates, labels). It knows nothing of what an
instruction does: the mnemonics it accepts are the handler table's keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from softjit.codegen.emulator.errors import AsmParseError, DecodeError
from softjit.codegen.operands import GP16, GP32, GP64, PTR_WORDS, VEC_PREFIX

PTR_BITS = {word: bits for bits, word in PTR_WORDS.items()}
VEC_BITS = {prefix[0]: bits for bits, prefix in VEC_PREFIX.items()}  # "x" -> 128, ...
GP64_NUMBER = {name: number for number, name in enumerate(GP64)}
GP32_NUMBER = {name: number for number, name in enumerate(GP32)}
GP16_NUMBER = {name: number for number, name in enumerate(GP16)}
SECTIONS = ("rodata", "data", "bss")  # the data sections, in the order they are laid out

LABEL_RE = re.compile(r"^\s*([A-Za-z_.$][\w.$@]*)\s*:(?!:)")
INT_RE = re.compile(r"^[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)$")
IDENT_RE = re.compile(r"^[A-Za-z_.$][\w.$@]*$")
VEC_RE = re.compile(r"^([xyz])mm(\d+)$")
MASK_RE = re.compile(r"k[0-7]")
MEM_RE = re.compile(
    r"^(?:(BYTE|WORD|DWORD|QWORD|XMMWORD|YMMWORD|ZMMWORD)\s+(PTR|BCST)\s*)?\[([^\]]*)\]\s*(.*)$",
    re.IGNORECASE)
DECORATION_RE = re.compile(r"\{([^}]*)\}")
NARROW_REGISTERS = ("al", "cl", "dl", "bl", "sil", "dil", "spl", "bpl")
DATA_SIZES = {".byte": 1, ".short": 2, ".value": 2, ".word": 2, ".2byte": 2, ".long": 4,
              ".int": 4, ".4byte": 4, ".quad": 8, ".8byte": 8}


@dataclass
class Line:
    number: int
    text: str  # the original line
    body: str  # without comment and labels


@dataclass
class Operand:
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
    vindex: int | None = None  # a VSIB address's vector index register (gathers)
    vindex_bits: int = 0
    label: str | None = None  # a label in the address (rip-relative or absolute)
    rip: bool = False
    addr: object = None  # decoded: a zero-argument function giving the effective address
    const_addr: int | None = None  # decoded: the address when it does not depend on registers


@dataclass
class Instruction:
    index: int
    mnemonic: str
    ops: list
    line: int
    text: str


@dataclass
class Program:
    """A parsed text. labels: name -> ("text", instruction index) or (data section, offset)."""

    instructions: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    globals: set = field(default_factory=set)
    sections: dict = field(default_factory=lambda: {name: bytearray() for name in SECTIONS})


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def strip_comment(line: str) -> str:
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "#" and not quoted:
            return line[:i]
    return line


def split_operands(s: str) -> list:
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


def parse_int(s: str) -> int:
    s = s.strip()
    if not INT_RE.match(s):
        raise DecodeError(f"not an integer: {s!r}")
    return int(s, 0)


def _decorations(rest: str, op: Operand) -> None:
    """{kN}, {z} and {1toN} after an operand."""
    pos = 0
    for m in DECORATION_RE.finditer(rest):
        if rest[pos:m.start()].strip():
            raise DecodeError(f"cannot parse operand {op.text!r}")
        pos = m.end()
        d = m.group(1).strip().lower()
        if MASK_RE.fullmatch(d):
            if d == "k0":
                raise DecodeError("k0 cannot be a write mask")
            op.mask = int(d[1])
        elif d == "z":
            op.zero = True
        elif re.fullmatch(r"1to\d+", d):
            if op.kind != "mem":
                raise DecodeError(f"{{{d}}} on a register operand")
            op.bcst = True
        else:
            raise DecodeError(f"unknown operand decoration {{{d}}}")
    if rest[pos:].strip():
        raise DecodeError(f"cannot parse operand {op.text!r}")
    if op.zero and op.mask is None:
        raise DecodeError("{z} without a {k} write mask")


def parse_operand(s: str) -> Operand:
    text = s
    m = MEM_RE.match(s)
    if m:
        op = Operand("mem", text)
        if m.group(1):
            op.bits = PTR_BITS[m.group(1).upper()]
            op.bcst = m.group(2).upper() == "BCST"
        _parse_address(m.group(3), op)
        _decorations(m.group(4), op)
        return op
    head = s.split("{", 1)[0].strip()
    rest = s[len(s.split("{", 1)[0]):]
    low = head.lower()
    if low in GP64_NUMBER:
        op = Operand("gp", text, num=GP64_NUMBER[low], bits=64)
    elif low in GP32_NUMBER:
        op = Operand("gp", text, num=GP32_NUMBER[low], bits=32)
    elif low in GP16_NUMBER:
        op = Operand("gp", text, num=GP16_NUMBER[low], bits=16)
    elif VEC_RE.match(low):
        vm = VEC_RE.match(low)
        num = int(vm.group(2))
        if num > 31:
            raise DecodeError(f"no register {head}")
        op = Operand("vec", text, num=num, bits=VEC_BITS[vm.group(1)])
    elif MASK_RE.fullmatch(low):
        op = Operand("k", text, num=int(low[1]), bits=64)
    elif INT_RE.match(head):
        op = Operand("imm", text, value=int(head, 0))
    elif IDENT_RE.match(head):
        if low in NARROW_REGISTERS or re.fullmatch(r"r\d+b", low):
            raise DecodeError(f"8-bit registers are not supported: {head}")
        op = Operand("label", text, name=head)
    else:
        raise DecodeError(f"cannot parse operand {s!r}")
    _decorations(rest, op)
    return op


def _parse_address(inner: str, op: Operand) -> None:
    terms = inner.replace("-", "+-").split("+")
    for term in terms:
        t = term.strip()
        neg = False
        if t.startswith("-"):
            neg, t = True, t[1:].strip()
        if not t:
            if neg:
                raise DecodeError(f"bad address [{inner}]")
            continue
        if VEC_RE.match(t.split("*", 1)[0].strip().lower()):
            # a vector index (VSIB): xmmN / ymmN / zmmN, optionally * scale
            a, _, b = (x.strip().lower() for x in t.partition("*"))
            vm = VEC_RE.match(a)
            scale = int(b, 0) if b and INT_RE.match(b) else (1 if not b else 0)
            if neg or scale not in (1, 2, 4, 8) or op.index is not None or op.vindex is not None \
                    or int(vm.group(2)) > 31:
                raise DecodeError(f"bad vector index term {t!r} in [{inner}]")
            op.vindex, op.vindex_bits, op.scale = int(vm.group(2)), VEC_BITS[vm.group(1)], scale
        elif "*" in t:
            a, b = (x.strip().lower() for x in t.split("*", 1))
            if a in GP64_NUMBER and INT_RE.match(b):
                reg, scale = GP64_NUMBER[a], int(b, 0)
            elif b in GP64_NUMBER and INT_RE.match(a):
                reg, scale = GP64_NUMBER[b], int(a, 0)
            else:
                raise DecodeError(f"bad index term {t!r} in [{inner}]")
            if neg or scale not in (1, 2, 4, 8) or op.index is not None:
                raise DecodeError(f"bad index term {t!r} in [{inner}]")
            op.index, op.scale = reg, scale
        elif t.lower() == "rip":
            if neg or op.rip or op.base is not None:
                raise DecodeError(f"bad address [{inner}]")
            op.rip = True
        elif t.lower() in GP64_NUMBER:
            if neg:
                raise DecodeError(f"a register cannot be subtracted: [{inner}]")
            if op.base is None and not op.rip:
                op.base = GP64_NUMBER[t.lower()]
            elif op.index is None:
                op.index, op.scale = GP64_NUMBER[t.lower()], 1
            else:
                raise DecodeError(f"too many registers in [{inner}]")
        elif t.lower() in GP32_NUMBER:
            raise DecodeError(f"32-bit address registers are not supported: [{inner}]")
        elif INT_RE.match(t):
            op.disp += -int(t, 0) if neg else int(t, 0)
        elif IDENT_RE.match(t):
            if neg or op.label is not None:
                raise DecodeError(f"bad label term in [{inner}]")
            op.label = t
        else:
            raise DecodeError(f"cannot parse address [{inner}]")
    if op.vindex is not None and (op.rip or op.label is not None):
        raise DecodeError(f"a vector-indexed address takes a base register: [{inner}]")
    if op.rip and (op.index is not None):
        raise DecodeError(f"rip-relative addresses take no index: [{inner}]")
    if op.label is not None and (op.base is not None or op.index is not None):
        raise DecodeError(f"a label address cannot add registers (not position independent): "
                          f"[{inner}]")


def _expand_rept(lines: list) -> list:
    """Expand .rept N ... .endr blocks (nested), keeping each line's number."""
    out, i = [], 0
    while i < len(lines):
        ln = lines[i]
        words = ln.body.split(None, 1)
        if words and words[0] == ".rept":
            count = parse_int(words[1]) if len(words) > 1 else None
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


def parse_program(text: str, mnemonics) -> Program:
    """The instructions, labels, .globl symbols and data section bytes of text; an unknown
    mnemonic (one not in `mnemonics`) or a bad line is an AsmParseError naming the line."""
    raw = []
    for number, line in enumerate(text.splitlines(), 1):
        body = strip_comment(line).strip()
        while True:
            m = LABEL_RE.match(body)
            if not m:
                break
            raw.append(Line(number, line, m.group(1) + ":"))
            body = body[m.end():].strip()
        if body:
            raw.append(Line(number, line, body))
    try:
        lines = _expand_rept(raw)
    except DecodeError as e:
        raise AsmParseError(str(e)) from None
    program = _Parser(program=Program(), mnemonics=mnemonics)
    for ln in lines:
        try:
            program.line(ln)
        except DecodeError as e:
            raise AsmParseError(str(e), ln.number, ln.text) from None
    return program.program


@dataclass
class _Parser:
    program: Program
    mnemonics: object
    section: str = "text"  # "text", a data section, or "ignored" (.note, .comment)

    def line(self, ln: Line) -> None:
        body, program = ln.body, self.program
        if body.endswith(":") and IDENT_RE.match(body[:-1]):
            name = body[:-1]
            if self.section == "text":
                self._bind(name, ("text", len(program.instructions)))
            elif self.section in program.sections:
                self._bind(name, (self.section, len(program.sections[self.section])))
            return
        words = body.split(None, 1)
        head, rest = words[0], (words[1] if len(words) > 1 else "")
        if head.startswith("."):
            self.section = self._directive(head, rest)
            return
        if self.section != "text":
            raise DecodeError(f"instruction outside .text (in {self.section})")
        mnemonic = head.lower()
        if mnemonic not in self.mnemonics:
            raise DecodeError(f"unknown mnemonic {head!r} (the emulator supports: "
                              f"{', '.join(sorted(self.mnemonics))})")
        ops = [parse_operand(s) for s in split_operands(rest)] if rest.strip() else []
        program.instructions.append(
            Instruction(len(program.instructions), mnemonic, ops, ln.number, ln.text))

    def _bind(self, name, where):
        if name in self.program.labels:
            raise DecodeError(f"label {name} defined twice")
        self.program.labels[name] = where

    def _directive(self, head, rest) -> str:
        """Apply one directive; return the section that follows it."""
        d, section = head.lower(), self.section
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        if d == ".intel_syntax":
            if rest.strip() != "noprefix":
                raise DecodeError(".intel_syntax needs noprefix")
            return section
        if d == ".att_syntax":
            raise DecodeError("AT&T syntax is not supported")
        if d == ".text":
            return "text"
        if d in (".data", ".bss"):
            return d[1:]
        if d == ".section":
            return _section_named(args[0] if args else "")
        if d in (".globl", ".global"):
            self.program.globals.update(args)
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
            raise DecodeError(f"directive {head} in .text is not supported")
        buf = self.program.sections[section]
        if d in (".p2align", ".balign", ".align"):
            n = parse_int(args[0])
            align = 1 << n if d == ".p2align" else n
            if align <= 0 or align & (align - 1):
                raise DecodeError(f"bad alignment {rest}")
            buf.extend(b"\0" * (align_up(len(buf), align) - len(buf)))
            return section
        if d in DATA_SIZES:
            size = DATA_SIZES[d]
            if section == "bss":
                raise DecodeError("data in .bss")
            for a in args:
                buf.extend((parse_int(a) & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
            return section
        if d in (".float", ".single", ".double"):
            dt = "<f4" if d != ".double" else "<f8"
            for a in args:
                buf.extend(np.array(float(a), dt).tobytes())
            return section
        if d in (".zero", ".skip", ".space"):
            fill = parse_int(args[1]) & 0xFF if len(args) > 1 else 0
            buf.extend(bytes([fill]) * parse_int(args[0]))
            return section
        raise DecodeError(f"unsupported directive {head}")


def _section_named(name: str) -> str:
    if name == ".text" or name.startswith(".text."):
        return "text"
    for section in SECTIONS:
        if name.startswith("." + section):
            return section
    if name.startswith(".note") or name.startswith(".comment"):
        return "ignored"
    raise DecodeError(f"unsupported section {name!r}")
