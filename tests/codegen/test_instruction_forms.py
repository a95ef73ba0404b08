"""The instruction forms kernel authors reach for beyond the built-in kernels, each checked three
ways: built through the codegen (Function, so the encodability check runs), run natively and in
the emulator on random and special inputs and compared bit for bit (registers at full width,
memory and the k mask), and assembled and disassembled back to the same instructions.

Every case is a tiny kernel: load four vector registers (at the target's full width, so the
zeroing of the bits above a narrower result is checked too) and a k mask, run the instruction,
store everything back. AVX-512 cases run unmasked, merge-masked and zero-masked where the form
allows. The approximations (vrcpps, vrsqrtps, vrcp14ps, vrsqrt14ps) are the exception: their
bits are the CPU's own, so native and emulated results are compared against the architectural
error bound, and bit for bit only where the SDM fixes the result (see handlers/approximate.py).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import softjit
from softjit.codegen.module import Module
from softjit.codegen.pipeline import render_module
from softjit.codegen.emulator import Machine
from softjit.codegen.emulator.handlers.approximate import RELATIVE_ERROR_BOUND
from softjit.codegen.errors import OperandError, TargetFeatureError
from softjit.codegen.isa import AVX2, AVX512F
from softjit.codegen.operands import Masked, ptr
from softjit.codegen.abi import Param, Signature
from softjit.codegen.stream import Function

from test_asm_roundtrip import disassemble, mismatch, text_instructions

HOST_ISAS = softjit.host_isas()
TOOLS = shutil.which("as") is not None and shutil.which("ld") is not None

SPECIALS = np.array([
    0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC12345, 0x7F800001,
    0xFFA00001, 0x00000001, 0x807FFFFF, 0x00400000, 0x00800000, 0x7F7FFFFF, 0xFF7FFFFF,
    0x3F800000, 0xBF800000, 0x4F000000, 0xCF000000, 0x477FF000, 0x477FF001, 0x33000001,
    0x387FC000, 0x7E800000, 0x3FC00000, 0x40200000, 0x4B400000,
], np.uint32)

VECTORS = 4  # v0..v3, loaded from vin[64 * i] and stored to vout[64 * i]
MEM_DWORDS = 64


@dataclass(frozen=True)
class Case:
    name: str
    target: object
    body: Callable  # body(f, v, k, mem, d): emits the instruction; d(view) wraps the destination
    width: int = 0  # the view width of v (0: the target's)
    index_inputs: bool = False  # v1 holds gather indexes into mem, v2 the AVX2 mask
    approximate: str = ""  # the mnemonic whose result is only bounded
    masking: str = ""  # "", "merge" or "zero"


def _w(case_width, target):
    return case_width or target.vector_bits


def _variants(name, target, body, widths, *, masks=("", "merge", "zero"), **kw):
    out = []
    for width in widths:
        for masking in (masks if target.has_masks else ("",)):
            out.append(Case(f"{name}_{target.name}_{width}{'_' + masking if masking else ''}",
                            target, body, width, masking=masking, **kw))
    return out


def _cases():
    cases = []
    vex_widths, evex_widths = (128, 256), (128, 256, 512)
    for target, widths in ((AVX2, vex_widths), (AVX512F, evex_widths)):
        evex = target is AVX512F
        unary = ["vsqrtps", "vcvtdq2ps", "vcvttps2dq"]
        for mnemonic in unary:
            cases += _variants(mnemonic, target, lambda f, v, k, m, d, mn=mnemonic:
                               f.emit(mn, d(v[0]), v[1]), widths)
            cases += _variants(mnemonic + "_mem", target, lambda f, v, k, m, d, mn=mnemonic:
                               f.emit(mn, d(v[0]), ptr(m, 4)), widths, masks=("", "merge"))
            if evex:
                cases += _variants(mnemonic + "_bcst", target, lambda f, v, k, m, d, mn=mnemonic:
                                   f.emit(mn, d(v[0]), ptr(m, 8).bcst()), widths, masks=("",))
        approximations = ("vrcp14ps", "vrsqrt14ps") if evex else ("vrcpps", "vrsqrtps")
        for mnemonic in approximations:
            cases += _variants(mnemonic, target, lambda f, v, k, m, d, mn=mnemonic:
                               f.emit(mn, d(v[0]), v[1]), widths, approximate=mnemonic)
        binary = ["vdivps", "vpermps"]
        fmas = [f"vf{neg}m{op}{order}ps" for neg in ("", "n") for op in ("add", "sub")
                for order in ("132", "213", "231")]
        if evex:
            binary += ["vpermt2ps", "vblendmps"]
        for mnemonic in binary + fmas:
            ws = tuple(w for w in widths if w >= 256) if mnemonic == "vpermps" else widths
            cases += _variants(mnemonic, target, lambda f, v, k, m, d, mn=mnemonic:
                               f.emit(mn, d(v[0]), v[1], v[2]), ws)
            cases += _variants(mnemonic + "_mem", target, lambda f, v, k, m, d, mn=mnemonic:
                               f.emit(mn, d(v[0]), v[1], ptr(m, 12)), ws, masks=("", "merge"))
            if evex:
                cases += _variants(mnemonic + "_bcst", target, lambda f, v, k, m, d, mn=mnemonic:
                                   f.emit(mn, d(v[0]), v[1], ptr(m, 16).bcst()), ws, masks=("",))
        if not evex:
            cases += _variants("vblendvps", target, lambda f, v, k, m, d:
                               f.vblendvps(v[0], v[1], v[2], v[3]), widths)
            cases += _variants("vblendvps_mem", target, lambda f, v, k, m, d:
                               f.vblendvps(v[0], v[1], ptr(m, 4), v[3]), widths)
        # half precision
        cases += _variants("vcvtph2ps", target, lambda f, v, k, m, d:
                           f.vcvtph2ps(d(v[0]), v[1].reg.view(max(v[0].bits // 2, 128))), widths)
        cases += _variants("vcvtph2ps_mem", target, lambda f, v, k, m, d:
                           f.vcvtph2ps(d(v[0]), ptr(m, 6)), widths, masks=("", "merge"))
        for imm in (0, 1, 2, 3, 4):
            cases += _variants(f"vcvtps2ph{imm}", target, lambda f, v, k, m, d, imm=imm:
                               f.vcvtps2ph(d(v[0].reg.view(max(v[1].bits // 2, 128))), v[1], imm),
                               widths)
        cases += _variants("vcvtps2ph_store", target, lambda f, v, k, m, d:
                           f.vcvtps2ph(d(ptr(m, 2)), v[1], 4), widths, masks=("", "merge"))
        # broadcasts and shuffles
        cases += _variants("vpbroadcastd", target, lambda f, v, k, m, d:
                           f.vpbroadcastd(d(v[0]), v[1].reg.xmm), widths)
        cases += _variants("vpbroadcastd_mem", target, lambda f, v, k, m, d:
                           f.vpbroadcastd(d(v[0]), ptr(m, 20)), widths)
        if evex:
            def broadcast_gp(f, v, k, m, d):
                value = f.gp("value")
                f.mov(value.r32, ptr(m, 12, bits=32))
                f.vpbroadcastd(d(v[0]), value.r32)
            cases += _variants("vpbroadcastd_gp", target, broadcast_gp, widths)
        for imm in (0, 27, 177, 255):
            cases += _variants(f"vpshufd{imm}", target, lambda f, v, k, m, d, imm=imm:
                               f.vpshufd(d(v[0]), v[1], imm), widths)
        cases += _variants("vpshufd_mem", target, lambda f, v, k, m, d:
                           f.vpshufd(d(v[0]), ptr(m, 4), 57), widths, masks=("",))
        if evex:
            cases += _variants("vpshufd_bcst", target, lambda f, v, k, m, d:
                               f.vpshufd(d(v[0]), ptr(m, 4).bcst(), 57), widths, masks=("",))
            for imm in (0x96, 0xE8, 0xCA, 0x01):
                cases += _variants(f"vpternlogd{imm}", target, lambda f, v, k, m, d, imm=imm:
                                   f.vpternlogd(d(v[0]), v[1], v[2], imm), widths)
            for mn, w in (("vextractf32x4", 256), ("vextractf32x4", 512), ("vextractf32x8", 512)):
                part = 128 if mn.endswith("x4") else 256
                cases += _variants(f"{mn}_{w}", target, lambda f, v, k, m, d, mn=mn, w=w, part=part:
                                   f.emit(mn, d(v[0].reg.view(part)), v[1].reg.view(w), 1), (w,))
                cases += _variants(f"{mn}_{w}_store", target, lambda f, v, k, m, d, mn=mn, w=w:
                                   f.emit(mn, d(ptr(m, 4)), v[1].reg.view(w), 1), (w,),
                                   masks=("", "merge"))
            for mn, w in (("vinsertf32x4", 256), ("vinsertf32x4", 512), ("vinsertf32x8", 512)):
                part = 128 if mn.endswith("x4") else 256
                for imm in (0, 1):
                    cases += _variants(f"{mn}_{w}_{imm}", target,
                                       lambda f, v, k, m, d, mn=mn, w=w, part=part, imm=imm:
                                       f.emit(mn, d(v[0].reg.view(w)), v[1].reg.view(w),
                                              v[2].reg.view(part), imm), (w,))
                cases += _variants(f"{mn}_{w}_mem", target, lambda f, v, k, m, d, mn=mn, w=w:
                                   f.emit(mn, d(v[0].reg.view(w)), v[1].reg.view(w),
                                          ptr(m, 8), 1), (w,), masks=("", "merge"))
            cases += _variants("vgatherdps_k", target, lambda f, v, k, m, d:
                               f.vgatherdps(Masked(v[0], k), ptr(m, 4, v[1], 4)), widths,
                               masks=("",), index_inputs=True)
        else:
            for imm in (0, 1):
                cases += _variants(f"vextractf128_{imm}", target, lambda f, v, k, m, d, imm=imm:
                                   f.vextractf128(v[0].reg.xmm, v[1].reg.ymm, imm), (256,))
                cases += _variants(f"vinsertf128_{imm}", target, lambda f, v, k, m, d, imm=imm:
                                   f.vinsertf128(v[0].reg.ymm, v[1].reg.ymm, v[2].reg.xmm, imm),
                                   (256,))
            cases += _variants("vinsertf128_mem", target, lambda f, v, k, m, d:
                               f.vinsertf128(v[0].reg.ymm, v[1].reg.ymm, ptr(m, 4), 1), (256,))
            cases += _variants("vgatherdps", target, lambda f, v, k, m, d:
                               f.vgatherdps(v[0], ptr(m, 4, v[1], 4), v[2]), widths,
                               index_inputs=True)
        cases += _variants("prefetch", target, lambda f, v, k, m, d:
                           (f.prefetcht0(ptr(m, 64)), f.prefetchnta(ptr(m, -4096))), widths[:1],
                           masks=("",))
    return cases


CASES = _cases()


def _build(case: Case, symbol: str) -> Function:
    """void symbol(const void* vin, void* mem, uint32_t* kio, void* vout)"""
    target = case.target
    f = Function(Signature(symbol, (Param("const void*", "vin"), Param("void*", "mem"),
                                    Param("uint32_t*", "kio"), Param("void*", "vout"))), target)
    vin, mem, kio, vout = f.args
    regs = f.vecs("v", VECTORS)
    for i, r in enumerate(regs):
        f.vmovups(r, ptr(vin, 64 * i))
    k = None
    if target.has_masks:
        k = f.mask("k")
        f.kmovw(k, ptr(kio, 0, bits=16))
    width = _w(case.width, target)
    views = [r.view(width) for r in regs]
    if case.masking == "merge":
        def d(x):
            return Masked(x, k)
    elif case.masking == "zero":
        def d(x):
            return Masked(x, k, zeroing=True)
    else:
        def d(x):
            return x
    case.body(f, views, k, mem, d)
    for i, r in enumerate(regs):
        f.vmovups(ptr(vout, 64 * i), r)
    if k is not None:
        f.kmovw(ptr(kio, 4, bits=16), k)
    f.ret()
    return f


def _module(cases, target):
    functions = [_build(c, f"case{i}") for i, c in enumerate(cases)]
    return Module("forms", target, "instruction form checks", tuple(functions))


def _inputs(case: Case, rng):
    vin = rng.integers(0, 1 << 32, VECTORS * 16, dtype=np.uint64).astype(np.uint32)
    pick = rng.random(vin.size) < 0.4
    vin[pick] = rng.choice(SPECIALS, pick.sum())
    near = rng.random(vin.size) < 0.3  # ordinary magnitudes: rounding, not just overflow
    vin[near] = (rng.standard_normal(near.sum()) * 8).astype(np.float32).view(np.uint32)
    mem = rng.integers(0, 1 << 32, MEM_DWORDS, dtype=np.uint64).astype(np.uint32)
    mem[rng.random(MEM_DWORDS) < 0.3] = rng.choice(SPECIALS, 1)[0]
    if case.index_inputs:
        vin[16:32] = rng.integers(0, MEM_DWORDS - 1, 16)  # indexes of [mem + 4 + 4 * i]
        vin[32:48] = np.where(rng.random(16) < 0.6, 0x80000000, 0x7FFFFFFF)  # AVX2 mask signs
        vin[32:48] |= rng.integers(0, 1 << 31, 16).astype(np.uint32)
    kio = np.array([rng.integers(0, 1 << 16), 0], np.uint32)
    return vin, mem, kio


def _aligned(n):
    raw = np.zeros(n + 16, np.uint32)
    start = (-raw.ctypes.data % 64) // 4
    return raw[start:start + n]


def _run(call, vin, mem, kio):
    out = [_aligned(VECTORS * 16), _aligned(MEM_DWORDS), _aligned(2)]
    out[1][:], out[2][:] = mem, kio
    vin_copy = _aligned(vin.size)
    vin_copy[:] = vin
    call(vin_copy, out[1], out[2], out[0])
    return out


def _within_bound(mnemonic, x_bits, a_bits, b_bits):
    """Two approximations of the same lanes agree: bit for bit where the SDM fixes the result
    (NaN, infinite, zero or subnormal sources), else each within the bound of the exact value."""
    with np.errstate(all="ignore"):
        return _disagreeing(mnemonic, x_bits, a_bits, b_bits)


def _disagreeing(mnemonic, x_bits, a_bits, b_bits):
    x = x_bits.view(np.float32).astype(np.float64)
    a = a_bits.view(np.float32).astype(np.float64)
    b = b_bits.view(np.float32).astype(np.float64)
    exact = 1.0 / x if "sqrt" not in mnemonic else 1.0 / np.sqrt(x)
    fixed = ~np.isfinite(x) | (x == 0) | np.isnan(exact)
    fixed |= np.abs(exact) >= 2.0 ** 128 * (1 + 2.0 ** -12)  # overflows to +-inf either way
    if mnemonic in ("vrcpps", "vrsqrtps"):
        fixed |= np.abs(x) < 2.0 ** -126  # subnormal sources read as zero
    bad = fixed & (a_bits != b_bits)
    bound = RELATIVE_ERROR_BOUND[mnemonic]
    loose = ~fixed
    if mnemonic == "vrcpps":
        # results near 2^-126 may or may not be flushed to zero (SDM: implementation-specific)
        edge = loose & (np.abs(x) >= 2.0 ** 125)
        loose &= ~edge
        bad |= edge & ~(((a == 0) | (np.abs(a - exact) <= bound * np.abs(exact)))
                        & ((b == 0) | (np.abs(b - exact) <= bound * np.abs(exact))))
    # a result within the bound of 2^128 may round to +-inf
    top = loose & (np.abs(exact) >= 2.0 ** 128 * (1 - 2.0 ** -12))
    loose &= ~top
    bad |= top & ~((np.abs(a) == np.inf) | (np.abs(a - exact) <= bound * np.abs(exact)))
    bad |= top & ~((np.abs(b) == np.inf) | (np.abs(b - exact) <= bound * np.abs(exact)))
    tiny = 2.0 ** -149  # subnormal results lose relative precision: one unit of slack
    for r in (a, b):
        bad |= loose & ~(np.abs(r - exact) <= bound * np.abs(exact) * (1 + 2.0 ** -23) + tiny)
    return bad


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """target name -> (cases, assembly text, native library or None, Machine)."""
    out = {}
    for target in (AVX2, AVX512F):
        cases = [c for c in CASES if c.target is target]
        text = render_module(_module(cases, target))
        lib = None
        if TOOLS and target.name in HOST_ISAS:
            directory = tmp_path_factory.mktemp(target.name)
            src, obj, so = directory / "forms.S", directory / "forms.o", directory / "forms.so"
            src.write_text(text)
            subprocess.run(["as", "--64", "-o", str(obj), str(src)], check=True,
                           capture_output=True)
            subprocess.run(["ld", "-shared", "-o", str(so), str(obj)], check=True,
                           capture_output=True)
            lib = ctypes.CDLL(str(so))
        out[target.name] = (cases, text, lib, Machine(text))
    return out


@pytest.mark.parametrize("isa", ["avx2", "avx512f"])
def test_forms_match_the_cpu(isa, built):
    """Every case, 12 random states each: native and emulated vector registers (full width),
    memory and k mask agree bit for bit (approximations: within the architectural bound)."""
    cases, _, lib, machine = built[isa]
    if lib is None:
        pytest.skip(f"needs GNU as/ld and a host running {isa} natively (host: "
                    f"{', '.join(HOST_ISAS) or 'none'}); the emulator alone is checked by "
                    f"test_forms_run_in_the_emulator")
    rng = np.random.default_rng(20261201)
    failures = []

    def native(symbol):
        fn = getattr(lib, symbol)
        return lambda *arrays: fn(*(ctypes.c_void_p(a.ctypes.data) for a in arrays))

    def emulated(symbol):
        def call(*arrays):
            addresses = [machine.map(a) for a in arrays]
            try:
                machine.call(symbol, *addresses)
            finally:
                for address in addresses:
                    machine.unmap(address)
        return call

    for i, case in enumerate(cases):
        symbol = f"case{i}"
        for trial in range(12):
            vin, mem, kio = _inputs(case, rng)
            nv, nm, nk = _run(native(symbol), vin, mem, kio)
            ev, em, ek = _run(emulated(symbol), vin, mem, kio)
            if case.approximate:
                n = _w(case.width, case.target) // 32
                enabled = np.zeros(16, bool)
                enabled[:n] = True
                if case.masking:
                    enabled[:n] = (int(kio[0]) >> np.arange(n)) & 1 == 1
                bad = _within_bound(case.approximate, vin[16:32], nv[:16], ev[:16]) & enabled
                same_rest = np.array_equal(nv[:16][~enabled], ev[:16][~enabled]) \
                    and np.array_equal(nv[16:], ev[16:]) and np.array_equal(nm, em) \
                    and np.array_equal(nk, ek)
                if bad.any() or not same_rest:
                    lane = int(np.flatnonzero(bad)[0]) if bad.any() else -1
                    failures.append(f"{case.name}: lane {lane} x={vin[16 + lane]:#010x} "
                                    f"native {nv[lane]:#010x} emulated {ev[lane]:#010x}")
                    break
                continue
            if not (np.array_equal(nv, ev) and np.array_equal(nm, em)
                    and np.array_equal(nk, ek)):
                diff = np.flatnonzero(nv != ev)[:4]
                failures.append(
                    f"{case.name}: vout lanes {diff.tolist()} native "
                    f"{[hex(v) for v in nv[diff]]} emulated {[hex(v) for v in ev[diff]]}; "
                    f"inputs {[hex(v) for v in vin[diff]]}, v1 {[hex(v) for v in vin[16 + diff % 16]]}; "
                    f"mem equal {np.array_equal(nm, em)}; k native {nk[1]:#x} emulated {ek[1]:#x}")
                break
    assert not failures, f"{len(failures)} of {len(cases)} cases differ:\n" + "\n".join(failures)


@pytest.mark.parametrize("isa", ["avx2", "avx512f"])
def test_forms_run_in_the_emulator(isa, built):
    """On any host: every case runs in the emulator, and the emulated results of the exact
    instructions are deterministic (the same inputs give the same bits twice)."""
    cases, _, _, machine = built[isa]
    rng = np.random.default_rng(7)
    for i, case in enumerate(cases):
        vin, mem, kio = _inputs(case, rng)
        results = []
        for _ in range(2):
            def call(*arrays):
                addresses = [machine.map(a) for a in arrays]
                try:
                    machine.call(f"case{i}", *addresses)
                finally:
                    for address in addresses:
                        machine.unmap(address)
            results.append(_run(call, vin, mem, kio))
        assert all(np.array_equal(a, b) for a, b in zip(*results)), case.name


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("objdump") is None,
                    reason="needs GNU binutils (as, objdump): apt-get install binutils")
@pytest.mark.parametrize("isa", ["avx2", "avx512f"])
def test_forms_round_trip_through_gnu_as(isa, built, tmp_path: Path):
    """GNU as assembles every case and objdump lists the same instructions back."""
    _, text, _, _ = built[isa]
    difference = mismatch(text_instructions(text), disassemble(text, tmp_path))
    assert difference is None, difference


def test_approximations_differ_from_the_hardware_only_within_the_bound():
    """The emulator computes 1/x and 1/sqrt(x) exactly (float64) and rounds once: deterministic
    and within the architectural bound, but not the CPU's bits (AMD Zen 4: vrcpps(1.0) is
    0x3F7FF000). Pinned here so that the documented behaviour cannot drift."""
    text = render_module(_module([Case("rcp", AVX2, lambda f, v, k, m, d:
                                       f.vrcpps(v[0], v[1]))], AVX2))
    machine = Machine(text)
    vin = _aligned(64)
    vin[16:24] = np.array([1.0, 3.0, -0.5, 1e-3, 0.0, -np.inf, np.nan, 1e-39],
                          np.float32).view(np.uint32)
    vout, mem, kio = _aligned(64), _aligned(MEM_DWORDS), _aligned(2)
    addresses = [machine.map(a) for a in (vin, mem, kio, vout)]
    machine.call("case0", *addresses)
    got = vout[:8].view(np.float32)
    assert got[0] == 1.0 and got[1] == np.float32(1 / 3) and got[2] == -2.0
    assert got[3] == np.float32(1 / np.float64(np.float32(1e-3))) and got[4] == np.inf and got[5] == 0 and np.signbit(got[5])
    assert np.isnan(got[6]) and got[7] == np.inf  # a subnormal source reads as zero


def test_encodability_is_checked_at_emission():
    """The table's rules, on the line that breaks them."""
    sig = Signature("f", (Param("float*", "x"),))
    f = Function(sig, AVX2)
    x, = f.args
    a, b, c = f.vecs("v", 3)
    with pytest.raises(OperandError, match="no xmm form"):
        f.vpermps(a.xmm, b.xmm, c.xmm)
    with pytest.raises(TargetFeatureError, match="avx512f"):
        f.vrcp14ps(a, b)
    with pytest.raises(OperandError, match="both the destination and the vector index"):
        f.vgatherdps(a, ptr(x, 0, a, 4), c)
    with pytest.raises(OperandError, match="vgatherdps"):
        f.vaddps(a, b, ptr(x, 0, c, 4))  # a vector index is a gather's address only
    g = Function(sig, AVX512F)
    x, = g.args
    a, b = g.vecs("v", 2)
    k = g.mask("k")
    with pytest.raises(OperandError, match="needs a {k} write mask"):
        g.vgatherdps(a, ptr(x, 0, b, 4))
    with pytest.raises(OperandError, match="zeroing"):
        g.vgatherdps(Masked(a, k, zeroing=True), ptr(x, 0, b, 4))
    with pytest.raises(OperandError, match="takes no write mask"):
        g.vblendvps(Masked(a.ymm, k), a.ymm, b.ymm, b.ymm)
    with pytest.raises(TargetFeatureError, match="no EVEX encoding"):
        g.vblendvps(a, a, b, b)  # zmm
    g.vcvtph2ps(a.ymm, ptr(x))  # the VEX form needs F16C, an extension both targets allow
    assert "f16c" in g.features_used
