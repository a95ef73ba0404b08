"""The kernel builder: an explicit instruction stream for one function on one Target.

>>> from softjit.codegen.abi import VEXP_PARAMS, Signature
>>> from softjit.codegen.isa import AVX2
>>> f = Function(Signature("scale_by_two", VEXP_PARAMS), AVX2)
>>> x, y, n = f.args
>>> v = f.vec("v")
>>> _ = f.vmovups(v, ptr(x))
>>> _ = f.vaddps(v, v, v)
>>> _ = f.vmovups(ptr(y), v)
>>> _ = f.ret()
>>> [item.mnemonic for item in f.items]
['vmovups', 'vaddps', 'vmovups', 'ret']
>>> f.vmovups(f.mask("k"), ptr(x))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
softjit.codegen.errors.TargetFeatureError: mask register 'k' needs write masks (targets with them: avx512f); target avx2 has none
...

Every mnemonic of the instruction table is a lowercase method. Each call checks its operands
against the table's forms and the target's features at once, so an instruction the target lacks
fails on the Python line that emitted it. There is no global "current function": kernels pass the
builder around explicitly. codegen/pipeline.py turns a built Function into assembly text.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from softjit.codegen import instructions
from softjit.codegen.abi import SYSV_ARGS, Signature
from softjit.codegen.errors import OperandError, TargetFeatureError, emission_site
from softjit.codegen.isa import TARGETS, X86_64, Target
from softjit.codegen.operands import (GP64, Const, Imm, Import, Label, Masked, Mem, Register,
                                      RegView, Symbol, as_view, ptr)


@dataclass
class Instr:
    form: instructions.Form
    operands: tuple
    mask: RegView | None = None
    zeroing: bool = False
    comment: str | None = None
    site: str = ""
    features: frozenset = frozenset()

    @property
    def mnemonic(self) -> str:
        return self.form.mnemonic

    def operand_views(self):
        """Every register view the operands name, memory bases and indexes included."""
        for op in self.operands:
            if isinstance(op, RegView):
                yield op
            elif isinstance(op, Mem):
                yield from op.registers()

    def register_views(self):
        """operand_views() and the write mask."""
        yield from self.operand_views()
        if self.mask is not None:
            yield self.mask


@dataclass
class Bind:
    label: Label


@dataclass
class Comment:
    text: str


@dataclass
class StackFrame:
    """Bytes of stack the function reserves; addressed as [rsp + offset] after the prologue."""

    size: int = 0


def float_bits(value: float) -> int:
    return struct.unpack("<I", struct.pack("<f", value))[0]


class Function:
    """One kernel function: a Signature, a Target, and the instruction stream emitted into it.

    f.args are the parameters as 64-bit registers (SysV order); f.vec / f.vecs / f.gp / f.mask
    make virtual registers; every instruction of the table is a method (f.vaddps(d, a, b)),
    checked against its forms and the target's features at once; f.label / f.bind /
    f.count_down_loop make control flow; f.constant / f.constant_register put float32 constants
    in the read-only pool. Finish with f.ret().
    """

    def __init__(self, signature: Signature, target: Target):
        if len(signature.params) > len(SYSV_ARGS):
            raise OperandError(f"{signature.name}: more than {len(SYSV_ARGS)} register arguments")
        self.signature = signature
        self.target = target
        self.items: list = []
        self.constants: dict[str, Const] = {}
        self.frame = StackFrame()
        self.features_used: set[str] = set()
        self.imports: set[str] = set()  # symbols of the host process (CPython's API) it uses
        self._label_names: set[str] = set()
        self.args = tuple(
            Register("gp", p.name, 64, pin=GP64.index(SYSV_ARGS[i]))
            for i, p in enumerate(signature.params)
        )

    @property
    def name(self) -> str:
        return self.signature.name

    # ---------------------------------------------------------------- registers, labels, constants
    def gp(self, name: str, *, callee_saved: bool = False) -> Register:
        """A virtual 64-bit general-purpose register. callee_saved: it must survive `call`."""
        return Register("gp", name, 64, callee_saved=callee_saved)

    def vec(self, name: str) -> Register:
        """A virtual vector register at the target's width."""
        return Register("vec", name, self.target.vector_bits)

    def vecs(self, prefix: str, count: int) -> list[Register]:
        return [self.vec(f"{prefix}{i}") for i in range(count)]

    def mask(self, name: str) -> Register:
        if not self.target.has_masks:
            raise TargetFeatureError(
                f"mask register {name!r} needs write masks (targets with them: "
                f"{', '.join(t.name for t in TARGETS if t.has_masks)}); target {self.target} has "
                f"none\n"
                f"  emitted at {emission_site()}"
            )
        return Register("mask", name, 16)

    def physical_gp(self, name: str) -> Register:
        """A physical register by name, for the few places an ABI fixes one (calls, returns)."""
        return Register("gp", name, 64, fixed=GP64.index(name))

    def argument_register(self, index: int) -> Register:
        """The physical register of a callee's integer argument `index` (SysV order)."""
        return self.physical_gp(SYSV_ARGS[index])

    def label(self, name: str) -> Label:
        """A new label; names are made unique within the function (loop, loop_1, ...)."""
        unique, k = name, 0
        while unique in self._label_names:
            k += 1
            unique = f"{name}_{k}"
        self._label_names.add(unique)
        return Label(unique)

    def bind(self, label: Label) -> None:
        self.items.append(Bind(label))

    def comment(self, text: str) -> None:
        """A stage comment in the emitted assembly (state the math, not the next instruction)."""
        self.items.append(Comment(text))

    def constant(self, name: str, value: float) -> Mem:
        """A named float32 constant as a source operand.

        AVX-512 reads it as a {1toN} broadcast of one dword; AVX2 has no embedded broadcast, so the
        pool stores a full vector of copies.
        """
        if self.target.has_embedded_broadcast:
            return Mem(self._pool(name, (float_bits(value),), 4), bits=32, broadcast=True)
        return Mem(self._pool(name, (float_bits(value),) * self.target.lanes, self.target.vector_bytes))

    def constant_bits(self, name: str, dword: int) -> Mem:
        """A named dword bit pattern (an integer lane constant) as a source operand, laid out as
        constant() lays out a float32 one."""
        dword &= 0xFFFFFFFF
        if self.target.has_embedded_broadcast:
            return Mem(self._pool(name, (dword,), 4, "u32"), bits=32, broadcast=True)
        return Mem(self._pool(name, (dword,) * self.target.lanes, self.target.vector_bytes,
                              "u32"))

    def constant_f64(self, name: str, value: float) -> Mem:
        """A named float64 constant as a packed-double source operand ({1toN} on AVX-512)."""
        lo, hi = struct.unpack("<II", struct.pack("<d", value))
        if self.target.has_embedded_broadcast:
            return Mem(self._pool(name, (lo, hi), 8, "f64"), bits=64, broadcast=True)
        return Mem(self._pool(name, (lo, hi) * (self.target.lanes // 2), self.target.vector_bytes,
                              "f64"))

    def load_constant(self, dest: Register, name: str, value: float) -> None:
        """dest = the named float32 constant in every lane."""
        self.fill_vector(dest, self.constant(name, value), aligned=True)

    def constant_register(self, name: str, value: float) -> Register:
        """A new vector register holding the named float32 constant in every lane."""
        reg = self.vec(name)
        self.load_constant(reg, name, value)
        return reg

    def fill_vector(self, dest: Register, source: Mem, aligned: bool = False) -> None:
        """dest = source, a vector operand or a {1toN} broadcast of one dword (as constant()
        returns on AVX-512): a broadcast is loaded with VBROADCASTSS, a vector with a move."""
        if source.broadcast:
            self.vbroadcastss(dest, Mem(source.base, source.index, source.scale, source.disp,
                                        bits=32))
        elif aligned:
            self.vmovaps(dest, source)
        else:
            self.vmovups(dest, source)

    def table(self, name: str, words: tuple, align: int = 32) -> Const:
        """A table of dwords in the constant pool (tail masks); address it with lea."""
        return self._pool(name, tuple(w & 0xFFFFFFFF for w in words), align, "u32")

    def _pool(self, name: str, values: tuple, align: int, kind: str = "f32") -> Const:
        old = self.constants.get(name)
        if old is not None:
            if old.values != values:
                raise OperandError(f"constant {name!r} defined twice with different values")
            return old
        const = Const(name, values, align, kind)
        self.constants[name] = const
        return const

    def imported(self, name: str) -> Import:
        """A function of the process the object is loaded into, as a `call` target (NAME@PLT).
        The dynamic loader resolves it at load time; an object whose imports cannot be resolved
        fails to load (it never runs with a missing one)."""
        self.imports.add(name)
        return Import(name)

    def got(self, name: str) -> Mem:
        """The address of a data symbol of the process, read from its GOT slot with `mov R, M`."""
        self.imports.add(name)
        return Mem(Import(name), bits=64)

    def stack(self, size: int) -> Mem:
        """Reserve `size` bytes of 16-byte aligned stack; returns [rsp + offset] of the block."""
        offset = self.frame.size
        self.frame.size += (size + 15) // 16 * 16
        rsp = Register("gp", "rsp", 64, fixed=GP64.index("rsp"))
        return Mem(RegView(rsp, 64), disp=offset)

    # ---------------------------------------------------------------- emission
    def emit(self, mnemonic: str, *operands, comment: str | None = None) -> Instr:
        forms = instructions.FORMS.get(mnemonic)
        if self.target is X86_64:
            forms = (forms or []) + instructions.HOST_FORMS.get(mnemonic, [])
        if not forms:
            raise OperandError(f"unknown instruction {mnemonic!r}\n  emitted at {emission_site()}")
        mask, zeroing = None, False
        ops = []
        for i, op in enumerate(operands):
            if isinstance(op, Masked):
                if i != 0:
                    raise OperandError(f"{mnemonic}: only the first operand can be masked")
                mask, zeroing, op = as_view(op.mask), op.zeroing, op.dest
            if isinstance(op, int):
                op = Imm(op)
            ops.append(as_view(op))
        for i, op in enumerate(ops):
            if isinstance(op, Mem) and isinstance(op.base, Import) and (
                    mnemonic != "mov" or i != 1 or not isinstance(ops[0], RegView)):
                raise OperandError(
                    f"{mnemonic}: the GOT slot of {op.base.name} is only read, as the source of "
                    f"mov R, [slot]\n  emitted at {emission_site()}")
        if any(isinstance(op, Mem) and op.index is not None and op.index.kind == "vec"
               for op in ops) and not any("G" in codes for form in forms for codes in form.operands):
            raise OperandError(
                f"{mnemonic}: an address with a vector index ([base + vector*scale]) is the "
                f"operand of a gather (vgatherdps) only\n  emitted at {emission_site()}")
        errors = []
        for form in forms:
            resolved = _match(form, ops)
            if isinstance(resolved, str):
                errors.append(resolved)
                continue
            if mask is not None and "mask" not in form.flags:
                raise OperandError(f"{mnemonic} takes no write mask\n  emitted at {emission_site()}")
            _check_mask_rules(form, resolved, mask, zeroing)
            instr = Instr(form, resolved, mask, zeroing, comment, emission_site())
            instr.features = self._check_features(instr)
            self.features_used |= instr.features
            self.items.append(instr)
            return instr
        raise OperandError(
            f"{mnemonic} {', '.join(map(repr, ops))}: no form of {mnemonic} takes these operands "
            f"({'; '.join(errors)})\n  emitted at {emission_site()}"
        )

    def _check_features(self, instr: Instr) -> frozenset:
        form = instr.form
        if form.vex == "base":
            return frozenset()
        width = _vector_width(instr)
        high_register = next(
            (op for op in instr.operands if isinstance(op, RegView) and op.kind == "vec"
             and op.reg.fixed is not None and op.reg.fixed >= 16), None)
        reasons = []
        if width == 512:
            reasons.append("512-bit registers")
        if instr.mask is not None or any(isinstance(o, RegView) and o.kind == "mask" for o in instr.operands):
            reasons.append("a k mask")
        if any(isinstance(o, Mem) and o.broadcast for o in instr.operands):
            reasons.append("an embedded broadcast")
        if high_register is not None:
            reasons.append(f"register {high_register.render(high_register.reg.fixed)}")
        if form.vex is None:
            reasons.append("an EVEX-only instruction")
        if not reasons:
            needed = frozenset({form.vex})
        elif form.evex is None:
            raise TargetFeatureError(
                f"{form.mnemonic} has no EVEX encoding, so it cannot take {', '.join(reasons)} "
                f"(target {self.target})\n  emitted at {instr.site}")
        else:
            needed = {form.evex}
            if "vl" in form.flags and width < 512:
                needed.add("avx512vl")
            needed = frozenset(needed)
        missing = {feature for feature in needed if not self.target.allows(feature)}
        if missing:
            why = f" (for {', '.join(reasons)})" if reasons else ""
            raise TargetFeatureError(
                f"{form.mnemonic} needs {', '.join(sorted(missing))}{why}; "
                f"target {self.target} lacks it\n  emitted at {instr.site}")
        return needed

    def __getattr__(self, mnemonic: str):
        mnemonic = mnemonic.rstrip("_")  # and_, or_: Python keywords
        if mnemonic in instructions.FORMS or mnemonic in instructions.HOST_FORMS:
            return lambda *ops, comment=None: self.emit(mnemonic, *ops, comment=comment)
        raise AttributeError(f"Function has no attribute or instruction {mnemonic!r}")

    # ---------------------------------------------------------------- control flow helpers
    def count_down_loop(self, counter: Register, step: int, name: str):
        """Context manager for `while counter >= step: body; counter -= step` (unsigned)."""
        return _CountDownLoop(self, counter, step, name)


class _CountDownLoop:
    def __init__(self, f: Function, counter: Register, step: int, name: str):
        self.f, self.counter, self.step = f, counter, step
        self.top, self.done = f.label(name), f.label(f"{name}_done")

    def __enter__(self):
        f = self.f
        f.cmp(self.counter, self.step)
        f.jb(self.done)
        f.bind(self.top)
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            f = self.f
            f.sub(self.counter, self.step)
            f.cmp(self.counter, self.step)
            f.jae(self.top)
            f.bind(self.done)
        return False


# ---------------------------------------------------------------------- operand matching
def _check_mask_rules(form: instructions.Form, operands: tuple, mask, zeroing: bool) -> None:
    """The table's needmask and distinct flags (gathers), checked at emission."""
    if "needmask" in form.flags:
        if mask is None:
            raise OperandError(
                f"{form.mnemonic} without a mask vector operand is the AVX-512 form: it needs a "
                f"{{k}} write mask on its destination (Masked(dest, k)); the lanes whose mask bit "
                f"is set are loaded and the mask is cleared\n  emitted at {emission_site()}")
        if zeroing:
            raise OperandError(f"{form.mnemonic} merges into its destination: a {{z}} (zeroing) "
                               f"mask is not encodable\n  emitted at {emission_site()}")
    if "distinct" in form.flags:
        named = [(op.reg, "destination" if i == 0 else "mask vector")
                 for i, op in enumerate(operands) if isinstance(op, RegView)]
        named += [(op.index.reg, "vector index") for op in operands
                  if isinstance(op, Mem) and op.index is not None]
        for i, (reg, role) in enumerate(named):
            for other, other_role in named[i + 1:]:
                if reg is other:
                    raise OperandError(
                        f"{form.mnemonic}: {reg.name} is both the {role} and the {other_role}; "
                        f"they must be different registers (the CPU raises #UD otherwise)\n"
                        f"  emitted at {emission_site()}")


def _vector_width(instr: Instr) -> int:
    widths = [op.bits for op in instr.operands if isinstance(op, RegView) and op.kind == "vec"]
    return max(widths) if widths else 128


def _match(form: instructions.Form, ops: list):
    """Resolved operands if `ops` fit `form` (memory sizes filled in), else why not."""
    if len(ops) != len(form.operands):
        return f"{len(form.operands)} operands, not {len(ops)}"
    width = None
    for op, codes in zip(ops, form.operands):
        if "V" in codes and isinstance(op, RegView) and op.kind == "vec":
            width = op.bits
            break
    if width == 128 and "min256" in form.flags:
        return "no xmm form (ymm or zmm operands)"
    resolved = []
    for i, (op, codes) in enumerate(zip(ops, form.operands)):
        fit = _fit(op, codes, width)
        if fit is None:
            return f"operand {i + 1} ({op!r}) is not {'/'.join(codes)}"
        resolved.append(fit)
    return tuple(resolved)


_SIZED = {"m8": 8, "m16": 16, "m32": 32, "m64": 64, "m128": 128, "m256": 256}
_FIXED_VEC = {"X": 128, "Y": 256, "Z": 512}


def _fit(op, codes, width):
    for code in codes:
        if isinstance(op, RegView):
            if op.kind == "vec":
                if code == "V" and op.bits == width:
                    return op
                if code == "H" and width and op.bits == max(width // 2, 128):
                    return op
                if _FIXED_VEC.get(code) == op.bits:
                    return op
            elif op.kind == "gp":
                if (code, op.bits) in (("R", 64), ("E", 32), ("W", 16)):
                    return op
            elif op.kind == "mask" and code == "K":
                return op
        elif isinstance(op, Mem):
            vsib = op.index is not None and op.index.kind == "vec"
            if vsib or code == "G":
                # a vector index is a VSIB address: gathers only, its dwords at the width
                if vsib and code == "G" and not op.broadcast and op.index.bits == width:
                    return op.sized(32)
                continue
            if op.broadcast:
                if (code, op.bits) in (("B", 32), ("Bq", 64)) and width and width > op.bits:
                    return op
                continue
            if code == "A":
                return op
            if code in ("M", "B", "Bq"):
                want = width
            elif code == "Mh":
                want = width // 2 if width else None
            elif code in _SIZED:
                want = _SIZED[code]
            else:
                continue
            if want is None:  # a general-purpose form: the assembler sizes it from the register
                return op
            if op.bits in (None, want):
                return op.sized(want)
        elif isinstance(op, Imm) and code == "I":
            return op
        elif isinstance(op, (Label, Symbol)) and code == "L":
            return op
        elif isinstance(op, Import) and code == "P":
            return op
    return None
