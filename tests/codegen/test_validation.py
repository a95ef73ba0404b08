"""The builder rejects what the target lacks the moment the Python line emits it.

Each rejection must be raised by the emitting call itself (nothing is appended to the stream),
and its message must name the instruction (or register), the target and the file:line of the
emitting call in this file. Register budgets are checked when the function is allocated
(rendered): 16 simultaneously live vector registers fit AVX2, 17 do not.
"""
from __future__ import annotations

import os
import re

import pytest

from softjit.codegen.module import Module
from softjit.codegen.pipeline import render_module
from softjit.codegen.errors import (CodegenError, OperandError, RegisterBudgetError,
                                    TargetFeatureError)
from softjit.codegen.isa import AVX2, AVX512F
from softjit.codegen.operands import Register, ptr
from softjit.codegen.abi import Param, Signature
from softjit.codegen.stream import Function

THIS_FILE = os.path.basename(__file__)


def function(target) -> Function:
    return Function(Signature("validation_probe", (Param("float*", "x"), Param("size_t", "n"))),
                    target)


def assert_reported(info, line: int, *words: str) -> None:
    """The message names every word and the emitting file:line.

    The words are looked for before the site line ("emitted at FILE:LINE in FUNC: SOURCE"),
    whose quoted source text would otherwise supply them."""
    text = str(info.value)
    message = re.split(r"\n\s*(?:emitted )?at ", text)[0]
    for word in words:
        assert word in message, f"{word!r} missing from the message: {text}"
    assert f"{THIS_FILE}:{line}" in text, f"the emitting line {THIS_FILE}:{line} is missing: {text}"


def rejected(target, error, words, emit, case_id):
    """A case: emit(f, v, x) on a fresh Function for target (v a vector register, x a pointer
    argument) must raise error naming words; the lambda, written on one line, is the emitting
    frame, so its first line is the file:line the message must give."""
    return pytest.param(target, error, words, emit, id=case_id)


YMM17 = Register("vec", "ymm17", 256, fixed=17)
ZMM3 = Register("vec", "zmm3", 512, fixed=3)
NEEDS_AVX512 = ("avx2", "avx512f")

REJECTIONS = [
    # AVX2 lacks these: named instruction (or register), the target, the missing feature
    rejected(AVX2, TargetFeatureError, ("vscalefps",) + NEEDS_AVX512,
             lambda f, v, x: f.vscalefps(v, v, v),
             "vscalefps on avx2"),
    rejected(AVX2, TargetFeatureError, ("vrndscaleps",) + NEEDS_AVX512,
             lambda f, v, x: f.vrndscaleps(v, v, 0x08),
             "vrndscaleps on avx2"),
    rejected(AVX2, TargetFeatureError, ("tail_mask", "mask") + NEEDS_AVX512,
             lambda f, v, x: f.mask("tail_mask"),
             "k mask register on avx2"),
    rejected(AVX2, TargetFeatureError, ("vaddps", "broadcast", "avx2"),
             lambda f, v, x: f.vaddps(v, v, ptr(x).bcst()),
             "vaddps broadcast on avx2"),
    rejected(AVX2, TargetFeatureError, ("vmaxps", "broadcast", "avx2"),
             lambda f, v, x: f.vmaxps(v, v, ptr(x).bcst()),
             "vmaxps broadcast on avx2"),
    rejected(AVX2, TargetFeatureError, ("vfmadd231ps", "broadcast", "avx2"),
             lambda f, v, x: f.vfmadd231ps(v, v, ptr(x).bcst()),
             "vfmadd231ps broadcast on avx2"),
    rejected(AVX2, TargetFeatureError, ("vaddps", "ymm17", "avx2"),
             lambda f, v, x: f.vaddps(v, v, YMM17),
             "physical ymm17 source on avx2"),
    rejected(AVX2, TargetFeatureError, ("vmovups", "ymm17", "avx2"),
             lambda f, v, x: f.vmovups(YMM17, ptr(x)),
             "physical ymm17 destination on avx2"),
    rejected(AVX2, TargetFeatureError, ("vaddps", "512", "avx2"),
             lambda f, v, x: f.vaddps(v.zmm, v.zmm, v.zmm),
             "zmm view on avx2"),
    rejected(AVX2, TargetFeatureError, ("vmovups", "512", "avx2"),
             lambda f, v, x: f.vmovups(ZMM3, ptr(x)),
             "physical zmm3 on avx2"),
    # VEX-only instructions have no 512-bit form: the target is AVX-512, the width is the problem
    rejected(AVX512F, TargetFeatureError, ("vmaskmovps", "512", "avx512f"),
             lambda f, v, x: f.vmaskmovps(v, v, ptr(x)),
             "vmaskmovps load zmm on avx512f"),
    rejected(AVX512F, TargetFeatureError, ("vmaskmovps", "512", "avx512f"),
             lambda f, v, x: f.vmaskmovps(ptr(x), v, v),
             "vmaskmovps store zmm on avx512f"),
    rejected(AVX512F, TargetFeatureError, ("vblendvps", "512", "avx512f"),
             lambda f, v, x: f.vblendvps(v, v, v, v),
             "vblendvps zmm on avx512f"),
    rejected(AVX512F, TargetFeatureError, ("vblendvps", "ymm17"),
             lambda f, v, x: f.vblendvps(YMM17, v.ymm, v.ymm, v.ymm),
             "vblendvps ymm17 on avx512f"),
    # operands of the wrong kind
    rejected(AVX2, OperandError, ("vaddps", "operand 1"),
             lambda f, v, x: f.vaddps(x, v, v),
             "gp register as a vector"),
    rejected(AVX2, OperandError, ("add", "operand 1"),
             lambda f, v, x: f.add(v, 1),
             "vector as a gp register"),
    rejected(AVX2, OperandError, ("vaddps", "operand 3"),
             lambda f, v, x: f.vaddps(v, v, 5),
             "immediate as a register"),
    rejected(AVX512F, OperandError, ("vaddps", "operand 1"),
             lambda f, v, x: f.vaddps(f.mask("k"), v, v),
             "k mask as a vector"),
    rejected(AVX512F, OperandError, ("vaddps", "operand 1"),
             lambda f, v, x: f.vaddps(ptr(x), v, v),
             "memory destination"),
    rejected(AVX2, OperandError, ("vaddps", "operand 2"),
             lambda f, v, x: f.vaddps(v.ymm, v.xmm, v.ymm),
             "mixed vector widths"),
    rejected(AVX2, OperandError, ("vaddps", "3 operands"),
             lambda f, v, x: f.vaddps(v, v),
             "operand count"),
    rejected(AVX512F, OperandError, ("kmovw",),
             lambda f, v, x: f.kmovw(f.mask("k"), v),
             "kmovw from a vector"),
    rejected(AVX2, OperandError, ("vfrobnicateps", "unknown"),
             lambda f, v, x: f.emit("vfrobnicateps", v, v, v),
             "unknown mnemonic"),
]


