"""From built Functions to GNU assembler text (Intel syntax) and C declarations.

Runs the passes (register allocation, frame) and renders through the jinja2 skeletons in
templates/. Output is deterministic: names come from the kernel code, never from object ids,
and there is no timestamp.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import jinja2

from softjit._version import __version__ as VERSION

from .isa import Target
from .operands import PTR_WORDS, Const, Imm, Label, Mem, RegView, Symbol
from .passes.frame import plan_frame
from .passes.regalloc import allocate
from .passes.validate import check_encodable
from .stream import Bind, Comment, Function, Instr, Signature

REGENERATE = "python -m softjit generate"


@dataclass(frozen=True)
class Module:
    """What one registered variant assembles into: one .S file, one shared object."""

    name: str
    target: Target
    description: str
    functions: tuple  # of Function, built

    @property
    def signatures(self) -> tuple:
        return tuple(f.signature for f in self.functions)

    @property
    def features(self) -> tuple:
        used = set()
        for f in self.functions:
            used |= f.features_used
        return tuple(sorted(used))

    def cdef(self) -> str:
        return "\n".join(s.c_declaration() for s in self.signatures)


@lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("softjit.templates").joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env


class _Renderer:
    def __init__(self, f: Function):
        self.f = f
        self.assignment = allocate(f)
        check_encodable(f, self.assignment)
        self.frame = plan_frame(f, self.assignment)

    def label(self, label: Label) -> str:
        return f".L{self.f.name}_{label.name}"

    def const(self, const: Const) -> str:
        return f".Lc_{self.f.name}_{const.name}"

    def reg(self, view: RegView) -> str:
        phys = view.reg.fixed if view.reg.fixed is not None else self.assignment[view.reg.uid]
        return view.render(phys)

    def mem(self, m: Mem, sized: bool) -> str:
        parts = []
        if isinstance(m.base, Const):
            parts.append(f"rip + {self.const(m.base)}")
        elif m.base is not None:
            parts.append(self.reg(m.base))
        if m.index is not None:
            parts.append(f"{self.reg(m.index)}*{m.scale}" if m.scale != 1 else self.reg(m.index))
        address = " + ".join(parts)
        if m.disp:
            address += f" {'+' if m.disp > 0 else '-'} {abs(m.disp)}" if address else str(m.disp)
        if m.broadcast:
            return f"{PTR_WORDS[m.bits]} BCST [{address}]"
        if sized and m.bits:
            return f"{PTR_WORDS[m.bits]} PTR [{address}]"
        return f"[{address}]"

    def operand(self, op, position: int, instr: Instr) -> str:
        if isinstance(op, RegView):
            text = self.reg(op)
        elif isinstance(op, Mem):
            text = self.mem(op, sized=instr.mnemonic != "lea")
        elif isinstance(op, Imm):
            text = str(op.value)
        elif isinstance(op, Label):
            text = self.label(op)
        elif isinstance(op, Symbol):
            # a local alias of the function's entry: a direct call that no other loaded
            # library's symbol of the same name can interpose (no PLT)
            text = f".Lentry_{op.name}"
        else:
            raise TypeError(f"cannot render operand {op!r}")
        if position == 0 and instr.mask is not None:
            text += "{" + self.reg(instr.mask) + "}" + ("{z}" if instr.zeroing else "")
        return text

    def instruction(self, instr: Instr) -> str:
        ops = ", ".join(self.operand(op, i, instr) for i, op in enumerate(instr.operands))
        text = f"\t{instr.mnemonic} {ops}".rstrip()
        if instr.comment:
            text = f"{text:<56}# {instr.comment}"
        return text

    def body(self) -> list[str]:
        lines = [f"\t{line}" for line in self.frame.prologue()]
        for item in self.f.items:
            if isinstance(item, Bind):
                lines.append(f"{self.label(item.label)}:")
            elif isinstance(item, Comment):
                lines.append(f"\t# {item.text}")
            elif item.mnemonic == "ret":
                lines += [f"\t{line}" for line in self.frame.epilogue()]
                lines.append("\tret")
            else:
                lines.append(self.instruction(item))
        return lines

    def rodata(self) -> list[str]:
        lines = []
        for const in self.f.constants.values():
            lines.append(f"\t.p2align {const.align.bit_length() - 1}")
            lines.append(f"{self.const(const)}:")
            if const.kind == "f64":
                words = [const.values[i] | const.values[i + 1] << 32
                         for i in range(0, len(const.values), 2)]
                directive, show = ".quad", lambda q: repr(struct.unpack("<d", struct.pack("<Q", q))[0])
                width = 16
            else:
                words, directive, width = list(const.values), ".long", 8
                show = _describe if const.kind == "f32" else (lambda w: "lane mask" if w else "")
            if len(words) > 1 and all(w == words[0] for w in words):
                lines.append(f"\t.rept {len(words)}")
                lines.append(f"\t{directive} 0x{words[0]:0{width}X}  # {show(words[0])}")
                lines.append("\t.endr")
            else:
                for w in words:
                    lines.append(f"\t{directive} 0x{w:0{width}X}  # {show(w)}")
        return lines


def _describe(bits: int) -> str:
    """A float32 bit pattern as a float32 hex float (0x1.715476p+0) and its decimal value."""
    value = struct.unpack("<f", struct.pack("<I", bits))[0]
    exponent, fraction = (bits >> 23) & 0xFF, bits & 0x7FFFFF
    if exponent in (0, 0xFF):
        return "0x%08X" % bits if exponent == 0 and fraction else repr(value)
    sign = "-" if bits >> 31 else ""
    digits = f"{fraction << 1:06X}".rstrip("0") or "0"
    return f"{sign}0x1.{digits}p{exponent - 127:+d} = {value:.9g}"


def render_module(module: Module) -> str:
    functions, rodata = [], []
    for f in module.functions:
        r = _Renderer(f)
        functions.append({
            "name": f.name,
            "prototype": f.signature.c_declaration(),
            "doc": [line for line in f.signature.doc.splitlines() if line.strip()],
            "body": r.body(),
        })
        rodata += r.rodata()
    context = {
        "name": module.name,
        "target": module.target.name,
        "description": module.description,
        "features": module.features,
        "functions": functions,
        "rodata": rodata,
    }
    return _environment().get_template("kernel.S.j2").render(
        module=context, version=VERSION, regenerate=REGENERATE)


def render_header(modules) -> str:
    context = [{
        "name": m.name,
        "target": m.target.name,
        "description": m.description,
        "functions": [{"prototype": f.signature.c_declaration()} for f in m.functions],
    } for m in modules]
    return _environment().get_template("kernels.h.j2").render(
        modules=context, version=VERSION, regenerate=REGENERATE)


__all__ = ["Module", "Signature", "render_module", "render_header"]
