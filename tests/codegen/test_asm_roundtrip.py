"""Every registered kernel assembles, and disassembles back to the instructions its text lists.

GNU as assembles the text with `as --64`; `objdump -d -M intel` of the object must list the same
mnemonics with the same register operands, in the same order (prologue and epilogue included).
Aliases objdump prefers are mapped back first: `vcmpps a, b, c, 14` disassembles as
`vcmpgtps a, b, c`, `jz` as `je`. Only generation is needed, so AVX-512 kernels are checked on
any x86-64 host.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from softjit.codegen import variants
from softjit.runtime.bindings import assembly

pytestmark = pytest.mark.skipif(
    shutil.which("as") is None or shutil.which("objdump") is None,
    reason="needs GNU binutils (as, objdump): apt-get install binutils")

#: Comparison predicates by immediate (Intel SDM, CMPPS/VCMPPS), as objdump names them.
CMP_PREDICATES = (
    "eq", "lt", "le", "unord", "neq", "nlt", "nle", "ord",
    "eq_uq", "nge", "ngt", "false", "neq_oq", "ge", "gt", "true",
    "eq_os", "lt_oq", "le_oq", "unord_s", "neq_us", "nlt_uq", "nle_uq", "ord_s",
    "eq_us", "nge_uq", "ngt_uq", "false_os", "neq_os", "ge_oq", "gt_oq", "true_us",
)
#: Integer comparison predicates of VPCMP[U]{B,W,D,Q} by immediate.
INT_CMP_PREDICATES = ("eq", "lt", "le", "false", "neq", "nlt", "nle", "true")

_FLOAT_COMPARE = re.compile(r"(v?cmp)([a-z_]+?)(ps|pd|ss|sd)")
_INT_COMPARE = re.compile(r"(vpcmp)([a-z]+?)(u?[bwdq])")

#: Condition-code spellings objdump replaces with its preferred one.
JUMP_ALIASES = {
    "jz": "je", "jnz": "jne", "jc": "jb", "jnae": "jb", "jnc": "jae", "jnb": "jae",
    "jna": "jbe", "jnbe": "ja", "jnge": "jl", "jnl": "jge", "jng": "jle", "jnle": "jg",
    "jpe": "jp", "jpo": "jnp",
}

PREFIXES = {"lock", "rep", "repz", "repe", "repnz", "repne", "data16", "cs", "ds", "notrack",
            "bnd", "{vex}", "{evex}"}

REGISTER = re.compile(
    r"\b(?:[re]?(?:ax|bx|cx|dx|si|di|bp|sp)|r(?:[89]|1[0-5])[dwb]?|[abcd][lh]|(?:si|di|bp|sp)l"
    r"|[xyz]mm(?:3[01]|[12]?[0-9])|k[0-7]|rip)\b")


def _split(code: str) -> tuple[str, str]:
    """(mnemonic with any prefixes, operand text) of one instruction."""
    words = code.split(None, 1)
    mnemonic = [words[0]]
    rest = words[1] if len(words) > 1 else ""
    while mnemonic[-1] in PREFIXES and rest:
        head = rest.split(None, 1)
        mnemonic.append(head[0])
        rest = head[1] if len(head) > 1 else ""
    return " ".join(mnemonic), rest.strip()


def text_instructions(asm: str) -> list[tuple[str, str]]:
    """The instructions of the .text sections of GNU as Intel-syntax text, as (mnemonic, operands)."""
    found, in_text = [], False
    for line in asm.splitlines():
        code = line.split("#", 1)[0].strip()
        if not code or code.endswith(":"):
            continue
        if code.startswith("."):
            words = code.replace(",", " ").split()
            if words[0] == ".text":
                in_text = True
            elif words[0] in (".data", ".bss"):
                in_text = False
            elif words[0] == ".section":
                in_text = words[1].startswith(".text")
            continue
        if in_text:
            found.append(_split(code))
    return found


def objdump_instructions(objdump_output: str) -> list[tuple[str, str]]:
    """The instructions of `objdump -d -M intel --no-show-raw-insn` output, as (mnemonic, operands)."""
    found = []
    for line in objdump_output.splitlines():
        match = re.match(r"\s*[0-9a-f]+:\t(.*)", line)
        if match is None:
            continue
        code = re.sub(r"<[^>]*>", "", match.group(1).split("#", 1)[0]).strip()
        if code:
            found.append(_split(code))
    return found


def _is_padding(mnemonic: str, operands: str) -> bool:
    """A no-op that .p2align may insert between functions (nop, data16 cs nop ..., xchg ax,ax)."""
    return mnemonic.split()[-1] == "nop" or (mnemonic == "xchg" and operands == "ax,ax")


def _canonical_mnemonic(dumped: str) -> tuple[str, int | None]:
    """objdump's mnemonic without an alias: (base mnemonic, comparison immediate or None)."""
    for pattern, predicates in ((_FLOAT_COMPARE, CMP_PREDICATES),
                                (_INT_COMPARE, INT_CMP_PREDICATES)):
        match = pattern.fullmatch(dumped)
        if match and match.group(2) in predicates:
            return match.group(1) + match.group(3), predicates.index(match.group(2))
    return dumped, None


