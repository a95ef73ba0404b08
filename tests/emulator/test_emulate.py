"""Tests of softjit.codegen.emulator, the emulator that runs the AVX-512 kernels on any host.

The strongest checks are differential against this host's CPU: every registered variant of an
ISA the host runs (AVX2, and AVX-512 where present), a few hundred single VEX instructions and,
on an AVX-512 host, a few hundred single EVEX instructions (zmm0-31, merge and zero masking,
embedded broadcasts, k registers) run natively (assembled with `as`, linked with `ld`, called
through ctypes) and in the emulator on the same special-value inputs, and must agree bit for
bit. EVEX semantics (masks, vscalefps, vrndscaleps, vpternlogd, k registers) are also pinned by
unit tests against the SDM's definitions, and the AVX-512 variants run in the emulator against
numpy, so a host without AVX-512 still checks them.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest

import runners
import softjit
from softjit.codegen.pipeline import render_module
from softjit.codegen.emulator import (ABIViolation, AsmParseError, EmulatedFault, Machine,
                                      InstructionLimitExceeded, SUPPORTED_MNEMONICS)
from softjit.codegen.instructions import FORMS
from softjit.codegen.variants import VARIANTS
from softjit.runtime import bindings
from softjit.runtime.bindings import strides_argument

HOST_ISAS = softjit.host_isas()
TOOLS = shutil.which("as") is not None and shutil.which("ld") is not None
native = pytest.mark.skipif(not (TOOLS and "avx2" in HOST_ISAS),
                            reason="needs GNU as/ld and an AVX2+FMA host")

F32 = np.float32
U32 = np.uint32


def bits(x) -> np.ndarray:
    return np.asarray(x, F32).view(U32)


def f32(*u) -> np.ndarray:
    return np.array(u, U32).view(F32)


def build_native(text: str, directory, name: str) -> ctypes.CDLL:
    src = os.path.join(str(directory), name + ".S")
    with open(src, "w") as f:
        f.write(text)
    obj, so = src[:-2] + ".o", src[:-2] + ".so"
    subprocess.run(["as", "--64", "-o", obj, src], check=True, capture_output=True)
    subprocess.run(["ld", "-shared", "-o", so, obj], check=True, capture_output=True)
    return ctypes.CDLL(so)


def ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


def aligned(n: int, dtype=F32, offset_bytes: int = 0) -> np.ndarray:
    """A 1-D array of n elements whose data starts offset_bytes past a 64-byte boundary."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.zeros((n * itemsize + offset_bytes + 128), np.uint8)
    start = (-raw.ctypes.data) % 64 + offset_bytes
    return raw[start:start + n * itemsize].view(dtype)


# ---------------------------------------------------------------------------------------------
# inputs full of special values

SPECIAL_F32 = np.array([
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000,  # +-0, +-inf
    0x7FC00000, 0xFFC00000, 0x7FC12345, 0xFFD00001,  # quiet NaNs with payloads
    0x7F800001, 0xFFA00000, 0x7FB12345,  # signalling NaNs
    0x00000001, 0x80000001, 0x007FFFFF, 0x00400000, 0x807FFFFF,  # subnormals
    0x00800000, 0x80800000, 0x7F7FFFFF, 0xFF7FFFFF,  # min normal, max
    0x3F800000, 0xBF800000, 0x3F000000, 0x3FC00000, 0x40200000, 0xBFC00000,  # 1, .5, 1.5, 2.5
    0x42B17218, 0x42B17217, 0xC2CFF1B5, 0xC2CFF1B4, 0x42B20000, 0xC2D00000,  # exp limits
    0x4F000000, 0xCF000000, 0x4EFFFFFF, 0xCF000001,  # +-2^31 and neighbours
    0x4B400000, 0x4B40007F, 0x3FB8AA3B,  # magic bias, log2e
], U32)

SPECIAL_VALUES = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39,
                           1.17549435e-38, 88.72, 88.7228, 88.73, 89.0, 100.0, -87.3, -103.97,
                           -103.9721, -104.0, -150.0, 3e38, -3e38, 1e30, -1e30, 0.5, -0.5, 1.0,
                           np.float32(0.6931472), 1e-7, -1e-7], F32)


def special_lanes(rng, n: int) -> np.ndarray:
    """n float32 bit patterns: a third specials, a third wide-range random, a third near 1."""
    choice = rng.integers(0, 3, n)
    out = np.empty(n, U32)
    out[choice == 0] = rng.choice(SPECIAL_F32, (choice == 0).sum())
    wide = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(U32)
    out[choice == 1] = wide[choice == 1]
    near = bits((rng.standard_normal(n) * 4).astype(F32))
    out[choice == 2] = near[choice == 2]
    return out


