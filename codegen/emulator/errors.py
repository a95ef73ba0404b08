"""What the emulator raises: public errors about the program it runs, and the two internal
signals its decoder and its instruction closures use before the line is known."""
from __future__ import annotations


class EmulationError(Exception):
    """Base of everything the emulator raises about the program it runs."""


class AsmParseError(EmulationError):
    """The text cannot be parsed or decoded (unknown mnemonic, bad operand, undefined label)."""

    def __init__(self, message: str, line: int | None = None, text: str | None = None):
        self.line, self.text = line, text
        where = f"line {line}: {text.strip()!r}: " if line is not None else ""
        super().__init__(where + message)


class ExecutionError(EmulationError):
    """An error at run time, located at an instruction."""

    def __init__(self, reason: str, instruction: str, line: int, address: int | None = None,
                 size: int | None = None):
        self.reason, self.instruction, self.line = reason, instruction, line
        self.address, self.size = address, size
        at = f" (address 0x{address:X}, {size} bytes)" if address is not None else ""
        super().__init__(f"{reason}{at} at line {line}: {instruction}")


class EmulatedFault(ExecutionError):
    """A memory access outside every mapped region, a write to a read-only one, a misaligned
    aligned-only access, or control flow leaving the code. .instruction, .line, .address and
    .size say where."""


class ABIViolation(ExecutionError):
    """The SysV contract broken: a callee-saved register or rsp not restored, a misaligned
    stack at a call."""


class InstructionLimitExceeded(ExecutionError):
    """More instructions executed than the limit (a runaway loop)."""


class Fault(Exception):
    """Raised inside instruction closures; the run loop adds the instruction's text and line
    and raises `kind`."""

    def __init__(self, reason, address=None, size=None, kind=EmulatedFault):
        super().__init__(reason)
        self.reason, self.address, self.size, self.kind = reason, address, size, kind


class DecodeError(Exception):
    """Raised while parsing or decoding one line; the caller adds the line as an
    AsmParseError."""