def _same_instruction(text: tuple[str, str], dumped: tuple[str, str]) -> bool:
    (text_mnemonic, text_operands), (dumped_mnemonic, dumped_operands) = text, dumped
    text_mnemonic = JUMP_ALIASES.get(text_mnemonic, text_mnemonic)
    if text_mnemonic != dumped_mnemonic:
        base, immediate = _canonical_mnemonic(dumped_mnemonic)
        last_operand = text_operands.rsplit(",", 1)[-1].strip()
        if (base != text_mnemonic or immediate is None
                or not re.fullmatch(r"(0x)?[0-9a-fA-F]+", last_operand)
                or int(last_operand, 0) != immediate):
            return False
    return REGISTER.findall(text_operands) == REGISTER.findall(dumped_operands)


def disassemble(asm: str, workdir: Path) -> list[tuple[str, str]]:
    """Assemble `asm` with `as --64` (which must not complain) and list the object's instructions.

    Kernels are self-contained leaves, so the object may not refer to any symbol it does not
    define (a misspelt local label would otherwise only fail when the .so is loaded).
    """
    source, obj = workdir / "kernel.S", workdir / "kernel.o"
    source.write_text(asm, encoding="utf-8")
    environment = {**os.environ, "LC_ALL": "C"}
    assembled = subprocess.run(["as", "--64", "-o", str(obj), str(source)],
                               capture_output=True, text=True, env=environment)
    assert assembled.returncode == 0 and not assembled.stderr, f"as --64 {source}: {assembled.stderr}"
    dumped = subprocess.run(["objdump", "-t", "-d", "-M", "intel", "--no-show-raw-insn", str(obj)],
                            capture_output=True, text=True, check=True, env=environment).stdout
    undefined = [line.split()[-1] for line in dumped.splitlines() if "*UND*" in line]
    assert not undefined, f"the object refers to symbols it does not define: {undefined}"
    return objdump_instructions(dumped)


def mismatch(written: list[tuple[str, str]], dumped: list[tuple[str, str]]) -> str | None:
    """None when objdump lists the instructions of the text, else the first difference."""
    if not any(_is_padding(*instruction) for instruction in written):
        dumped = [instruction for instruction in dumped if not _is_padding(*instruction)]
    for index, (text, disassembled) in enumerate(zip(written, dumped)):
        if not _same_instruction(text, disassembled):
            return (f"instruction {index}: the text has {' '.join(text)!r}, "
                    f"objdump shows {' '.join(disassembled)!r}")
    if len(written) != len(dumped):
        return f"the text has {len(written)} instructions, objdump shows {len(dumped)}"
    return None


@pytest.mark.parametrize("variant", variants.VARIANTS, ids=lambda v: v.name)
def test_kernel_disassembles_to_its_text(variant, tmp_path: Path) -> None:
    asm = assembly(variant)
    written = text_instructions(asm)
    assert written, f"{variant.name}: no instructions found in its text"
    difference = mismatch(written, disassemble(asm, tmp_path))
    assert difference is None, f"{variant.name}: {difference}"


# The checker itself: aliases are mapped back, padding between functions is ignored, and a
# wrong register or mnemonic is caught.
_TWO_FUNCTIONS = """\
	.intel_syntax noprefix
	.text
	.p2align 5
first:
	vcmpps ymm1, ymm2, ymm3, 14                             # greater than
	vcmpps k1, zmm2, DWORD BCST [rip + .Lc_one], 3
	test rdi, rdi
	jz .Ldone
	push rbx
	pop rbx
.Ldone:
	vzeroupper
	ret
	.p2align 5
second:
	vpcmpd k2, zmm4, zmm5, 1
	ret

	.section .rodata
	.p2align 2
.Lc_one:
	.long 0x3F800000
"""


def test_checker_maps_aliases_and_skips_padding(tmp_path: Path) -> None:
    written = text_instructions(_TWO_FUNCTIONS)
    assert [m for m, _ in written] == [
        "vcmpps", "vcmpps", "test", "jz", "push", "pop", "vzeroupper", "ret", "vpcmpd", "ret"]
    assert mismatch(written, disassemble(_TWO_FUNCTIONS, tmp_path)) is None


@pytest.mark.parametrize("before, after", [
    ("vcmpps ymm1, ymm2, ymm3, 14", "vcmpps ymm1, ymm2, ymm3, 13"),
    ("vcmpps ymm1, ymm2, ymm3, 14", "vcmpps ymm1, ymm3, ymm2, 14"),
    ("push rbx", "push rbp"),
])
def test_checker_catches_a_changed_instruction(before: str, after: str, tmp_path: Path) -> None:
    edited = _TWO_FUNCTIONS.replace(before, after)
    assert mismatch(text_instructions(_TWO_FUNCTIONS), disassemble(edited, tmp_path)) is not None


def test_checker_catches_an_undefined_symbol(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"\.Lmissing"):
        disassemble(_TWO_FUNCTIONS.replace("jz .Ldone", "jz .Lmissing"), tmp_path)
