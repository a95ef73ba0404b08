"""softjit's own exceptions and warning, all under one base so callers can catch them together.

Each message says what was wrong, with the offending value, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class SoftjitError(Exception):
    """Base class of every error softjit raises on purpose."""


class SoftjitWarning(UserWarning):
    """A problem softjit worked around (for example an unusable cache directory)."""


class UnsupportedPlatformError(SoftjitError):
    """softjit's kernels are x86-64 machine code loaded as ELF shared objects: Linux x86-64 only."""

    def __init__(self, system: str, machine: str, detail: str = "") -> None:
        self.system = system
        self.machine = machine
        message = (
            f"softjit runs only on Linux x86-64 (64-bit Python); this host is {system} {machine}"
        )
        if detail:
            message += f" ({detail})"
        super().__init__(message)


class UnsupportedISAError(SoftjitError):
    """The requested instruction set is not available on this host (or is above SOFTJIT_ISA)."""

    def __init__(self, isa: str, host_isas: Sequence[str], isa_cap: str | None) -> None:
        self.isa = isa
        self.host_isas = tuple(host_isas)
        self.isa_cap = isa_cap
        available = ", ".join(self.host_isas) or "none of softjit's ISAs"
        if isa == "auto":
            message = f"this host supports none of softjit's ISAs (available: {available})"
        else:
            message = f"ISA {isa!r} is not available on this host (available: {available})"
        if isa_cap is not None:
            message += f"; SOFTJIT_ISA={isa_cap} caps the choice, unset it to use everything"
        message += "; pass isa='auto' to pick the best available"
        super().__init__(message)


class ToolchainMissingError(SoftjitError):
    """No assembler or linker was found, and no prebuilt kernel could stand in for one."""

    def __init__(self, tool: str, override_variable: str, searched: str) -> None:
        self.tool = tool
        self.override_variable = override_variable
        super().__init__(
            f"softjit must assemble a kernel (no prebuilt kernel was available for it), "
            f"but the GNU {tool!r} was not found ({searched}); "
            f"install binutils (apt-get install binutils), "
            f"or point {override_variable} at the program"
        )


class AssemblerError(SoftjitError):
    """The assembler or linker rejected a kernel; the source is kept for inspection."""

    def __init__(self, command: Sequence[str], stderr: str, source_path: Path) -> None:
        self.command = tuple(command)
        self.stderr = stderr
        self.source_path = Path(source_path)
        super().__init__(
            f"command failed: {' '.join(self.command)}\n"
            f"{stderr.strip() or '(no output)'}\n"
            f"the assembly source is kept at {self.source_path}"
        )


class UnsafeCacheError(SoftjitError):
    """The kernel cache could be altered by someone else, so nothing is loaded from it."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"refusing to load kernels from {self.path}: {reason}; {fix}")


class NotSoftjitCacheError(SoftjitError):
    """A cache directory that holds files softjit did not create and lacks softjit's tag: softjit
    neither writes kernels into it nor clears it."""

    def __init__(self, path: Path, foreign: Sequence[str], tag_name: str, variable: str) -> None:
        self.path = Path(path)
        self.foreign = tuple(foreign)
        shown = ", ".join(repr(name) for name in self.foreign[:3])
        more = f" and {len(self.foreign) - 3} more" if len(self.foreign) > 3 else ""
        super().__init__(
            f"{self.path} is not a softjit cache: it holds files softjit did not create "
            f"({shown}{more}) and no {tag_name} written by softjit, so softjit leaves it alone; "
            f"set {variable} to a new or empty directory"
        )
