"""Operands of the instruction stream: registers (virtual and physical), memory, immediates, labels.

Kernels name virtual registers ("acc0", "vx3"); register allocation maps them to physical ones
later. A register can be viewed at several widths (a ymm accumulator reduced through its xmm half;
a 64-bit counter read as 32 bits), and a view is what an instruction takes as an operand.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

GP64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
GP32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
        "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d")
GP16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
        "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w")
GP_NAMES = {64: GP64, 32: GP32, 16: GP16}
VEC_PREFIX = {128: "xmm", 256: "ymm", 512: "zmm"}
PTR_WORDS = {8: "BYTE", 16: "WORD", 32: "DWORD", 64: "QWORD", 128: "XMMWORD", 256: "YMMWORD",
             512: "ZMMWORD"}

_ids = itertools.count()


@dataclass(eq=False)
class Register:
    """A virtual register (fixed is None) or a physical one (fixed is its hardware number).

    kind is "gp", "vec" or "mask". Identity is the object: two registers with the same name are
    different registers.
    """

    kind: str
    name: str
    bits: int  # the natural width: 64 for gp, the target width for vectors, 16 for masks
    fixed: int | None = None
    callee_saved: bool = False  # must survive calls (driver kernels): allocate from callee-saved
    # A virtual register born in a fixed physical one (an argument, which arrives in its SysV
    # register): register allocation gives it that register. None: any register will do.
    pin: int | None = None
    uid: int = field(default_factory=lambda: next(_ids))

    @property
    def is_virtual(self) -> bool:
        return self.fixed is None

    def view(self, bits: int) -> "RegView":
        return RegView(self, bits)

    # Width views. Vectors: xmm/ymm/zmm; general-purpose: r64/r32/r16.
    @property
    def xmm(self) -> "RegView":
        return self._vec_view(128)

    @property
    def ymm(self) -> "RegView":
        return self._vec_view(256)

    @property
    def zmm(self) -> "RegView":
        return self._vec_view(512)

    @property
    def r32(self) -> "RegView":
        if self.kind != "gp":
            raise TypeError(f"{self.name} is a {self.kind} register; r32 views exist for gp only")
        return RegView(self, 32)

    @property
    def r16(self) -> "RegView":
        """The low 16 bits (16-bit elements: float16 / bfloat16 words moved one at a time)."""
        if self.kind != "gp":
            raise TypeError(f"{self.name} is a {self.kind} register; r16 views exist for gp only")
        return RegView(self, 16)

    def _vec_view(self, bits: int) -> "RegView":
        if self.kind != "vec":
            raise TypeError(f"{self.name} is a {self.kind} register; xmm/ymm/zmm views need a vector")
        return RegView(self, bits)

    def __repr__(self) -> str:
        where = "virtual" if self.fixed is None else f"phys {self.fixed}"
        return f"<{self.kind} {self.name} {where}>"


@dataclass(frozen=True)
class RegView:
    """A register read or written at a given width."""

    reg: Register
    bits: int

    @property
    def kind(self) -> str:
        return self.reg.kind

    def render(self, phys: int) -> str:
        if self.reg.kind == "gp":
            return GP_NAMES[self.bits][phys]
        if self.reg.kind == "vec":
            return f"{VEC_PREFIX[self.bits]}{phys}"
        return f"k{phys}"

    def __repr__(self) -> str:
        return f"{self.reg.name}:{self.bits}"


def as_view(op):
    """Registers used directly as operands mean their natural width."""
    return op.view(op.bits) if isinstance(op, Register) else op


@dataclass(frozen=True)
class Masked:
    """A destination under a write mask: zmm{k} (merge) or zmm{k}{z} (zeroing)."""

    dest: RegView | "Mem"
    mask: RegView
    zeroing: bool = False


@dataclass(frozen=True)
class Label:
    """A position in a Function's stream: make one with f.label(name), place it with
    f.bind(label), jump to it with f.jmp / f.jb / ... (names are made unique per function)."""

    name: str  # unique within a function; rendered with the function's prefix

    def __repr__(self) -> str:
        return f"label {self.name}"


@dataclass(frozen=True)
class Symbol:
    """A global function symbol (the target of a call)."""

    name: str


@dataclass(frozen=True)
class Import:
    """A symbol of the process the module is loaded into (CPython's API): a function is called
    through the PLT (NAME@PLT), data is addressed through its GOT slot (NAME@GOTPCREL). The
    dynamic loader resolves both when the object is loaded."""

    name: str


@dataclass(frozen=True)
class Const:
    """A named constant in the function's read-only pool (a float32 value or a table)."""

    name: str
    values: tuple  # dwords as ints, in memory order
    align: int
    kind: str = "f32"  # how to show it: "f32" (float32 values), "f64" (dword pairs), "u32"

    def __repr__(self) -> str:
        return f"const {self.name}"


@dataclass(frozen=True)
class Imm:
    value: int


@dataclass(frozen=True)
class Mem:
    """[base + index*scale + disp], or a RIP-relative constant, optionally {1toN} broadcast.

    bits is the access width; None lets the instruction form decide (the vector width of the
    instruction for vector memory operands).
    """

    base: RegView | Const | Import | None = None
    index: RegView | None = None
    scale: int = 1
    disp: int = 0
    bits: int | None = None
    broadcast: bool = False

    def __post_init__(self):
        if self.scale not in (1, 2, 4, 8):
            raise ValueError(f"memory scale must be 1, 2, 4 or 8, not {self.scale}")
        if isinstance(self.base, Import) and (self.index is not None or self.disp
                                              or self.bits != 64 or self.broadcast):
            raise ValueError(f"the GOT slot of {self.base.name} is one 64-bit address: read it "
                             f"whole, with no index or displacement")

    def sized(self, bits: int) -> "Mem":
        return Mem(self.base, self.index, self.scale, self.disp, bits, self.broadcast)

    def bcst(self) -> "Mem":
        """The same address read as one dword broadcast to every lane (EVEX {1toN})."""
        return Mem(self.base, self.index, self.scale, self.disp, 32, True)

    def __add__(self, disp: int) -> "Mem":
        return Mem(self.base, self.index, self.scale, self.disp + disp, self.bits, self.broadcast)

    def registers(self):
        return [r for r in (self.base, self.index) if isinstance(r, RegView)]


def ptr(base, disp: int = 0, index=None, scale: int = 1, bits: int | None = None) -> Mem:
    """Address helper: ptr(x, 64) is [x + 64]; ptr(x, 0, n, 4) is [x + n*4]."""
    return Mem(as_view(base), as_view(index), scale, disp, bits)
