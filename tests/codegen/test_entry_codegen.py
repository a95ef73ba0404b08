"""The CPython entry module: what the builder accepts for it, what it renders, and that it
assembles to exactly its text, importing only the stable-ABI symbols it declares."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from softjit.codegen import cpython_abi, entries
from softjit.codegen.module import MethodRecord, Module
from softjit.codegen.pipeline import render_module
from softjit.codegen.errors import OperandError
from softjit.codegen.isa import X86_64
from softjit.codegen.operands import Mem, Import
from softjit.codegen.abi import Param, Signature
from softjit.codegen.stream import Function

from test_asm_roundtrip import mismatch, objdump_instructions, text_instructions

ENTRY_MODULE = entries.build_module()
ENTRY_TEXT = render_module(ENTRY_MODULE)


def caller() -> Function:
    return Function(Signature("calls_out", (Param("void*", "p"),), "void*"), X86_64)


def test_imported_calls_go_through_the_plt_and_data_through_the_got():
    f = caller()
    (p,) = f.args
    f.mov(f.physical_gp("rdi"), p)
    f.call(f.imported("Py_IncRef"))
    f.mov(f.physical_gp("rax"), f.got("_Py_NoneStruct"))
    f.ret()
    text = render_module(Module("m", X86_64, "probe", (f,)))
    assert "\tcall Py_IncRef@PLT" in text
    assert "\tmov rax, QWORD PTR [rip + _Py_NoneStruct@GOTPCREL]" in text
    assert "# Resolved when loaded, from the process: Py_IncRef, _Py_NoneStruct" in text
    assert f.imports == {"Py_IncRef", "_Py_NoneStruct"}


@pytest.mark.parametrize("emit", [
    lambda f, slot: f.mov(slot, f.physical_gp("rax")),  # writing the GOT
    lambda f, slot: f.add(f.physical_gp("rax"), slot),  # arithmetic on a slot
    lambda f, slot: f.cmp(f.physical_gp("rax"), slot),
], ids=["store", "add", "cmp"])
def test_a_got_slot_is_only_read_by_mov(emit):
    f = caller()
    with pytest.raises(OperandError, match="only read, as the source of mov"):
        emit(f, f.got("_Py_NoneStruct"))
    assert not [i for i in f.items if getattr(i, "mnemonic", "") != "mov"]


def test_a_got_slot_is_one_whole_address():
    with pytest.raises(ValueError, match="one 64-bit address"):
        Mem(Import("_Py_NoneStruct"), disp=8, bits=64)
    with pytest.raises(ValueError, match="one 64-bit address"):
        Mem(Import("_Py_NoneStruct"), bits=32)


def test_an_import_is_a_call_target_only():
    f = caller()
    with pytest.raises(OperandError, match="no form of jmp"):
        f.jmp(f.imported("PyErr_Clear"))


def test_records_render_as_method_definitions():
    record = next(r for r in ENTRY_MODULE.records if r.symbol == entries.SOFTMAX_ROWS_RECORD)
    assert record.flags == cpython_abi.METH_FASTCALL
    block = ENTRY_TEXT.split(f"{record.symbol}:\n", 1)[1].split(".size", 1)[0]
    assert block.split() == [
        ".quad", f".Lname_{record.symbol}", "#", "ml_name",
        ".quad", f".Lentry_{entries.SOFTMAX_ROWS}", "#", "ml_meth",
        ".long", "0x80", "#", "ml_flags", ".long", "0",
        ".quad", f".Ldoc_{record.symbol}", "#", "ml_doc"]
    assert f".size {record.symbol}, {cpython_abi.METHOD_DEF_SIZE}" in ENTRY_TEXT
    assert f'.asciz "{record.python_name}"' in ENTRY_TEXT
    assert f"extern char {record.symbol}[32];" in ENTRY_MODULE.cdef()


def test_record_strings_must_be_plain():
    f = caller()
    f.ret()
    bad = MethodRecord("bad_def", "calls_out", 'say "hi"', cpython_abi.METH_FASTCALL, "")
    with pytest.raises(ValueError, match="plain ASCII"):
        render_module(Module("m", X86_64, "probe", (f,), (bad,)))


def test_entries_use_only_the_declared_stable_abi_symbols():
    assert set(ENTRY_MODULE.imports) == set(cpython_abi.FUNCTIONS) | set(cpython_abi.DATA)


def test_every_path_of_an_entry_returns_through_the_epilogue():
    # Each function has two returns (a result, NotImplemented) and the public builtins three
    # (their result, the Python function's, NULL when the arguments for it cannot be built),
    # all after the frame's pops.
    from softjit.codegen.public_entries import EXP_PUBLIC, LOG_SOFTMAX_PUBLIC, SOFTMAX_PUBLIC

    for function in ENTRY_MODULE.functions:
        body = ENTRY_TEXT.split(f"{function.name}:\n", 1)[1].split(".size", 1)[0]
        lines = [line.strip() for line in body.splitlines()]
        returns = [i for i, line in enumerate(lines) if line == "ret"]
        public = (SOFTMAX_PUBLIC, EXP_PUBLIC, LOG_SOFTMAX_PUBLIC)
        assert len(returns) == (3 if function.name in public else 2)
        for index in returns:
            assert lines[index - 1].startswith("pop ")


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("objdump") is None,
                    reason="needs GNU binutils (as, objdump): apt-get install binutils")
def test_entry_module_disassembles_to_its_text(tmp_path: Path):
    source, obj = tmp_path / "entries.S", tmp_path / "entries.o"
    source.write_text(ENTRY_TEXT)
    assembled = subprocess.run(["as", "--64", "-o", str(obj), str(source)],
                               capture_output=True, text=True)
    assert assembled.returncode == 0 and not assembled.stderr, assembled.stderr
    dumped = subprocess.run(["objdump", "-t", "-d", "-M", "intel", "--no-show-raw-insn", str(obj)],
                            capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in dumped.splitlines() if "*UND*" in line}
    # the assembler's own reference to the GOT comes with any @GOTPCREL / @PLT operand
    assert undefined - {"_GLOBAL_OFFSET_TABLE_"} == set(ENTRY_MODULE.imports)
    difference = mismatch(text_instructions(ENTRY_TEXT), objdump_instructions(dumped))
    assert difference is None, difference


def test_calls_into_the_process_are_for_host_code_only():
    from softjit.codegen.isa import AVX2

    kernel = Function(Signature("kernel", (Param("float*", "x"),)), AVX2)
    with pytest.raises(OperandError, match="no form of call"):
        kernel.call(kernel.imported("PyErr_Clear"))
    with pytest.raises(OperandError, match="no form of call"):
        kernel.call(kernel.physical_gp("rax"))
