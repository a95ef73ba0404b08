"""The GNU assembler and linker: finding them, naming their versions, and building a .so with them.

softjit writes its kernels as GNU as text and links each module into a tiny shared object, so the
only build tools it needs are binutils' `as` and `ld` (no C compiler).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from softjit.runtime.errors import AssemblerError, ToolchainMissingError

ASSEMBLER_ENV_VARIABLE = "SOFTJIT_AS"
LINKER_ENV_VARIABLE = "SOFTJIT_LD"

#: Every kernel is a position-independent leaf with no imports; BIND_NOW and a non-executable
#: stack are the hardening a loader expects, and a GNU hash table is what modern ld.so reads.
LINK_FLAGS = ("-shared", "-z", "noexecstack", "-z", "now", "--hash-style=gnu")

_TOOL_TIMEOUT_SECONDS = 120


def find_tool(name: str, override_variable: str) -> Path:
    """The program for `name` ("as" or "ld"): $override_variable if set, else the one on PATH."""
    requested = os.environ.get(override_variable) or name
    found = shutil.which(requested)
    if found is None:
        if os.environ.get(override_variable):
            searched = f"{override_variable}={requested!r} is not an executable program"
        else:
            searched = f"not on PATH={os.environ.get('PATH', '')!r}"
        raise ToolchainMissingError(name, override_variable, searched)
    return Path(found)


def find_assembler() -> Path:
    return find_tool("as", ASSEMBLER_ENV_VARIABLE)


def find_linker() -> Path:
    return find_tool("ld", LINKER_ENV_VARIABLE)


def tool_version(program: Path) -> str:
    """The first line of `program --version`, e.g. "GNU assembler (GNU Binutils) 2.40"."""
    stat = program.stat()
    # Keyed by the file's identity so an upgrade in place is noticed without re-running it always.
    return _tool_version(str(program), stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _tool_version(program: str, _inode: int, _mtime_ns: int, _size: int) -> str:
    try:
        result = subprocess.run(
            [program, "--version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_TOOL_TIMEOUT_SECONDS,
            env=_tool_environment(),
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"{program}: unknown version ({error})"
    lines = result.stdout.splitlines()
    return lines[0].strip() if lines else f"{program}: unknown version"


def toolchain_id() -> str:
    """One line naming the assembler and linker versions (part of every cache key).

    Never raises: a missing tool shows up as "as: none" so that diagnostics can still print it.
    """
    parts = []
    for name, variable in (("as", ASSEMBLER_ENV_VARIABLE), ("ld", LINKER_ENV_VARIABLE)):
        try:
            parts.append(tool_version(find_tool(name, variable)))
        except (ToolchainMissingError, OSError):
            parts.append(f"{name}: none")
    return " | ".join(parts)


def assemble_shared_object(asm_text: str, out_path: Path, *, workdir: Path) -> Path:
    """Assemble `asm_text` and link it into the shared object `out_path`.

    The source and object file are written into `workdir` (kernel.S, kernel.o), which the caller
    owns; on failure the source stays there and AssemblerError names it. Returns `out_path`.
    """
    assembler, linker = find_assembler(), find_linker()
    workdir = Path(workdir)
    source_path = workdir / "kernel.S"
    object_path = workdir / "kernel.o"
    source_path.write_text(asm_text, encoding="utf-8")
    _run_tool([str(assembler), "--64", "-o", str(object_path), str(source_path)], source_path)
    _run_tool([str(linker), *LINK_FLAGS, "-o", str(out_path), str(object_path)], source_path)
    return Path(out_path)


def _run_tool(command: list[str], source_path: Path) -> None:
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_TOOL_TIMEOUT_SECONDS,
            env=_tool_environment(),
        )
    except subprocess.TimeoutExpired:
        raise AssemblerError(
            command, f"timed out after {_TOOL_TIMEOUT_SECONDS} s", source_path
        ) from None
    except OSError as error:
        raise AssemblerError(command, str(error), source_path) from error
    if result.returncode != 0:
        raise AssemblerError(command, result.stderr + result.stdout, source_path)


def _tool_environment() -> dict[str, str]:
    # Untranslated messages, so errors read the same everywhere and tests can match them.
    return {**os.environ, "LC_ALL": "C"}
