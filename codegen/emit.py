"""From compiled Functions to GNU assembler text (Intel syntax) and C declarations.

Renders through the jinja2 skeletons in templates/; the passes that run before (register
allocation, validation, frame) are codegen/pipeline.py's job. Output is deterministic: names
come from the kernel code, never from object ids, and there is no timestamp.
"""
from __future__ import annotations

import struct
from functools import lru_cache
from importlib import resources

from softjit._version import __version__ as VERSION

from softjit.codegen.module import Module
from softjit.codegen.operands import PTR_WORDS, Const, Imm, Import, Label, Mem, RegView, Symbol
from softjit.codegen.stream import Bind, Comment, Instr

REGENERATE = "python -m softjit generate"


@lru_cache(maxsize=None)
def _environment():
    import jinja2  # here, not at import: `import softjit` renders nothing

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
    """Renders one compiled function (pipeline.CompiledFunction): registers, frame, constants."""

    def __init__(self, compiled):
        self.f = compiled.function
        self.assignment = compiled.assignment
        self.frame = compiled.frame

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
        elif isinstance(m.base, Import):
            parts.append(f"rip + {m.base.name}@GOTPCREL")
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
        elif isinstance(op, Import):
            text = f"{op.name}@PLT"
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


def _records(module: Module) -> tuple[list[str], list[str]]:
    """(data lines, string lines) of the module's method-definition records: each record holds
    the addresses of its name, its function and its doc string (relocated at load time, hence
    .data.rel.ro), then the flags."""
    from softjit.codegen.cpython_abi import METHOD_DEF_SIZE

    data, strings = [], []
    for r in module.records:
        data += ["\t.p2align 3", f"\t.globl {r.symbol}", f"\t.type {r.symbol}, @object",
                 f"{r.symbol}:",
                 f"\t.quad .Lname_{r.symbol}  # ml_name",
                 f"\t.quad .Lentry_{r.function}  # ml_meth",
                 f"\t.long 0x{r.flags:X}  # ml_flags", "\t.long 0",
                 f"\t.quad .Ldoc_{r.symbol}  # ml_doc",
                 f"\t.size {r.symbol}, {METHOD_DEF_SIZE}"]
        strings += [f".Lname_{r.symbol}:", f"\t.asciz {_c_string(r.python_name)}",
                    f".Ldoc_{r.symbol}:", f"\t.asciz {_c_string(r.doc)}"]
    return data, strings


def _c_string(text: str) -> str:
    if not text.isascii() or any(c in text for c in '"\\\n'):
        raise ValueError(f"record strings are plain ASCII without quotes, backslashes or "
                         f"newlines: {text!r}")
    return f'"{text}"'


def render_assembly(module: Module, compiled: list) -> str:
    """The .S text of a module whose functions went through the passes (pipeline.render_module
    is the way to call this)."""
    functions, rodata = [], []
    for c in compiled:
        f = c.function
        r = _Renderer(c)
        functions.append({
            "name": f.name,
            "prototype": f.signature.c_declaration(),
            "doc": [line for line in f.signature.doc.splitlines() if line.strip()],
            "body": r.body(),
        })
        rodata += r.rodata()
    records, strings = _records(module)
    context = {
        "name": module.name,
        "target": module.target.name,
        "description": module.description,
        "features": module.features,
        "imports": module.imports,
        "functions": functions,
        "rodata": rodata + strings,
        "records": records,
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


__all__ = ["render_assembly", "render_header"]