@pytest.mark.parametrize("target, error, words, emit", REJECTIONS)
def test_rejected_at_the_emitting_line(target, error, words, emit):
    f = function(target)
    v, x = f.vec("v"), f.args[0]
    with pytest.raises(error) as info:
        emit(f, v, x)
    assert_reported(info, emit.__code__.co_firstlineno, *words)
    assert f.items == [], "the rejected instruction was appended to the stream"


def test_unknown_mnemonic_as_a_method():
    f = function(AVX2)
    with pytest.raises(AttributeError, match="vfrobnicateps"):
        f.vfrobnicateps(f.vec("v"))


def test_avx2_constants_are_full_vectors_not_broadcasts():
    """The constant pool never hands AVX2 a broadcast operand."""
    f = function(AVX2)
    c = f.constant("one", 1.0)
    assert not c.broadcast
    f.vaddps(f.vec("v"), f.vec("w"), c)


def test_vex_only_instructions_at_ymm_width_are_fine_on_avx512():
    f = function(AVX512F)
    v, x = f.vec("v"), f.args[0]
    f.vmaskmovps(v.ymm, v.ymm, ptr(x))
    f.vblendvps(v.ymm, v.ymm, v.ymm, v.ymm)
    assert len(f.items) == 2


def test_avx512_only_instructions_are_accepted_on_avx512():
    f = function(AVX512F)
    v, x = f.vec("v"), f.args[0]
    f.vscalefps(v, v, v)
    f.vrndscaleps(v, v, 0x08)
    f.vaddps(v, v, ptr(x).bcst())
    f.vcmpps(f.mask("k"), v, v, 3)
    assert len(f.items) == 4


def test_all_are_codegen_errors():
    for cls in (TargetFeatureError, OperandError, RegisterBudgetError):
        assert issubclass(cls, CodegenError)


# ---------------------------------------------------------------------------- register budget
def live_vectors(target, count: int) -> Function:
    """count vector registers all live at once: each defined, then all summed into the first."""
    f = function(target)
    x = f.args[0]
    regs = f.vecs("live", count)
    for r in regs:
        f.vmovups(r, ptr(x))
    for r in regs[1:]:
        f.vaddps(regs[0], regs[0], r)
    f.vmovups(ptr(x), regs[0])
    f.ret()
    return f


def render(f: Function) -> str:
    return render_module(Module(f.name, f.target, "register budget probe", (f,)))


@pytest.mark.parametrize("target, budget", [(AVX2, 16), (AVX512F, 32)], ids=["avx2", "avx512f"])
def test_register_budget(target, budget):
    text = render(live_vectors(target, budget))
    used = {f"{'ymm' if target is AVX2 else 'zmm'}{i}" for i in range(budget)}
    assert all(name in text for name in used)
    with pytest.raises(RegisterBudgetError) as info:
        render(live_vectors(target, budget + 1))
    text = str(info.value).split("\n")[0]  # the message, without the site line
    assert str(target) in text and str(budget) in text, text
    live = [f"live{i}" for i in range(budget)]
    named = set(re.findall(r"\blive\d+\b", text))
    missing = [name for name in live if name not in named]
    assert not missing, f"live registers not named: {missing}\n{text}"
    assert f"live{budget}" in text, text
