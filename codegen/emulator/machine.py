"""The Machine: a parsed, decoded text with its memory and registers, called per SysV.

Every instruction is decoded once, at construction, into a Python closure (decode.py,
handlers/); the run loop calls closures and follows the index they return. At every call the
registers that carry no argument are poisoned (state.py), and on return from the top-level
call rbx, rbp, r12-r15 and rsp must hold their entry values (ABIViolation otherwise).
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.decode import Decoder
from softjit.codegen.emulator.errors import ABIViolation, Fault, InstructionLimitExceeded
from softjit.codegen.emulator.handlers import HANDLERS
from softjit.codegen.emulator.ieee import M64, check_float_environment
from softjit.codegen.emulator.memory import (RETURN_SENTINEL, STACK_TOP, TEXT_BASE, Memory,
                                             Region)
from softjit.codegen.emulator.state import ARGUMENT_REGISTERS, CALLEE_SAVED, RSP, Registers
from softjit.codegen.emulator.text import parse_program
from softjit.codegen.operands import GP64


class Machine:
    """Parse an assembly text once; map arrays; call its functions as often as needed."""

    def __init__(self, asm_text: str, *, stack_size: int = 64 * 1024,
                 instruction_limit: int = 50_000_000, poison: bool = True):
        check_float_environment()
        self.instruction_limit = instruction_limit
        self.instructions_executed = 0  # by the last call
        self.total_instructions_executed = 0
        self.registers = Registers(poison)
        self.memory = Memory()
        program = parse_program(asm_text, HANDLERS)
        bases = self.memory.lay_out_sections(program.sections)
        # name -> ("text", instruction index) or ("data", address)
        self._labels = {name: where if where[0] == "text" else ("data", bases[where[0]] + where[1])
                        for name, where in program.labels.items()}
        self.globals: set = program.globals
        self._ins = program.instructions
        stack = np.full(stack_size, 0xCC, np.uint8)
        self._stack_top = STACK_TOP
        self.memory.add(Region(STACK_TOP - stack_size, stack, True, "stack"))
        decoder = Decoder(self.registers, self.memory, self._labels, self._ins, HANDLERS)
        self._code = [decoder.decode(ins) for ins in self._ins]
        self._code.append(self._fell_off)
        self._last_line = 0

    # -- public API -------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple:
        """The .globl function symbols of the text."""
        return tuple(sorted(s for s in self.globals if self._labels.get(s, ("",))[0] == "text"))

    def address_of(self, label: str) -> int:
        """The emulated address of a data label (or the pseudo-address of a code label)."""
        where = self._labels.get(label)
        if where is None:
            raise KeyError(label)
        return where[1] if where[0] == "data" else TEXT_BASE + 16 * where[1]

    def map(self, array: np.ndarray, writable: bool = True) -> int:
        """Place a C-contiguous numpy array in emulated memory; return its emulated address.

        The region aliases the array (writes show up in it at once) and has the array's
        address mod 64; nothing else is mapped within 4096 bytes of it."""
        return self.memory.map(array, writable)

    def unmap(self, address: int) -> None:
        """Remove the mapped array that starts at address."""
        self.memory.unmap(address)

    @property
    def regions(self) -> tuple:
        return tuple(self.memory.regions)

    def call(self, symbol: str, *args, instruction_limit: int | None = None,
             trace=None) -> int:
        """Run symbol(args) per SysV: ints (addresses, sizes) into rdi, rsi, rdx, rcx, r8, r9
        and then the stack; np.float32 / np.float64 into xmm0-7. Returns rax (unsigned).

        trace, if given, is called as trace(line, text) before every instruction (slow)."""
        where = self._labels.get(symbol)
        if where is None or where[0] != "text":
            raise KeyError(f"no function {symbol!r} in the text")
        if symbol not in self.globals:
            raise KeyError(f"{symbol!r} is not a .globl symbol")
        regs = self.registers
        g, limit = regs.gp, instruction_limit or self.instruction_limit
        ints, vecs = [], []
        for a in args:
            if isinstance(a, (np.float32, np.float64)):
                vecs.append(a)
            elif isinstance(a, float):
                raise TypeError("pass float arguments as np.float32 or np.float64")
            else:
                ints.append(int(a) & M64)
        if len(vecs) > 8:
            raise ValueError("more than 8 floating-point arguments")
        regs.reset()
        for reg, v in zip(ARGUMENT_REGISTERS, ints):
            g[reg] = v
        for i, v in enumerate(vecs):
            regs.vu[i, :] = 0
            if isinstance(v, np.float32):
                regs.vu[i, 0] = np.array(v, np.float32).view(np.uint32)
            else:
                regs.vq[i, 0] = np.array(v, np.float64).view(np.uint64)
        # stack: top 16-byte aligned; extra integer args, then the sentinel return address
        rsp = self._stack_top - 64
        extra = ints[6:]
        if len(extra) % 2:
            rsp -= 8
        for v in reversed(extra):
            rsp -= 8
            self.memory.write_int(rsp, 8, v)
        rsp -= 8
        self.memory.write_int(rsp, 8, RETURN_SENTINEL)
        g[RSP] = rsp
        saved = [g[r] for r in CALLEE_SAVED]
        self._run(where[1], limit, trace)
        if g[RSP] != rsp + 8:
            raise ABIViolation(f"rsp is 0x{g[RSP]:X} after return, expected 0x{rsp + 8:X}",
                               "ret", self._last_line)
        for r, v in zip(CALLEE_SAVED, saved):
            if g[r] != v:
                raise ABIViolation(f"callee-saved {GP64[r]} not restored "
                                   f"(0x{g[r]:X}, was 0x{v:X})", "ret", self._last_line)
        return g[0]

    def reg(self, name: str):
        """A register after a call: int for gp (r64/r32) and k registers, a uint32 array copy
        for xmm/ymm/zmm."""
        return self.registers.read(name)

    @property
    def flag_values(self) -> dict:
        return self.registers.flag_values()

    # -- running ----------------------------------------------------------------------------

    def _run(self, pc, limit, trace):
        # The hot loop: one closure call per instruction. The traced copy is kept separate so
        # that the untraced one tests nothing per instruction but the limit.
        code, ins = self._code, self._ins
        n = 0
        self._last_line = 0
        try:
            with np.errstate(all="ignore"):
                if trace is None:
                    while True:
                        r = code[pc]()
                        n += 1
                        if r is None:
                            pc += 1
                        elif r >= 0:
                            pc = r
                        else:
                            break
                        if n >= limit:
                            raise Fault(f"instruction limit of {limit} reached",
                                        kind=InstructionLimitExceeded)
                else:
                    while True:
                        if pc < len(ins):
                            trace(ins[pc].line, ins[pc].text)
                        r = code[pc]()
                        n += 1
                        if r is None:
                            pc += 1
                        elif r >= 0:
                            pc = r
                        else:
                            break
                        if n >= limit:
                            raise Fault(f"instruction limit of {limit} reached",
                                        kind=InstructionLimitExceeded)
        except Fault as f:
            if pc < len(ins):
                text, line = ins[pc].text.strip(), ins[pc].line
            else:
                text, line = "<end of text>", (ins[-1].line if ins else 0)
            raise f.kind(f.reason, text, line, f.address, f.size) from None
        finally:
            self.instructions_executed = n
            self.total_instructions_executed += n
        self._last_line = ins[pc].line

    def _fell_off(self):
        raise Fault("execution ran past the last instruction of the text")
