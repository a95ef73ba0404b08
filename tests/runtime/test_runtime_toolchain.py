"""The assembler and linker: discovery, versions, a real build, and real failures of each tool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from softjit.runtime import toolchain
from softjit.runtime.errors import AssemblerError, SoftjitError, ToolchainMissingError


def test_tools_are_found_and_named() -> None:
    assert toolchain.find_assembler().name == "as"
    assert toolchain.find_linker().name == "ld"
    assert toolchain.tool_version(toolchain.find_assembler()).startswith("GNU assembler")
    assert toolchain.tool_version(toolchain.find_linker()).startswith("GNU ld")
    identity = toolchain.toolchain_id()
    assert "GNU assembler" in identity and "GNU ld" in identity


def test_toolchain_id_without_tools_does_not_raise(monkeypatch, empty_path_dir) -> None:
    monkeypatch.setenv("PATH", str(empty_path_dir))
    assert toolchain.toolchain_id() == "as: none | ld: none"


def test_missing_assembler_says_how_to_install(monkeypatch, empty_path_dir, tmp_path, make_add_asm):
    monkeypatch.setenv("PATH", str(empty_path_dir))
    with pytest.raises(ToolchainMissingError) as raised:
        toolchain.assemble_shared_object(make_add_asm(), tmp_path / "k.so", workdir=tmp_path)
    message = str(raised.value)
    assert isinstance(raised.value, SoftjitError)
    assert "'as'" in message and "apt-get install binutils" in message
    assert "prebuilt" in message and "SOFTJIT_AS" in message


def test_assembler_override_that_does_not_exist(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SOFTJIT_AS", str(tmp_path / "no-such-as"))
    with pytest.raises(ToolchainMissingError, match="SOFTJIT_AS="):
        toolchain.find_assembler()


def test_assembler_override_is_used(monkeypatch, tmp_path, make_add_asm) -> None:
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "logging-as"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {shutil.which("as")} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("SOFTJIT_AS", str(wrapper))
    workdir = tmp_path / "work"
    workdir.mkdir()
    toolchain.assemble_shared_object(make_add_asm(), workdir / "k.so", workdir=workdir)
    assert "--64" in log.read_text()
    assert toolchain.find_assembler() == wrapper


def test_builds_a_callable_shared_object(tmp_path, make_add_asm, call_add) -> None:
    out = toolchain.assemble_shared_object(make_add_asm(7), tmp_path / "k.so", workdir=tmp_path)
    assert out == tmp_path / "k.so"
    assert (tmp_path / "kernel.S").read_text().startswith("# ")
    assert call_add(out, 2, 3) == 12


def test_shared_object_is_hardened(tmp_path, make_add_asm) -> None:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is not installed")
    out = toolchain.assemble_shared_object(make_add_asm(), tmp_path / "k.so", workdir=tmp_path)
    headers = subprocess.run([readelf, "-lW", str(out)], capture_output=True, text=True).stdout
    stack = next(line for line in headers.splitlines() if "GNU_STACK" in line)
    assert "RWE" not in stack  # non-executable stack
    dynamic = subprocess.run([readelf, "-dW", str(out)], capture_output=True, text=True).stdout
    assert "BIND_NOW" in dynamic and "GNU_HASH" in dynamic


def test_same_text_gives_the_same_bytes(tmp_path, make_add_asm) -> None:
    asm = make_add_asm()
    paths = []
    for index in range(2):
        workdir = tmp_path / str(index)
        workdir.mkdir()
        paths.append(toolchain.assemble_shared_object(asm, workdir / "k.so", workdir=workdir))
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_assembler_error_carries_its_message_and_the_source(tmp_path, make_add_asm) -> None:
    broken = make_add_asm().replace("lea eax", "bogus_mnemonic eax")
    with pytest.raises(AssemblerError) as raised:
        toolchain.assemble_shared_object(broken, tmp_path / "k.so", workdir=tmp_path)
    error = raised.value
    assert "bogus_mnemonic" in error.stderr and "Error:" in error.stderr
    assert Path(error.command[0]).name == "as"
    assert error.source_path.read_text() == broken
    assert str(error.source_path) in str(error) and "bogus_mnemonic" in str(error)


def test_linker_error_is_reported(tmp_path, make_add_asm) -> None:
    # An absolute 32-bit address cannot be relocated in a shared object: ld itself refuses it.
    absolute = make_add_asm().replace("ret\n", "mov eax, OFFSET softjit_test_add\n    ret\n", 1)
    with pytest.raises(AssemblerError) as raised:
        toolchain.assemble_shared_object(absolute, tmp_path / "k.so", workdir=tmp_path)
    assert Path(raised.value.command[0]).name == "ld"
    assert "relocation" in raised.value.stderr