def special_inputs(rng, n: int) -> np.ndarray:
    """Kernel inputs: normal-ish values with special values sprinkled in, and a few special
    bit patterns (signalling NaNs, NaN payloads, subnormals, exp's limits)."""
    x = (rng.standard_normal(n) * 40).astype(F32)
    if n:
        k = max(1, n // 3)
        x[rng.integers(0, n, k)] = rng.choice(SPECIAL_VALUES, k)
        k = max(1, n // 10)
        x[rng.integers(0, n, k)] = rng.choice(SPECIAL_F32, k).view(F32)
    return x


# ---------------------------------------------------------------------------------------------
# the table and the parser


def test_every_mnemonic_of_the_instruction_table_is_emulated():
    missing = set(FORMS) - SUPPORTED_MNEMONICS
    assert not missing, f"codegen/instructions.py has mnemonics the emulator lacks: {missing}"


def test_unknown_mnemonic_names_its_line():
    text = ".intel_syntax noprefix\n.text\n.globl f\nf:\n\tvaddps ymm0, ymm1, ymm2\n" \
           "\tvfrobnicate ymm0, ymm1\n\tret\n"
    with pytest.raises(AsmParseError, match=r"line 6.*vfrobnicate"):
        Machine(text)


def test_bad_operands_name_their_line():
    for body, pattern in [("vaddps ymm0, ymm1, zmm2", "256-bit"),
                          ("jmp .Lnowhere", "undefined label"),
                          ("vpand zmm0, zmm1, zmm2", "VEX"),
                          ("vmovups zmm0{k1}{z}, zmm1{k2}", "write mask on a source")]:
        with pytest.raises(AsmParseError, match=r"line 5.*" + pattern):
            Machine(f".intel_syntax noprefix\n.text\n.globl f\nf:\n\t{body}\n\tret\n")


def test_rodata_directives():
    text = """
        .intel_syntax noprefix
        .text
        .globl f
    f:  lea rax, [rip + .Lb]   # comment
        mov ecx, DWORD PTR [rip + .Lb + 4]
        mov edx, DWORD PTR [rip + .La - 1]
        ret
        .section .rodata
        .byte 1
        .p2align 5
    .La:
        .rept 3
        .long 0x3F800000  # 1.0
        .endr
        .quad -1
    .Lb: .long 7, 8
        .section .note.GNU-stack,"",@progbits
    """
    m = Machine(text)
    a, b = m.address_of(".La"), m.address_of(".Lb")
    assert a % 32 == 0 and b == a + 20
    lines = []
    assert m.call("f", trace=lambda line, text: lines.append(line)) == b
    assert lines == [5, 6, 7, 8] and m.reg("ecx") == 8 and m.reg("rdx") == 0x80000000
    ro = [r for r in m.regions if r.name == ".rodata"][0]
    data = ro.u8[a - ro.start:b + 8 - ro.start].tobytes()
    assert data == bytes.fromhex("0000803f" * 3) + b"\xff" * 8 + bytes([7, 0, 0, 0, 8, 0, 0, 0])


def _sample_operand(code: str, width: int, position: int, evex: bool) -> str:
    vec = {128: "xmm", 256: "ymm", 512: "zmm"}
    reg = (17 + position) if evex else (1 + position)
    words = {8: "BYTE", 16: "WORD", 32: "DWORD", 64: "QWORD", 128: "XMMWORD", 256: "YMMWORD",
             512: "ZMMWORD"}
    if code == "V":
        return f"{vec[width]}{reg}"
    if code == "H":
        return f"{vec[max(width // 2, 128)]}{reg}"
    if code in ("X", "Y", "Z"):
        return f"{ {'X': 'xmm', 'Y': 'ymm', 'Z': 'zmm'}[code]}{reg}"
    if code == "K":
        return f"k{1 + position}"
    if code == "M":
        return f"{words[width]} PTR [rdi + 64]"
    if code == "Mh":
        return f"{words[max(width // 2, 128) if width > 128 else 64]} PTR [rdi + 64]"
    if code == "B":
        return "DWORD BCST [rdi + 4]"
    if code == "Bq":
        return "QWORD BCST [rdi + 8]"
    if code == "G":
        return f"DWORD PTR [rdi + {vec[width]}{reg}*4]"
    if code.startswith("m") and code[1:].isdigit():
        return f"{words[int(code[1:])]} PTR [rdi + 128]"
    if code == "R":
        return ("rax", "rcx", "rdx")[position]
    if code == "E":
        return ("eax", "ecx", "edx")[position]
    if code == "W":
        return ("ax", "cx", "dx")[position]
    if code == "A":
        return "[rdi + rsi*4 + 8]"
    if code == "I":
        return "1"
    if code == "L":
        return ".Ltarget"
    raise AssertionError(f"the table has an operand code this test does not know: {code}")


def _table_samples():
    """One instruction text per (form, encoding, operand alternative, masking)."""
    out = []
    for mnemonic, forms in FORMS.items():
        for form in forms:
            for evex in (False, True):
                feature = form.evex if evex else form.vex
                if feature is None:
                    continue
                width = 512 if evex else 256
                if not form.operands:
                    out.append((mnemonic, ""))
                    continue
                choices = set()
                for pos, alts in enumerate(form.operands):
                    for alt in alts:
                        ops = [a[0] if p != pos else alt for p, a in enumerate(form.operands)]
                        if "E" in ops:  # one general-purpose width per instruction
                            ops = ["E" if o == "R" and "E" in form.operands[p] else o
                                   for p, o in enumerate(ops)]
                        choices.add(tuple(ops))
                for ops in sorted(choices):
                    if feature == "base":
                        width = 32 if "E" in ops else 16 if "W" in ops else 64
                    texts = [_sample_operand(c, width, p, evex and feature != "base")
                             for p, c in enumerate(ops)]
                    if mnemonic == "vmovhlps" or mnemonic.startswith("vextractf128"):
                        texts = [t.replace("zmm", "ymm") for t in texts]
                    if "needmask" not in form.flags:
                        out.append((mnemonic, ", ".join(texts)))
                    if evex and "mask" in form.flags:
                        first = texts[0]
                        out.append((mnemonic, ", ".join([first + "{k3}"] + texts[1:])))
                        if "PTR" not in first and "k" not in first[:2] \
                                and "needmask" not in form.flags:
                            out.append((mnemonic, ", ".join([first + "{k3}{z}"] + texts[1:])))
    return out


def _sample_function(i: int, mnemonic: str, operands: str) -> str:
    body = f"\t{mnemonic} {operands}".rstrip().replace(".Ltarget", f".Ltarget{i}")
    if mnemonic == "vgatherdps":  # index 0 in every lane: each loaded lane reads [rdi]
        index = operands.split("+ ")[1].split("*")[0]
        body = f"\tvpxord {index}, {index}, {index}\n{body}"
    if mnemonic == "push":
        body += f"\n\tpop {operands}"
    elif mnemonic == "pop":
        body = f"\tpush rax\n{body}"
    elif mnemonic == "call":
        body = "\tsub rsp, 8\n\tcall sample_helper\n\tadd rsp, 8"
    elif mnemonic == "ret":
        body = ""
    return f"\t.globl s{i}\ns{i}:\n{body}\n.Ltarget{i}:\n\tret\n"


def test_every_table_form_decodes_runs_and_assembles(tmp_path):
    """Each operand alternative of each form (VEX and EVEX, masked and not) decodes and runs;
    the same text is accepted by GNU as, so the emulator parses real syntax."""
    samples = _table_samples()
    funcs = [_sample_function(i, m, ops) for i, (m, ops) in enumerate(samples)]
    text = ".intel_syntax noprefix\n.text\nsample_helper:\n\tret\n" + "".join(funcs) + \
        '.section .note.GNU-stack,"",@progbits\n'
    m = Machine(text)
    buf = aligned(64, F32)
    buf[:] = 1.5
    addr = m.map(buf)
    for i, (mnemonic, ops) in enumerate(samples):
        m.call(f"s{i}", addr, 0)
    if TOOLS:
        src = tmp_path / "forms.S"
        src.write_text(text)
        subprocess.run(["as", "--64", "-o", str(tmp_path / "forms.o"), str(src)], check=True,
                       capture_output=True)


# ---------------------------------------------------------------------------------------------
# single instructions, natively and emulated (VEX; EVEX where the host runs AVX-512)

VEC_OFFSET, GP_NAMES = 32, ("rax", "rcx", "rdx", "rbx", "rsi", "rdi", "r8", "r9", "r10", "r11")
CF, ZF, SF, OF, PF = 1, 2, 4, 8, 16
ARITH_FLAGS, LOGIC_FLAGS = CF | ZF | SF | OF | PF, CF | ZF | SF | OF | PF


class Shape:
    """The register state a harness loads and stores: VEX (ymm0-15) or EVEX (zmm0-31, k1-7)."""

    def __init__(self, evex: bool):
        self.evex = evex
        self.regs, self.lanes = (32, 16) if evex else (16, 8)
        self.name, self.word = ("zmm", "ZMMWORD") if evex else ("ymm", "YMMWORD")


VEX, EVEX = Shape(False), Shape(True)


def _harness(name: str, body: str, shape: Shape = VEX) -> str:
    """void name(uint32_t vec[regs][lanes], uint64_t gp[11], void* mem, uint16_t k[8]): load
    the vector registers (ymm0-15, or zmm0-31 and k1-7 for EVEX) and ten gp registers, run body
    (memory operands through r13), store everything back, and the flags as bits of gp[10]
    (CF 1, ZF 2, SF 4, OF 8, PF 16)."""
    size = 4 * shape.lanes
    lines = [f"\t.globl {name}", f"{name}:"]
    lines += [f"\tpush {r}" for r in ("rbx", "rbp", "r12", "r13", "r14", "r15")]
    lines += ["\tsub rsp, 8", "\tmov r15, rdi", "\tmov r14, rsi", "\tmov r13, rdx",
              "\tmov rbp, rcx"]
    if shape.evex:
        lines += [f"\tkmovw k{i}, WORD PTR [rbp + {2 * i}]" for i in range(1, 8)]
    lines += [f"\tvmovups {shape.name}{i}, {shape.word} PTR [r15 + {size * i}]"
              for i in range(shape.regs)]
    lines += [f"\tmov {r}, QWORD PTR [r14 + {8 * i}]" for i, r in enumerate(GP_NAMES)]
    lines += [f"\t{b.strip()}" for b in body.split(";")]
    lines.append("\tmov r12, 0")
    for k, (jump, bit) in enumerate((("jae", CF), ("jne", ZF), ("jns", SF), ("jno", OF),
                                     ("jnp", PF))):
        lines += [f"\t{jump} .L{name}_{k}", f"\tlea r12, [r12 + {bit}]", f".L{name}_{k}:"]
    lines += [f"\tvmovups {shape.word} PTR [r15 + {size * i}], {shape.name}{i}"
              for i in range(shape.regs)]
    if shape.evex:
        lines += [f"\tkmovw WORD PTR [rbp + {2 * i}], k{i}" for i in range(1, 8)]
    lines += [f"\tmov QWORD PTR [r14 + {8 * i}], {r}" for i, r in enumerate(GP_NAMES)]
    lines.append(f"\tmov QWORD PTR [r14 + {8 * len(GP_NAMES)}], r12")
    lines += ["\tadd rsp, 8"] + [f"\tpop {r}" for r in ("r15", "r14", "r13", "r12", "rbp", "rbx")]
    lines.append("\tret")
    return "\n".join(lines) + "\n"


def _vector_cases():
    """(instruction text, flags to compare) of every VEX form worth checking."""
    cases = []

    def add(text, flags=0):
        cases.append((text, flags))

    for w, r in ((256, "ymm"), (128, "xmm")):
        mem = {256: "YMMWORD", 128: "XMMWORD"}[w]
        for op in ("vaddps", "vsubps", "vmulps", "vdivps", "vmaxps", "vminps", "vaddpd",
                   "vsubpd", "vmulpd", "vmaxpd", "vandps", "vandnps", "vorps", "vxorps",
                   "vpand", "vpor", "vpaddd", "vpsubd", "vpaddq", "vpcmpgtd", "vunpckhpd"):
            add(f"{op} {r}0, {r}1, {r}2")
            add(f"{op} {r}3, {r}4, {r}4")
            add(f"{op} {r}5, {r}6, {mem} PTR [r13 + 4]")
        for op in ("vfmadd132ps", "vfmadd213ps", "vfmadd231ps", "vfnmadd132ps",
                   "vfnmadd213ps", "vfnmadd231ps", "vfmadd213pd", "vfmadd231pd"):
            add(f"{op} {r}0, {r}1, {r}2")
            add(f"{op} {r}7, {r}7, {r}8")
            add(f"{op} {r}3, {r}4, {mem} PTR [r13 + 32]")
        for imm in (0, 1, 2, 3, 4, 8, 9, 10, 11, 12):
            add(f"vroundps {r}0, {r}1, {imm}")
        add(f"vroundps {r}2, {mem} PTR [r13 + 8], 1")
        for pred in range(32):
            add(f"vcmpps {r}0, {r}1, {r}2, {pred}")
        add(f"vcmpps {r}3, {r}3, {mem} PTR [r13], 3")
        for op in ("vpslld", "vpsrld"):
            for count in (0, 1, 7, 23, 31, 32, 255):
                add(f"{op} {r}0, {r}1, {count}")
        for count in (0, 1, 52, 63, 64):
            add(f"vpsllq {r}0, {r}1, {count}")
        for op in ("vcvtps2dq", "vcvtdq2ps", "vmovshdup", "vmovups", "vmovaps"):
            add(f"{op} {r}0, {r}1")
            add(f"{op} {r}2, {mem} PTR [r13 + 64]")
        add(f"vmovups {mem} PTR [r13 + 4], {r}3")
        add(f"vmovaps {mem} PTR [r13 + 32], {r}3")
        add(f"vmovntps {mem} PTR [r13 + 64], {r}3; sfence")
        add(f"vmaskmovps {r}0, {r}1, {mem} PTR [r13 + 12]")
        add(f"vmaskmovps {mem} PTR [r13 + 12], {r}1, {r}2")
        add(f"vblendvps {r}0, {r}1, {r}2, {r}3")
        add(f"vblendvps {r}4, {r}5, {mem} PTR [r13 + 16], {r}6")
        add(f"vbroadcastss {r}0, DWORD PTR [r13 + 20]")
        add(f"vbroadcastss {r}1, xmm2")
        for imm in (0, 27, 78, 177, 255):
            add(f"vpermilps {r}0, {r}1, {imm}")
            add(f"vshufps {r}2, {r}3, {r}4, {imm}")
        add(f"vpermilps {r}5, {mem} PTR [r13 + 4], 57")
        add(f"vshufps {r}5, {r}6, {mem} PTR [r13 + 4], 57")
        for imm in range(0, 16, 5):
            add(f"vpermilpd {r}0, {r}1, {imm}")
        add(f"vmovmskps eax, {r}1")
        add(f"vmovmskps r8, {r}2")
    add("vcvtps2pd ymm0, xmm1")
    add("vcvtps2pd xmm2, xmm3")
    add("vcvtps2pd ymm4, XMMWORD PTR [r13 + 4]")
    add("vcvtpd2ps xmm0, ymm1")
    add("vcvtpd2ps xmm2, xmm3")
    add("vcvtpd2ps xmm4, YMMWORD PTR [r13 + 8]")
    add("vextractf128 xmm0, ymm1, 1")
    add("vextractf128 xmm2, ymm3, 0")
    add("vextractf128 XMMWORD PTR [r13 + 4], ymm4, 1")
    add("vmovhlps xmm0, xmm1, xmm2")
    # 16-bit elements: float16 conversions, bfloat16 words widened, dwords packed to words
    for imm in (0, 1, 2, 3, 4):
        add(f"vcvtps2ph xmm0, ymm1, {imm}")
        add(f"vcvtps2ph xmm2, xmm3, {imm}")
    add("vcvtps2ph XMMWORD PTR [r13 + 6], ymm4, 0")
    add("vcvtph2ps ymm0, xmm1")
    add("vcvtph2ps xmm2, xmm3")
    add("vcvtph2ps ymm4, XMMWORD PTR [r13 + 6]")
    add("vpmovzxwd ymm0, xmm1")
    add("vpmovzxwd xmm2, xmm3")
    add("vpmovzxwd ymm4, XMMWORD PTR [r13 + 2]")
    add("vpmovzxwd xmm5, QWORD PTR [r13 + 6]")
    add("vpackusdw ymm0, ymm1, ymm2")
    add("vpminud ymm0, ymm1, ymm2")
    add("vpminud xmm3, xmm4, XMMWORD PTR [r13 + 8]")
    add("vpackusdw xmm3, xmm4, xmm5")
    add("vpackusdw xmm6, xmm7, XMMWORD PTR [r13 + 8]")
    for op in ("vaddss", "vsubss", "vmulss", "vdivss", "vmaxss", "vminss", "vcvtss2sd"):
        add(f"{op} xmm0, xmm1, xmm2")
        add(f"{op} xmm3, xmm4, DWORD PTR [r13 + 8]")
    for op in ("vaddsd", "vmulsd", "vdivsd", "vcvtsd2ss"):
        add(f"{op} xmm0, xmm1, xmm2")
        add(f"{op} xmm3, xmm4, QWORD PTR [r13 + 8]")
    add("vmovss xmm0, DWORD PTR [r13 + 4]")
    add("vmovss DWORD PTR [r13 + 4], xmm1")
    add("vmovsd xmm0, QWORD PTR [r13 + 4]")
    add("vmovsd QWORD PTR [r13 + 4], xmm1")
    add("vmovd xmm0, ecx")
    add("vmovd edx, xmm1")
    add("vucomiss xmm0, xmm1", ARITH_FLAGS)
    add("vucomiss xmm2, DWORD PTR [r13 + 4]", ARITH_FLAGS)
    add("vzeroupper")
    return cases


def _gp_cases():
    cases = []
    for w, (a, b, c) in ((64, ("rax", "rcx", "rdx")), (32, ("eax", "ecx", "edx"))):
        size = "QWORD" if w == 64 else "DWORD"
        for op in ("add", "sub", "cmp"):
            for src in (b, "7", "-1", "-2147483648", f"{size} PTR [r13 + 8]"):
                cases.append((f"{op} {a}, {src}", ARITH_FLAGS))
        for op in ("and", "or", "xor", "test"):
            for src in (b, "255", "-16"):
                cases.append((f"{op} {a}, {src}", LOGIC_FLAGS))
        for op in ("and", "or", "xor"):
            cases.append((f"{op} {a}, {size} PTR [r13 + 16]", LOGIC_FLAGS))
        cases.append((f"imul {a}, {b}", CF | OF))
        cases.append((f"imul {a}, {size} PTR [r13]", CF | OF))
        cases.append((f"neg {a}", ARITH_FLAGS))
        for op in ("shl", "shr"):
            cases.append((f"{op} {a}, 1", CF | ZF | SF | OF | PF))
            for count in (0, 3, 31, 63):
                # count 0 leaves flags alone (then they are cmp's); OF is defined for 1 only
                cases.append((f"cmp {c}, {b}; {op} {a}, {count}", CF | ZF | SF | PF))
        for cc in ("b", "a", "ae", "be"):
            cases.append((f"cmp {b}, {c}; cmov{cc} {a}, {b}", ARITH_FLAGS))
        cases.append((f"mov {a}, {b}", 0))
        cases.append((f"mov {a}, {size} PTR [r13 + 4]", 0))
        cases.append((f"mov {size} PTR [r13 + 4], {b}", 0))
        cases.append((f"mov {size} PTR [r13 + 12], -5", 0))
        cases.append((f"mov {a}, -5", 0))
    cases.append(("movzx eax, WORD PTR [r13 + 6]", 0))
    cases.append(("mov rcx, 3; movzx r9d, WORD PTR [r13 + rcx*2]", 0))
    cases.append(("mov WORD PTR [r13 + 6], cx", 0))
    cases.append(("mov WORD PTR [r13 + 10], r10w", 0))
    cases.append(("lea rax, [rcx + rdx*8 - 24]", 0))
    cases.append(("lea r8, [rcx + 4]", 0))
    cases.append(("lea eax, [rcx + rdx*2]", 0))
    cases.append(("push rcx; push rdx; pop rax; pop r8", 0))
    cases.append(("cmp rcx, rdx; jb .Lgp_skip; mov rax, 1; .Lgp_skip: mov r9, 2", 0))
    return cases


def _random_state(rng, gp_edge: bool, shape: Shape = VEX):
    lanes = shape.lanes
    vec = special_lanes(rng, shape.regs * lanes).reshape(shape.regs, lanes)
    # FMA-sensitive lanes: c close to -(a*b), a and b with long products
    for c, a, b in ((0, 1, 2), (8, 1, 2)) + (((16, 17, 18),) if shape.evex else ()):
        pa, pb = vec[a].view(F32), vec[b].view(F32)
        with np.errstate(all="ignore"):
            prod = (pa.astype(np.float64) * pb.astype(np.float64))
            nudge = rng.choice([0.0, 1e-8, -1e-8, 2.0 ** -24, -(2.0 ** -30)], lanes)
            near = bits((-prod * (1 + nudge)).astype(F32))
        vec[c] = np.where(rng.random(lanes) < 0.4, near, vec[c])
    edges = np.array([0, 1, 2, 7, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                      0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 2 ** 64 - 1,
                      2 ** 64 - 5, 0x123456789ABCDEF0], np.uint64)
    gp = rng.integers(0, 2 ** 63, len(GP_NAMES) + 1, dtype=np.uint64) * np.uint64(2) + \
        rng.integers(0, 2, len(GP_NAMES) + 1, dtype=np.uint64)
    if gp_edge:
        mask = rng.random(len(gp)) < 0.6
        gp[mask] = rng.choice(edges, mask.sum())
    mem = special_lanes(rng, 64)
    mem[rng.random(64) < 0.2] = U32(0x80000000)  # vmaskmovps lanes with only the sign set
    k = rng.integers(0, 1 << 16, 8).astype(np.uint16)
    k[rng.random(8) < 0.25] = rng.choice(np.array([0, 0xFFFF, 0x00FF, 0x8001], np.uint16))
    return vec, gp, mem, k


def _compare_with_the_cpu(tmp_path, cases, shape: Shape, trials: int, seed: int) -> None:
    """Each case's harness natively and emulated from the same random states: all vector
    registers, ten gp registers, memory, k1-7 (EVEX) and the flags the case names must agree."""
    text = ".intel_syntax noprefix\n.text\n" + "".join(
        _harness(f"case{i}", body, shape) for i, (body, _) in enumerate(cases)) + \
        '.section .note.GNU-stack,"",@progbits\n'
    lib = build_native(text, tmp_path, "single")
    m = Machine(text)
    rng = np.random.default_rng(seed)
    n_lanes = shape.regs * shape.lanes
    failures = []
    for i, (body, flag_mask) in enumerate(cases):
        fn = getattr(lib, f"case{i}")
        for trial in range(trials):
            state = _random_state(rng, gp_edge=trial % 2 == 0, shape=shape)
            native = [aligned(a.size, a.dtype) for a in state]
            emulated = [aligned(a.size, a.dtype) for a in state]
            for n, e, a in zip(native, emulated, state):
                n[:] = e[:] = a.reshape(-1)
            fn(*(ptr(a) for a in native))
            addresses = [m.map(a) for a in emulated]
            try:
                m.call(f"case{i}", *addresses)
            finally:
                for address in addresses:
                    m.unmap(address)
            (nv, ng, nm, nk), (ev, eg, em, ek) = native, emulated
            ng[10] &= np.uint64(flag_mask)
            eg[10] &= np.uint64(flag_mask)
            if not all(np.array_equal(n, e) for n, e in zip(native, emulated)):
                diff = np.flatnonzero(nv != ev)
                failures.append(f"{body!r}: vec lanes {diff[:8].tolist()} native "
                                f"{[hex(v) for v in nv[diff[:4]]]} emulated "
                                f"{[hex(v) for v in ev[diff[:4]]]}; gp native "
                                f"{[hex(v) for v in ng[ng != eg]]} emulated "
                                f"{[hex(v) for v in eg[ng != eg]]}; mem equal "
                                f"{np.array_equal(nm, em)}; k native {nk.tolist()} emulated "
                                f"{ek.tolist()}; inputs vec "
                                f"{[hex(v) for v in state[0].reshape(-1)[diff[:4] % n_lanes]]}")
                break
    assert not failures, f"{len(failures)} of {len(cases)} cases differ:\n" + \
        "\n".join(failures[:30])


@native
def test_single_instructions_match_the_cpu(tmp_path):
    """Every VEX form and general-purpose instruction, on special-value states: native and
    emulated results (all 16 ymm, ten gp registers, memory, defined flags) are identical."""
    _compare_with_the_cpu(tmp_path, _vector_cases() + _gp_cases(), VEX, trials=6,
                          seed=20240607)


def _evex_cases():
    """(instruction text, flags to compare) of the EVEX forms: zmm and xmm/ymm16-31, merge and
    zero masking, embedded broadcasts, memory sources, k registers."""
    cases = []

    def add(text, flags=0):
        cases.append((text, flags))

    zmem, bcst, qbcst = "ZMMWORD PTR [r13 + 4]", "DWORD BCST [r13 + 8]", "QWORD BCST [r13 + 8]"
    for op in ("vaddps", "vsubps", "vmulps", "vdivps", "vmaxps", "vminps", "vscalefps",
               "vandps", "vandnps", "vorps", "vxorps", "vpandd", "vpord", "vpxord", "vpaddd",
               "vpsubd"):
        add(f"{op} zmm0, zmm1, zmm2")
        add(f"{op} zmm16{{k1}}, zmm17, zmm18")
        add(f"{op} zmm3{{k2}}{{z}}, zmm4, {bcst}")
        add(f"{op} zmm5{{k3}}, zmm6, {zmem}")
        add(f"{op} ymm20{{k4}}{{z}}, ymm21, ymm22")
        add(f"{op} xmm23, xmm24, xmm25")
    for op in ("vaddpd", "vsubpd", "vmulpd", "vmaxpd", "vscalefpd", "vpaddq"):
        add(f"{op} zmm0, zmm1, zmm2")
        add(f"{op} zmm16{{k1}}{{z}}, zmm17, {qbcst}")
        add(f"{op} zmm3{{k2}}, zmm4, {zmem}")
    for op in ("vfmadd132ps", "vfmadd213ps", "vfmadd231ps", "vfnmadd132ps", "vfnmadd213ps",
               "vfnmadd231ps"):
        add(f"{op} zmm0, zmm1, zmm2")
        add(f"{op} zmm16{{k1}}, zmm17, zmm18")
        add(f"{op} zmm8{{k2}}{{z}}, zmm1, {bcst}")
        add(f"{op} zmm3, zmm4, {zmem}")
    for op in ("vfmadd213pd", "vfmadd231pd"):
        add(f"{op} zmm0, zmm1, zmm2")
        add(f"{op} zmm16{{k1}}, zmm17, {qbcst}")
    for imm in (0x00, 0x01, 0x02, 0x03, 0x04, 0x08, 0x09, 0x0A, 0x0B, 0x13, 0x14, 0x21, 0x4A,
                0xF8):
        add(f"vrndscaleps zmm0, zmm1, {imm}")
    add("vrndscaleps zmm2{k1}{z}, DWORD BCST [r13 + 12], 9")
    add(f"vrndscaleps zmm3{{k2}}, {zmem}, 0x1A")
    for imm in (0x96, 0xCA, 0xE8, 0x01, 0xFF, 0x00, 0x5A):
        add(f"vpternlogd zmm0, zmm1, zmm2, {imm}")
    add(f"vpternlogd zmm16{{k1}}, zmm17, {bcst}, 0x96")
    add(f"vpternlogd zmm3{{k2}}{{z}}, zmm4, {zmem}, 0xE8")
    for op, counts in (("vpslld", (0, 1, 23, 31, 32, 200)), ("vpsrld", (0, 1, 31, 32)),
                       ("vpsllq", (0, 1, 52, 63, 64)), ("vpsraq", (0, 1, 3, 62, 63, 64, 200))):
        for count in counts:
            add(f"{op} zmm0, zmm1, {count}")
        add(f"{op} zmm16{{k1}}{{z}}, zmm17, 5")
    for pred in range(32):
        add(f"vcmpps k1, zmm1, zmm2, {pred}")
    add("vcmpps k2{k3}, zmm4, zmm5, 14")
    add(f"vcmpps k4, zmm6, {bcst}, 1")
    add(f"vcmpps k5{{k6}}, zmm7, {zmem}, 4")
    add("vcmpps k7, ymm20, ymm21, 13")
    add("vblendmps zmm0{k1}, zmm1, zmm2")
    add("vblendmps zmm16{k2}{z}, zmm17, zmm18")
    add(f"vblendmps zmm3{{k3}}, zmm4, {bcst}")
    add("vblendmps zmm5, zmm6, zmm7")
    for op in ("vcvtps2dq", "vcvtdq2ps"):
        add(f"{op} zmm0, zmm1")
        add(f"{op} zmm16{{k1}}{{z}}, {zmem}")
        add(f"{op} zmm2{{k2}}, {bcst}")
    add("vcvtps2pd zmm0, ymm1")
    add("vcvtps2pd zmm16{k1}{z}, ymm17")
    add("vcvtps2pd zmm2{k2}, YMMWORD PTR [r13 + 4]")
    add("vcvtpd2ps ymm0, zmm1")
    add("vcvtpd2ps ymm16{k1}, zmm17")
    add("vcvtpd2ps ymm2{k2}{z}, ZMMWORD PTR [r13 + 8]")
    add("vcvtpd2ps xmm3{k3}, ymm4")
    for mov in ("vmovups", "vmovaps"):
        add(f"{mov} zmm0, zmm1")
        add(f"{mov} zmm16{{k1}}{{z}}, zmm17")
        add(f"{mov} zmm2{{k2}}, zmm3")
    add(f"vmovups zmm0{{k1}}{{z}}, {zmem}")
    add(f"vmovups zmm1{{k2}}, {zmem}")
    add(f"vmovups {zmem}{{k3}}, zmm4")
    add("vmovups YMMWORD PTR [r13 + 12]{k4}, ymm20")
    add("vmovaps ZMMWORD PTR [r13 + 64], zmm5")
    add("vmovntps ZMMWORD PTR [r13 + 128], zmm6; sfence")
    add("vbroadcastss zmm0, xmm1")
    add("vbroadcastss zmm16{k1}{z}, DWORD PTR [r13 + 20]")
    add("vbroadcastss zmm2{k2}, xmm17")
    add("vextractf32x4 xmm0, zmm1, 2")
    add("vextractf32x4 xmm16{k1}{z}, zmm17, 3")
    add("vextractf32x4 xmm2{k2}, ymm3, 1")
    add("vextractf32x4 XMMWORD PTR [r13 + 4]{k3}, zmm4, 1")
    add("vextractf64x4 ymm0, zmm1, 1")
    add("vextractf64x4 ymm16, zmm17, 0")
    add("vextractf32x8 ymm2{k1}, zmm3, 1")
    add("vextractf32x8 YMMWORD PTR [r13 + 8]{k2}, zmm4, 1")
    for imm in (0, 27, 78, 177, 255):
        add(f"vpermilps zmm0{{k1}}, zmm1, {imm}")
        add(f"vshufps zmm16{{k2}}{{z}}, zmm17, zmm18, {imm}")
    add(f"vshufps zmm2, zmm3, {zmem}, 57")
    for imm in (0, 0x55, 0xAA, 0xFF, 0x3C):
        add(f"vpermilpd zmm0, zmm1, {imm}")
    add("vmovshdup zmm0{k1}, zmm1")
    add("vunpckhpd zmm16{k2}{z}, zmm17, zmm18")
    add("vunpckhpd zmm0, zmm1, zmm2")
    # 16-bit elements: float16 conversions, words widened, dwords narrowed (masked stores
    # write only the enabled words)
    add("vcvtph2ps zmm0, ymm1")
    add("vcvtph2ps zmm16{k1}{z}, YMMWORD PTR [r13 + 6]")
    add("vcvtph2ps zmm2{k2}, ymm17")
    add("vcvtps2ph ymm0, zmm1, 0")
    add("vcvtps2ph YMMWORD PTR [r13 + 6]{k3}, zmm4, 0")
    add("vpmovzxwd zmm0, ymm1")
    add("vpmovzxwd zmm16{k1}{z}, YMMWORD PTR [r13 + 2]")
    add("vpmovzxwd zmm2{k2}, ymm17")
    add("vpmovzxwd ymm20{k3}{z}, xmm21")
    add("vpminud zmm0, zmm1, zmm2")
    add("vpermw zmm0, zmm1, zmm2")
    add("vpermw zmm16{k1}{z}, zmm17, zmm18")
    add("vpermw zmm3{k2}, zmm4, ZMMWORD PTR [r13 + 2]")
    add("vpermw ymm20{k3}{z}, ymm21, ymm22")
    add(f"vpminud zmm16{{k1}}{{z}}, zmm17, {bcst}")
    add(f"vpminud zmm3{{k2}}, zmm4, {zmem}")
    add("vpmovdw ymm0, zmm1")
    add("vpmovdw ymm16{k1}{z}, zmm17")
    add("vpmovdw ymm2{k2}, zmm3")
    add("vpmovdw xmm4, ymm5")
    add("vpmovdw YMMWORD PTR [r13 + 6], zmm6")
    add("vpmovdw YMMWORD PTR [r13 + 2]{k4}, zmm7")
    add("vpmovdw XMMWORD PTR [r13 + 10]{k5}, ymm20")
    add("kmovw k1, eax; kmovw ecx, k2")
    add("kmovd k3, edx; kmovd r8d, k3")
    for a, b in ((1, 2), (3, 3), (4, 5)):
        add(f"kortestw k{a}, k{b}", ARITH_FLAGS)
    add("mov eax, 0xFFFF; kmovw k6, eax; kortestw k6, k7", ARITH_FLAGS)
    return cases


needs_native_avx512 = pytest.mark.skipif(
    not (TOOLS and "avx512f" in HOST_ISAS),
    reason=f"needs GNU as/ld and an AVX-512 host (this host runs {', '.join(HOST_ISAS)}); "
           f"the EVEX unit tests below pin the same semantics against the SDM")


@needs_native_avx512
def test_single_evex_instructions_match_the_cpu(tmp_path):
    """The EVEX forms the kernels use (and their neighbours), on special-value states with
    random masks: native and emulated zmm0-31, k1-7, gp registers, memory and the kortestw
    flags are identical."""
    _compare_with_the_cpu(tmp_path, _evex_cases(), EVEX, trials=4, seed=20261201)


# ---------------------------------------------------------------------------------------------
# fused multiply-add: one rounding


def _fma_operands(rng, n: int):
    """Random float32 triples, a third built so that a*b + c lands near a float32 midpoint
    (where rounding twice goes wrong), a third with c close to -(a*b) (cancellation)."""
    a = bits(rng.standard_normal(n).astype(F32) * F32(2.0) ** rng.integers(-20, 20, n))
    b = bits(rng.standard_normal(n).astype(F32) * F32(2.0) ** rng.integers(-20, 20, n))
    c = bits(rng.standard_normal(n).astype(F32) * F32(2.0) ** rng.integers(-40, 40, n))
    kind = rng.integers(0, 3, n)
    # 13-bit significands: the product has up to 26 bits, often exactly a float32 midpoint
    m1 = (rng.integers(1 << 12, 1 << 13, n) * 2.0 ** rng.integers(-12, 0, n)).astype(F32)
    m2 = (rng.integers(1 << 12, 1 << 13, n) * 2.0 ** -12).astype(F32)
    tiny = (m1.astype(np.float64) * m2 * 2.0 ** -rng.integers(28, 60, n)
            * rng.choice([-1, 1], n)).astype(F32)
    a = np.where(kind == 0, bits(m1), a)
    b = np.where(kind == 0, bits(m2), b)
    c = np.where(kind == 0, bits(tiny), c)
    with np.errstate(all="ignore"):
        prod = a.view(F32).astype(np.float64) * b.view(F32)
        near = bits((-prod * (1 + rng.standard_normal(n) * 2.0 ** -22)).astype(F32))
    c = np.where(kind == 1, near, c)
    return a, b, c


def _exact_fma32(a, b, c) -> np.ndarray:
    out = np.empty(len(a), F32)
    for i, (x, y, z) in enumerate(zip(a.view(F32), b.view(F32), c.view(F32))):
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        # float32 rounding of an exact rational: nearest, ties to even, via its two neighbours
        lo = F32(float(exact))
        if Fraction(float(lo)) > exact:
            lo = np.nextafter(lo, F32(-np.inf))
        hi = np.nextafter(lo, F32(np.inf)) if Fraction(float(lo)) != exact else lo
        dl, dh = exact - Fraction(float(lo)), Fraction(float(hi)) - exact
        out[i] = lo if dl < dh or (dl == dh and not bits(lo) & 1) else hi
        if exact == 0:
            out[i] = F32(x) * F32(y) + F32(z)
    return out


FMA_LOOP = """
    .intel_syntax noprefix
    .text
    .globl fma_ps
fma_ps:                       # c[i] = a[i]*b[i] + c[i], n a multiple of 8
    vmovups ymm0, YMMWORD PTR [rdi]
    vmovups ymm1, YMMWORD PTR [rdx]
    vfmadd231ps ymm1, ymm0, YMMWORD PTR [rsi]
    vmovups YMMWORD PTR [rdx], ymm1
    add rdi, 32
    add rsi, 32
    add rdx, 32
    sub rcx, 8
    jne fma_ps
    ret
    .globl fma_pd
fma_pd:                       # c[i] = a[i]*b[i] + c[i] in float64, n a multiple of 4
    vmovupd_placeholder
    .section .note.GNU-stack,"",@progbits
"""
FMA_LOOP = FMA_LOOP.replace("    vmovupd_placeholder\n", """\
    vmovups ymm0, YMMWORD PTR [rdi]
    vmovups ymm1, YMMWORD PTR [rdx]
    vfmadd231pd ymm1, ymm0, YMMWORD PTR [rsi]
    vmovups YMMWORD PTR [rdx], ymm1
    add rdi, 32
    add rsi, 32
    add rdx, 32
    sub rcx, 4
    jne fma_pd
    ret
""")


def _run_fma(machine_or_lib, symbol, a, b, c):
    c = c.copy()
    if isinstance(machine_or_lib, Machine):
        m = machine_or_lib
        m.call(symbol, m.map(a, False), m.map(b, False), m.map(c), len(a))
    else:
        getattr(machine_or_lib, symbol)(ptr(a), ptr(b), ptr(c), ctypes.c_size_t(len(a)))
    return c


def test_fma_rounds_once_on_the_classic_double_rounding_case():
    # (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 is a float32 midpoint; + 2^-70 puts the exact sum just
    # above it. Rounding to float64 first lands on the midpoint, then ties-to-even goes down.
    a = f32(0x3F800800, 0x3F800800, 0x3F800800, 0x3F800800, 0, 0, 0, 0)
    c = np.array([2.0 ** -70, -(2.0 ** -70), 0, 2.0 ** -24, 0, 0, 0, 0], F32)
    twice = ((a.astype(np.float64) * a + c).astype(F32))
    y = _run_fma(Machine(FMA_LOOP), "fma_ps", a, a, c)
    assert bits(twice[0]) == 0x3F801000  # the double-rounding answer, one ulp low
    assert bits(y[:4]).tolist() == [0x3F801001, 0x3F801000, 0x3F801000, 0x3F801001]
    assert np.array_equal(y, _exact_fma32(bits(a), bits(a), bits(c)))


def test_fma_matches_exact_rational_arithmetic():
    rng = np.random.default_rng(5)
    a, b, c = _fma_operands(rng, 4000)
    y = _run_fma(Machine(FMA_LOOP), "fma_ps", a.view(F32), b.view(F32), c.view(F32))
    expected = _exact_fma32(a, b, c)
    assert np.array_equal(bits(y), bits(expected))


@native
def test_fma_ps_and_pd_match_the_cpu_in_bulk(tmp_path):
    rng = np.random.default_rng(6)
    lib, m = build_native(FMA_LOOP, tmp_path, "fma"), Machine(FMA_LOOP)
    a, b, c = (v.view(F32) for v in _fma_operands(rng, 8192))
    a[::97], b[::89], c[::83], c[::79] = F32(np.nan), F32(np.inf), F32(-0.0), F32(-np.inf)
    native_y, emulated_y = _run_fma(lib, "fma_ps", a, b, c), _run_fma(m, "fma_ps", a, b, c)
    assert np.array_equal(bits(native_y), bits(emulated_y))
    # float64: products of 27-bit significands and addends near -(a*b) or tiny
    n = 2048
    ad = rng.integers(1 << 26, 1 << 27, n) * 2.0 ** rng.integers(-60, 0, n)
    bd = rng.integers(1 << 26, 1 << 27, n) * 2.0 ** rng.integers(-60, 0, n)
    kind = rng.integers(0, 3, n)
    cd = np.where(kind == 0, -(ad * bd) * (1 + rng.standard_normal(n) * 2.0 ** -50),
                  np.where(kind == 1, ad * bd * 2.0 ** -rng.integers(53, 80, n),
                           rng.standard_normal(n)))
    cd[::101] = np.nan
    bd[::103] = 1e-310  # subnormal factors
    cd[::107] = -1e-320
    native_d, emulated_d = _run_fma(lib, "fma_pd", ad, bd, cd), _run_fma(m, "fma_pd", ad, bd, cd)
    assert np.array_equal(native_d.view(np.uint64), emulated_d.view(np.uint64))


# ---------------------------------------------------------------------------------------------
# the registered kernels, natively and emulated

ELEMENTWISE = [v for v in VARIANTS if v.op in ("vexp", "rmax")]
AVX512_ELEMENTWISE = [v for v in ELEMENTWISE if v.isa == "avx512f"]
STREAMS = [v for v in VARIANTS if v.op in ("stream_read", "stream_copy")]
LENGTHS = list(range(0, 41)) + [63, 64, 65, 100, 257]
OFFSETS = (0, 4, 12, 36, 60)  # bytes past a 64-byte boundary


def test_every_registered_variant_is_checked_against_the_cpu():
    """The differential tests below cover every registered op, on every ISA."""
    # log_softmax modules: tests/emulator/test_log_softmax_emulated.py, emulated against the CPU
    log_softmax = [v for v in VARIANTS if v.op == "log_softmax"]
    # float16 / bfloat16 softmax modules: tests/emulator/test_half_emulated.py
    halves = [v for v in VARIANTS if v.op == "softmax" and v.element != "f32"]
    checked = {v.name for v in ELEMENTWISE + STREAMS + SOFTMAX + log_softmax + halves}
    assert checked == {v.name for v in VARIANTS}
    assert {v.isa for v in VARIANTS} == {"avx2", "avx512f"}


@pytest.fixture(scope="module")
def native_library(tmp_path_factory):
    """variant -> its module assembled with `as`, linked with `ld` and loaded through ctypes
    (independently of softjit's runtime), built once per module; skips, saying why, when this
    host cannot run the variant's ISA."""
    cache = {}

    def get(v):
        if not TOOLS:
            pytest.skip("needs GNU as and ld")
        if v.isa not in HOST_ISAS:
            pytest.skip(f"this host does not run {v.isa} (it runs {', '.join(HOST_ISAS)}); "
                        f"test_kernels_in_the_emulator checks {v.name} against numpy")
        if v.name not in cache:
            cache[v.name] = build_native(bindings.assembly(v), tmp_path_factory.mktemp(v.op),
                                         v.name)
        return cache[v.name]
    return get


def _call_elementwise(v, runner, x, y_or_out):
    """Run a vexp / rmax / stream variant natively (a ctypes library) or in the emulator
    fixture: (x, y, n) for vexp and stream_copy, (x, n, out) for rmax and stream_read. x is
    read-only in the emulator unless y is x."""
    n = len(x)
    y_is_x = y_or_out is x
    x_first_then_n = v.op in ("vexp", "stream_copy")
    if isinstance(runner, runners.Emulator):
        ax = x if y_is_x else ("ro", x)
        runner.call(v, *((ax, y_or_out, n) if x_first_then_n else (ax, n, y_or_out)))
        return
    f = getattr(runner, v.name)
    if x_first_then_n:
        f(ptr(x), ptr(y_or_out), ctypes.c_size_t(n))
    else:
        f(ptr(x), ctypes.c_size_t(n), ptr(y_or_out))


@pytest.mark.parametrize("v", ELEMENTWISE + STREAMS, ids=lambda v: v.name)
def test_kernels_are_bit_identical_to_the_cpu(v, native_library, emulator):
    """Every length 0..40 (and a few longer, past two unrolled steps of every variant) at
    several alignments, inputs full of special values, out of place and in place: the emulated
    outputs equal the native ones bit for bit, and the emulator saw no access outside x and y."""
    lib = native_library(v)
    rng = np.random.default_rng(11)
    out_of_place = v.op in ("vexp", "stream_copy")
    for n in LENGTHS:
        for off in OFFSETS if n <= 40 else (0, 4):
            x = aligned(n, F32, off)
            x[:] = special_inputs(rng, n)
            if n > 3 and off == 4:
                x[:] = (rng.standard_normal(n) * 30).astype(F32)  # no NaN: a numeric max
            if out_of_place:
                yn, ye = aligned(n, F32, (off + 8) % 64), aligned(n, F32, (off + 8) % 64)
                yn[:], ye[:] = 7, 7
            else:
                yn, ye = np.full(1, 7, F32), np.full(1, 7, F32)
            _call_elementwise(v, lib, x, yn)
            _call_elementwise(v, emulator, x, ye)
            assert np.array_equal(bits(yn), bits(ye)), (n, off, x, yn, ye)
        if v.op == "vexp" and n in (0, 13, 40, 100, 257):  # y is x
            xn, xe = aligned(n, F32, 4), aligned(n, F32, 4)
            xn[:] = xe[:] = special_inputs(rng, n)
            _call_elementwise(v, lib, xn, xn)
            _call_elementwise(v, emulator, xe, xe)
            assert np.array_equal(bits(xn), bits(xe))


def _check_exp(x, y):
    """y = exp(x) within 2 ULP where exp(x) is a normal float32, within one subnormal unit
    (2^-149) below; +inf above the float32 range; NaN for NaN."""
    nan = np.isnan(x)
    assert np.isnan(y[nan]).all()
    x64, y64 = x[~nan].astype(np.float64), y[~nan].astype(np.float64)
    with np.errstate(over="ignore"):
        ref = np.exp(x64)
    big = ref >= 2.0 ** 128 * (1 - 2.0 ** -25)
    assert (y64[big] == np.inf).all()
    normal = ~big & (ref >= 2.0 ** -126)
    ulp = 2.0 ** (np.floor(np.log2(ref[normal])) - 23)
    err = np.abs(np.where(np.isinf(y64[normal]), 2.0 ** 128, y64[normal]) - ref[normal]) / ulp
    assert err.size == 0 or err.max() <= 2.0, (x[~nan][normal][err.argmax()], err.max())
    sub = ~big & ~normal
    assert (np.abs(y64[sub] - ref[sub]) <= 2.0 ** -149).all()
    assert (y64[sub] >= 0).all()


@pytest.mark.parametrize("v", AVX512_ELEMENTWISE, ids=lambda v: v.name)
def test_avx512_kernels_in_the_emulator(v, emulator):
    """AVX-512 kernels, emulated, against numpy (what stands in for the CPU on a host without
    AVX-512): vexp within 2 ULP of exp (float64) where the result is normal, rmax exact and
    NaN-propagating, at every length 0..40 and several alignments."""
    m = emulator
    rng = np.random.default_rng(12)
    for n in LENGTHS:
        for off in OFFSETS if n <= 40 else (0,):
            x = aligned(n, F32, off)
            x[:] = special_inputs(rng, n)
            if n > 3 and off == 4:
                x[:] = (rng.standard_normal(n) * 30).astype(F32)  # no NaN: a numeric max
            if v.op == "vexp":
                y = aligned(n, F32, (off + 20) % 64)
                y[:] = 7
                _call_elementwise(v, m, x, y)
                _check_exp(x, y)
            else:
                out = np.full(1, 7, F32)
                _call_elementwise(v, m, x, out)
                if n == 0:
                    assert out[0] == -np.inf
                elif np.isnan(x).any():
                    assert np.isnan(out[0])
                else:
                    assert out[0] == x.max()
    if v.op == "vexp":  # the special values one by one, and in place
        x = np.array(SPECIAL_VALUES, F32)
        y = x.copy()
        _call_elementwise(v, m, y, y)
        _check_exp(x, y)
        assert bits(y[x == np.inf]) == 0x7F800000 and y[x == -np.inf] == 0
        assert (y[(x == 0)] == 1).all() and (y[x <= -104] == 0).all()


def test_exp_kernels_agree_across_isas(emulator):
    """The AVX2 and AVX-512 vexp kernels (both emulated) never differ by more than 1 ULP."""
    x = np.linspace(-103.0, 88.0, 4001).astype(F32)
    results = []
    for v in (w for w in VARIANTS if w.op == "vexp"):
        y = np.zeros_like(x)
        _call_elementwise(v, emulator, x, y)
        results.append(y)
    for y in results[1:]:
        assert np.abs(bits(y).astype(np.int64) - bits(results[0]).astype(np.int64)).max() <= 1


# softmax: a row driver that calls its passes (call/ret, push/pop, a stack frame)

SOFTMAX = [v for v in VARIANTS if v.op == "softmax" and v.element == "f32"]
# (the scaled ones against numpy: tests/kernels/test_scaled_kernels.py, through their twins)
SOFTMAX_AVX512 = [v for v in SOFTMAX if v.isa == "avx512f" and not v.scaled]
SCALE = np.float32(-1.375)  # what the scaled drivers multiply x by here


def _softmax_rows(rng, rows: int, n: int, x_off: int, y_off: int, gap: int):
    """x and y as rows of n floats, `gap` floats apart, in exactly-sized buffers."""
    stride = 4 * (n + gap)
    size = rows * (n + gap)
    x = aligned(size, F32, x_off)
    y = aligned(size, F32, y_off)
    x[:] = (rng.standard_normal(size) * 12).astype(F32)
    y[:] = 7
    X = np.lib.stride_tricks.as_strided(x, (rows, n), (stride, 4), writeable=True)
    if n:
        X[1, rng.integers(0, n)] = rng.choice([np.nan, np.inf, -np.inf, 1e30])
        if rows > 2:
            X[2, :] = special_inputs(rng, n)
    return x, y, np.array([stride, stride], np.int64)


def _run_softmax(v, runner, x, y, n, rows, strides):
    """The variant's row driver natively (a ctypes library) or in the emulator fixture."""
    status = np.full(rows, 9, np.int32)
    if isinstance(runner, runners.Emulator):
        ret = runner.call(v, ("ro", x), y, n, rows, ("ro", strides), status,
                          symbol=v.driver_symbol)
    else:
        f = getattr(runner, v.driver_symbol)
        f.restype = ctypes.c_size_t
        ret = f(ptr(x), ptr(y), ctypes.c_size_t(n), ctypes.c_size_t(rows), ptr(strides),
                ptr(status))
    return ret, status


@pytest.mark.parametrize("v", SOFTMAX, ids=lambda v: v.name)
def test_softmax_is_bit_identical_to_the_cpu(v, native_library, emulator):
    """Row drivers (and the passes they call) on rows with special values, NaN, +-inf and
    huge values, at tails of every length class and unaligned, a gap between rows: the same
    bits, return value and row marks natively and emulated (scaled drivers: of SCALE * x)."""
    lib, m = native_library(v), emulator
    rng = np.random.default_rng(13)
    for n, x_off, y_off, gap in ((0, 0, 0, 0), (1, 4, 8, 1), (7, 0, 4, 3), (8, 32, 0, 0),
                                 (13, 12, 52, 5), (16, 0, 0, 0), (33, 4, 36, 2),
                                 (40, 60, 20, 7), (130, 8, 28, 1), (303, 20, 4, 2)):
        x, y, strides = _softmax_rows(rng, 3, n, x_off, y_off, gap)
        if v.scaled:
            strides = strides_argument(strides[0], strides[1], SCALE)
        yn, ye = y.copy(), y.copy()
        rn, sn = _run_softmax(v, lib, x, yn, n, 3, strides)
        re, se = _run_softmax(v, m, x, ye, n, 3, strides)
        assert rn == re and np.array_equal(sn, se)
        assert np.array_equal(bits(yn), bits(ye)), (n, x_off, y_off)


@pytest.mark.parametrize("v", SOFTMAX_AVX512, ids=lambda v: v.name)
def test_avx512_softmax_in_the_emulator(v, emulator):
    """Rows of finite values within 1e-5 of the float64 softmax; a row holding NaN or +inf is
    NaN (three-pass) or marked for the caller (two-pass, y left alone); gaps between rows and
    the bytes after the last row are never written."""
    m = emulator
    rng = np.random.default_rng(14)
    for n, x_off, y_off, gap in ((0, 0, 0, 0), (1, 4, 8, 1), (15, 0, 4, 3), (16, 0, 0, 0),
                                 (17, 12, 52, 5), (40, 60, 20, 7), (300, 8, 28, 1)):
        x, y, strides = _softmax_rows(rng, 2, n, x_off, y_off, gap)
        if n:
            x[n + gap + rng.integers(0, n)] = np.nan  # row 1
        ret, status = _run_softmax(v, m, x, y, n, 2, strides)
        X = np.lib.stride_tricks.as_strided(x, (2, n), (strides[0], 4))
        Y = np.lib.stride_tricks.as_strided(y, (2, n), (strides[0], 4))
        mask = np.ones(len(y), bool)
        mask[[r * (n + gap) + i for r in range(2) for i in range(n)]] = False
        assert (y[mask] == 7).all()  # gaps untouched
        if n == 0:
            continue
        x64 = X[0].astype(np.float64)
        ref = np.exp(x64 - x64.max())
        ref /= ref.sum()
        normal = ref >= 2.0 ** -126
        assert (np.abs(Y[0][normal] - ref[normal]) <= 1e-5 * ref[normal]).all()
        assert (np.abs(Y[0][~normal] - ref[~normal]) <= 2.0 ** -126).all()
        if v.algorithm == "two-pass":
            assert ret == 1 and status.tolist() == [0, 1] and (Y[1] == 7).all()
        else:
            assert ret == 0 and status.tolist() == [0, 0] and np.isnan(Y[1]).all()


# ---------------------------------------------------------------------------------------------
# EVEX semantics pinned against the SDM (for hosts without AVX-512), and the memory model

HEAD = ".intel_syntax noprefix\n.text\n.globl f\nf:\n"


def run(body: str, *args, **kw):
    """Assemble-free: run `body` (instructions separated by newlines or ';') as f(args)."""
    text = HEAD + "".join(f"\t{line.strip()}\n" for line in body.replace(";", "\n").split("\n")
                          if line.strip()) + "\tret\n"
    m = Machine(text)
    mapped = [m.map(a, writable=kw.get("writable", True)) if isinstance(a, np.ndarray) else a
              for a in args]
    ret = m.call("f", *mapped)
    return m, ret


LOAD3 = "vmovups zmm1, ZMMWORD PTR [rdi]; vmovups zmm2, ZMMWORD PTR [rdi + 64]"


def binary_zmm(op: str, a, b, extra: str = ""):
    """zmm0 = op(zmm1 = a, zmm2 = b) over 16 lanes (a, b: uint32 bit patterns)."""
    data = np.concatenate([np.resize(np.asarray(a, U32), 16), np.resize(np.asarray(b, U32), 16),
                           np.zeros(16, U32)])
    run(f"{LOAD3}; {op} zmm0, zmm1, zmm2{extra}; vmovups ZMMWORD PTR [rdi + 128], zmm0", data)
    return data[32:]


def test_vmaxps_vminps_return_the_second_source_on_nan_and_zeros():
    qnan, snan = 0x7FC00001, 0x7F800002
    a = [qnan, 0x3F800000, snan, 0x3F800000, 0x00000000, 0x80000000, 0x40000000, 0xFFC00000]
    b = [0x3F800000, qnan, 0x3F800000, snan, 0x80000000, 0x00000000, 0x3F800000, 0x7FC00003]
    mx = binary_zmm("vmaxps", a, b)[:8]
    mn = binary_zmm("vminps", a, b)[:8]
    assert mx.tolist() == [0x3F800000, qnan, 0x3F800000, snan, 0x80000000, 0x00000000,
                           0x40000000, 0x7FC00003]  # SNaN passes unquieted
    assert mn.tolist() == [0x3F800000, qnan, 0x3F800000, snan, 0x80000000, 0x00000000,
                           0x3F800000, 0x7FC00003]


SCALEF_CASES = [  # (a, b, expected) float32 bit patterns, VSCALEFPS = a * 2^floor(b)
    (1.0, 3.0, 8.0), (1.5, 2.7, 6.0), (1.5, -2.2, 0.1875), (1.0, -1e-40, 0.5),
    (1.0, 1e-40, 1.0), (3.0, -150.0, 0x00000002),  # 1.5 subnormal units: ties to even
    (1.0, -149.0, 0x00000001), (1.0, -150.0, 0.0), (1e-45, 10.0, 0x00000400),
    (1.0, 128.0, np.inf), (-1.0, 128.0, -np.inf), (3e38, 1.0, np.inf), (1.0, 1e10, np.inf),
    (1.0, -1e10, 0.0), (-1.0, -1e10, 0x80000000), (1.0, np.inf, np.inf),
    (-2.0, np.inf, -np.inf), (1.0, -np.inf, 0.0), (-1.0, -np.inf, 0x80000000),
    (0.0, np.inf, 0xFFC00000), (-0.0, np.inf, 0xFFC00000), (np.inf, -np.inf, 0xFFC00000),
    (np.inf, np.inf, np.inf), (np.inf, -5.0, np.inf), (-np.inf, 5.0, -np.inf),
    (0.0, -np.inf, 0.0), (-0.0, 5.0, 0x80000000), (0x7FC00001, 1.0, 0x7FC00001),
    (0x7F800001, 1.0, 0x7FC00001), (1.0, 0xFF800002, 0xFFC00002),
    (0x7FC00005, 0x7FC00006, 0x7FC00005), (0.0, 0x7F800003, 0x7FC00003),
    (0x7FC00001, np.inf, np.inf), (0xFFC00001, np.inf, np.inf), (0x7FC12345, -np.inf, 0.0),
    (0xFFD00001, -np.inf, 0.0), (0x7F800001, np.inf, 0x7FC00001),
    (0xFF800002, -np.inf, 0xFFC00002),  # a quiet NaN times 2^+-inf is +inf / +0; SNaN stays NaN
]


def _as_bits(v) -> int:
    return int(v) if isinstance(v, int) else int(bits(F32(v)))


def test_vscalefps_special_cases():
    a = [_as_bits(c[0]) for c in SCALEF_CASES]
    b = [_as_bits(c[1]) for c in SCALEF_CASES]
    got = np.concatenate([binary_zmm("vscalefps", a[i:i + 16], b[i:i + 16])
                          for i in range(0, len(a), 16)])[:len(a)]
    want = [_as_bits(c[2]) for c in SCALEF_CASES]
    assert [hex(g) for g in got] == [hex(w) for w in want]


def test_vscalefpd_scales_doubles():
    a = np.array([1.5, 3.0, -1.0, 1.0, 5e-324, 1.0, 0.0, np.inf], np.float64)
    b = np.array([3.9, -1075.0, 1024.0, -1074.0, 1.0, np.inf, -np.inf, -np.inf], np.float64)
    got = binary_zmm("vscalefpd", a.view(U32), b.view(U32)).view(np.float64)
    assert got[:6].tolist() == [12.0, 1e-323, -np.inf, 5e-324, 1e-323, np.inf]  # ties to even
    assert got[6] == 0 and np.isnan(got[7])


def test_vrndscaleps_modes_and_nan():
    x = np.array([2.5, -2.5, 1.25, -0.3, 0.7, 3.5, np.nan, -np.inf, 1e30, -0.0, 5.75, 0.5,
                  -1.5, 7.0, 0.0, 8388609.0], F32)
    x[14] = f32(0x7F800001)[0]  # a signalling NaN
    data = np.concatenate([bits(x), np.zeros(16 * 6, U32)])
    body = "vmovups zmm1, ZMMWORD PTR [rdi]\n" + "\n".join(
        f"vrndscaleps zmm0, zmm1, {imm}\nvmovups ZMMWORD PTR [rdi + {64 * (k + 1)}], zmm0"
        for k, imm in enumerate((8, 9, 10, 11, 0x14, 0x13)))
    run(body, data)
    out = data[16:].view(F32).reshape(6, 16)
    numbers = ~np.isnan(x)
    for row, fn in zip(out[:4], (np.rint, np.floor, np.ceil, np.trunc)):
        assert np.array_equal(bits(row[numbers]), bits(fn(x[numbers])))  # signs of zeros too
        assert bits(row[6]) == bits(F32(np.nan)) and bits(row[14]) == 0x7FC00001  # quieted
    # M = 1 (multiples of 1/2): imm bit 2 selects MXCSR rounding (nearest even); 3 truncates
    assert out[4][:6].tolist() == [2.5, -2.5, 1.0, -0.5, 0.5, 3.5]
    assert out[5][:6].tolist() == [2.5, -2.5, 1.0, -0.0, 0.5, 3.5] and np.signbit(out[5][3])
    assert np.signbit(out[2][3]) and np.signbit(out[3][9])  # ceil(-0.3) = -0, trunc(-0) = -0


def test_write_masks_merge_and_zero():
    a = np.arange(16, dtype=F32) + 1
    data = np.concatenate([bits(a), bits(a * 10), np.full(48, 0x7F7F7F7F, U32)])
    run(f"""mov eax, 0x5A0F; kmovw k1, eax; {LOAD3}
            vmovups zmm0, ZMMWORD PTR [rdi + 128]
            vaddps zmm0{{k1}}, zmm1, zmm2
            vmovups ZMMWORD PTR [rdi + 128], zmm0
            vaddps zmm3{{k1}}{{z}}, zmm1, zmm2
            vmovups ZMMWORD PTR [rdi + 192], zmm3""", data)
    k = np.array([(0x5A0F >> i) & 1 for i in range(16)], bool)
    merged, zeroed = data[32:48], data[48:64].view(F32)
    assert np.array_equal(merged, np.where(k, bits(a * 11), U32(0x7F7F7F7F)))
    assert np.array_equal(zeroed, np.where(k, a * 11, 0))


def test_masked_load_and_store_do_not_touch_masked_lanes_beyond_the_buffer():
    x = np.arange(3, dtype=F32) + 1  # 12 bytes; a zmm access would read 64
    body = """kmovw k1, esi
              vmovups zmm0{k1}{z}, ZMMWORD PTR [rdi]
              vaddps zmm0, zmm0, zmm0
              vmovups ZMMWORD PTR [rdi]{k1}, zmm0
              vcmpps k2{k1}, zmm0, DWORD BCST [rdx], 14
              kmovw eax, k2"""
    limit = np.array([3.0], F32)
    m, ret = run(body, x, 0b111, limit)
    assert x.tolist() == [2, 4, 6] and ret == 0b110
    with pytest.raises(EmulatedFault) as e:
        run(body, x, 0b1111, limit)
    assert e.value.size == 4 and e.value.line == 6 and "vmovups zmm0{k1}{z}" in e.value.instruction
    # AVX2: VMASKMOVPS lanes whose sign bit is clear are not accessed either
    y = np.arange(5, dtype=F32) + 1
    mask = np.array([-1, -1, -1, -1, -1, 0, 0, 0], np.int32)
    body2 = """vmovups ymm1, YMMWORD PTR [rsi]
               vmaskmovps ymm0, ymm1, YMMWORD PTR [rdi]
               vaddps ymm0, ymm0, ymm0
               vmaskmovps YMMWORD PTR [rdi], ymm1, ymm0"""
    run(body2, y, mask)
    assert y.tolist() == [2, 4, 6, 8, 10]
    mask[5] = -1
    with pytest.raises(EmulatedFault, match="past the end"):
        run(body2, y, mask)


def test_out_of_bounds_access_faults_with_instruction_line_address_and_size():
    x = np.zeros(15, F32)
    text = HEAD + "\tvmovups zmm0, ZMMWORD PTR [rdi]\n\tret\n"
    m = Machine(text)
    addr = m.map(x)
    with pytest.raises(EmulatedFault) as e:
        m.call("f", addr)
    f = e.value
    assert (f.address, f.size, f.line) == (addr, 64, 5)
    assert f.instruction == "vmovups zmm0, ZMMWORD PTR [rdi]"
    assert "4 bytes past the end" in str(f)
    with pytest.raises(EmulatedFault, match="read outside mapped memory"):
        run("mov rax, QWORD PTR [rdi - 8]", x)
    with pytest.raises(EmulatedFault):  # one byte before the start
        run("vmovups ymm0, YMMWORD PTR [rdi - 1]", np.zeros(64, F32))


def test_read_only_memory_and_rodata_fault_on_write():
    x = np.zeros(16, F32)
    with pytest.raises(EmulatedFault, match="read-only"):
        run("vmovups YMMWORD PTR [rdi], ymm0", x, writable=False)
    text = HEAD + "\tmov eax, 1\n\tmov DWORD PTR [rip + .Lc], eax\n\tret\n" \
                  "\t.section .rodata\n.Lc:\n\t.long 5\n"
    with pytest.raises(EmulatedFault, match="read-only .rodata"):
        Machine(text).call("f")
    with pytest.raises(ValueError, match="read-only"):
        x.flags.writeable = False
        Machine(HEAD + "\tret\n").map(x)


def test_aligned_moves_fault_when_misaligned():
    x = aligned(32, F32, 0)
    run("vmovaps ymm0, YMMWORD PTR [rdi + 32]; vmovaps YMMWORD PTR [rdi], ymm0", x)
    run("vmovaps zmm0, ZMMWORD PTR [rdi + 64]; vmovntps ZMMWORD PTR [rdi], zmm0; sfence", x)
    for body in ("vmovaps ymm0, YMMWORD PTR [rdi + 16]", "vmovaps YMMWORD PTR [rdi + 4], ymm0",
                 "vmovaps zmm0, ZMMWORD PTR [rdi + 32]", "vmovntps YMMWORD PTR [rdi + 16], ymm0",
                 "vmovaps xmm1{k1}, XMMWORD PTR [rdi + 4]"):
        with pytest.raises(EmulatedFault, match="misaligned"):
            run(body, x)
    y = aligned(16, F32, 4)  # the real array is misaligned; so is its emulated address
    with pytest.raises(EmulatedFault, match="misaligned"):
        run("vmovaps xmm0, XMMWORD PTR [rdi]", y)


def test_mapping_preserves_alignment_and_leaves_gaps():
    m = Machine(HEAD + "\tret\n")
    arrays = [aligned(n, dt, off) for n, dt, off in ((5, F32, 4), (17, np.float64, 24),
                                                    (0, F32, 12), (100, np.uint8, 63))]
    addrs = [m.map(a) for a in arrays]
    for a, addr in zip(arrays, addrs):
        assert addr % 64 == a.ctypes.data % 64
    regions = sorted(m.regions, key=lambda r: r.start)
    for r1, r2 in zip(regions, regions[1:]):
        assert r2.start - r1.end >= 4096
    with pytest.raises(ValueError):
        m.map(np.zeros((4, 4), F32)[:, 1])


def test_instruction_limit_and_abi_checks():
    with pytest.raises(InstructionLimitExceeded):
        Machine(HEAD + ".Lspin:\n\tjmp .Lspin\n", instruction_limit=1000).call("f")
    with pytest.raises(ABIViolation, match="rbx"):
        run("mov rbx, 1")
    with pytest.raises(ABIViolation, match="r15"):
        run("xor r15d, r15d")
    with pytest.raises(ABIViolation, match="aligned"):
        Machine(HEAD + "\tcall g\n\tret\ng:\n\tret\n").call("f")
    m, ret = run("push rbx; push r12; sub rsp, 24; mov QWORD PTR [rsp + 16], rdi;"
                 "mov rbx, 5; mov r12, QWORD PTR [rsp + 16]; lea rax, [rbx + r12*2];"
                 "add rsp, 24; pop r12; pop rbx", 100)
    assert ret == 205 and m.instructions_executed == 11


def test_call_ret_push_pop_and_float_arguments():
    text = HEAD + """\tsub rsp, 8
\tcall twice
\tadd rsp, 8
\tvaddss xmm0, xmm0, xmm1
\tret
twice:
\tadd rdi, rdi
\tmov rax, rdi
\tvaddss xmm0, xmm0, xmm0
\tret
"""
    m = Machine(text)
    assert m.call("f", 21, F32(1.5), F32(0.25)) == 42
    assert m.reg("xmm0").view(F32)[0] == 3.25
    assert m.reg("xmm0")[1:].tolist() == [0, 0, 0]  # float arguments zero the rest
    with pytest.raises(TypeError):
        m.call("f", 1.5)
    with pytest.raises(KeyError):
        m.call("twice", 1)  # not .globl


def test_vpternlogd_vblendmps_vpsraq_and_k_registers():
    a = np.array([0xF0F0F0F0] * 16, U32)
    b = np.array([0xCCCCCCCC] * 16, U32)
    c = np.array([0xAAAAAAAA] * 16, U32)
    data = np.concatenate([a, b, c, np.zeros(16 * 4, U32)])
    run("""vmovups zmm0, ZMMWORD PTR [rdi]; vmovups zmm1, ZMMWORD PTR [rdi + 64]
           vmovups zmm2, ZMMWORD PTR [rdi + 128]
           vmovaps zmm3, zmm0; vpternlogd zmm3, zmm1, zmm2, 0x96
           vmovups ZMMWORD PTR [rdi + 192], zmm3
           vmovaps zmm3, zmm0; vpternlogd zmm3, zmm1, zmm2, 0xCA
           vmovups ZMMWORD PTR [rdi + 256], zmm3
           mov eax, 0x00FF; kmovw k1, eax
           vblendmps zmm4{k1}, zmm0, zmm1
           vmovups ZMMWORD PTR [rdi + 320], zmm4
           vblendmps zmm4{k1}{z}, zmm0, zmm1
           vmovups ZMMWORD PTR [rdi + 384], zmm4""", data)
    out = data[48:].reshape(4, 16)
    assert (out[0] == (a ^ b ^ c)).all()
    assert (out[1] == ((a & b) | (~a & c))).all()
    assert out[2].tolist() == [0xCCCCCCCC] * 8 + [0xF0F0F0F0] * 8
    assert out[3].tolist() == [0xCCCCCCCC] * 8 + [0] * 8
    q = np.array([-(2 ** 40), 5, -1, 2 ** 62, 0, -7, 1, -(2 ** 63)], np.int64)
    d = np.concatenate([q, np.zeros(24, np.int64)])
    run("""vmovups zmm0, ZMMWORD PTR [rdi]
           vpsraq zmm1, zmm0, 3; vmovups ZMMWORD PTR [rdi + 64], zmm1
           vpsraq zmm1, zmm0, 200; vmovups ZMMWORD PTR [rdi + 128], zmm1
           vpsllq zmm1, zmm0, 64; vmovups ZMMWORD PTR [rdi + 192], zmm1""", d)
    assert (d[8:16] == q >> 3).all() and (d[16:24] == q >> 63).all() and (d[24:] == 0).all()
    m, ret = run("""mov eax, -1; kmovw k1, eax; xor ecx, ecx; kmovw k2, ecx
                    kortestw k1, k2; jae .Lno_cf; mov eax, 7; jmp .Lend
                    .Lno_cf: mov eax, 9
                    .Lend: kmovd k3, eax""")
    assert ret == 7 and m.reg("k3") == 7


def test_widening_narrowing_and_extracts():
    x = (np.arange(16, dtype=F32) - 7.5) * F32(1.25)
    x[3] = np.nan
    out = np.zeros(16 * 4, U32)
    run("""vmovups zmm1, ZMMWORD PTR [rdi]
           vcvtps2pd zmm2, ymm1
           vaddpd zmm2, zmm2, QWORD BCST [rsi]
           vcvtpd2ps ymm3, zmm2
           vmovups YMMWORD PTR [rdx], ymm3
           vextractf64x4 ymm4, zmm1, 1
           vmovups YMMWORD PTR [rdx + 32], ymm4
           vextractf32x4 XMMWORD PTR [rdx + 64], zmm1, 2
           mov eax, 5; kmovw k1, eax
           vextractf32x8 YMMWORD PTR [rdx + 96]{k1}, zmm1, 1
           vextractf32x4 xmm5{k1}{z}, ymm1, 1
           vmovups XMMWORD PTR [rdx + 128], xmm5""",
        x, np.array([0.5], np.float64), out)
    o = out.view(F32)
    assert np.array_equal(o[:8], x[:8] + F32(0.5), equal_nan=True)
    assert np.array_equal(o[8:16], x[8:]) and np.array_equal(o[16:20], x[8:12])
    assert o[24] == x[8] and o[26] == x[10] and out[25] == 0 and out[27:32].tolist() == [0] * 5
    assert o[32] == x[4] and o[33] == 0 and o[34] == x[6] and o[35] == 0


def test_a_kernel_with_an_unmasked_tail_is_caught():
    """Break a real AVX-512 kernel (drop the tail store's mask): the emulator reports the store
    that runs past y, at its line, where real hardware would silently corrupt memory."""
    v = next(w for w in AVX512_ELEMENTWISE if w.op == "vexp")
    text = render_module(v.build())
    masked = [line for line in text.splitlines() if "]{k1}, " in line and "vmovups" in line]
    assert len(masked) == 1
    broken = text.replace(masked[0], masked[0].replace("{k1}", ""))
    line = broken.splitlines().index(masked[0].replace("{k1}", "")) + 1
    m = Machine(broken)
    x, y = np.ones(13, F32), np.zeros(13, F32)
    with pytest.raises(EmulatedFault) as e:
        m.call(v.name, m.map(x, False), m.map(y), 13)
    assert e.value.line == line and e.value.size == 64 and "12 bytes past the end" in str(e.value)
