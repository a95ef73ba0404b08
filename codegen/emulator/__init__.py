"""An emulator for the x86-64 assembly text softjit emits, so AVX-512 kernels run on any host.

    from softjit.codegen.emulator import Machine
    m = Machine(render_module(variant.build()))
    x_addr = m.map(x, writable=False)       # numpy arrays become emulated memory regions
    y_addr = m.map(y)                       # writes go straight through to the array
    m.call("f32_vexp__avx512f_rr2_p5_scalef_u64", x_addr, y_addr, n)

What it is for: running the AVX-512 kernels on hosts without AVX-512, bit-exactly, and catching
every out-of-bounds access. It is not a general x86 emulator: it reads GNU as Intel-syntax text
(`.intel_syntax noprefix`) of the shape softjit renders, and it knows the mnemonics of
codegen/instructions.py (an unknown one is an AsmParseError naming the line).

The rooms:
    text.py      parsing the assembly text into instructions, labels and data sections
    ieee.py      IEEE-754 lane arithmetic with x86's NaN rules; fma.py: FMA with one rounding
    memory.py    regions of emulated memory and the checked accesses (faults)
    state.py     the register file, poisoned at every call
    decode.py    operands become closures over registers and memory, once
    handlers/    one module per instruction family, registered in handlers/table.py:
                 float_arith, approximate (vrcp*/vrsqrt*), convert, integer, moves, shuffles,
                 gather, compare_mask, general, control
    machine.py   Machine: parse, decode, call per SysV, the run loop

Memory model. Every mapped array is a region whose emulated address has the array's address
mod 64, with unmapped gaps of at least 4096 bytes between regions; the data sections and a
stack are regions too; code is not readable memory. Any access touching a byte outside a
region, or writing a read-only one, raises EmulatedFault naming the instruction, its line, the
address and the size. Masked lanes (AVX-512 {k} write masks, VMASKMOVPS lanes whose mask sign
bit is clear) do not access memory, as on hardware (fault suppression). One stricter-than-
hardware choice: an embedded broadcast ({1toN}, "DWORD BCST") always reads its element, and
shuffles with a memory source read the whole vector, whatever the mask. VMOVAPS and VMOVNTPS
with a misaligned memory operand raise EmulatedFault (#GP on hardware).

Arithmetic is bit-exact IEEE-754 as the hardware computes it with the default MXCSR (ieee.py,
fma.py say how). Registers: 16 general-purpose, 32 vector (xmm/ymm/zmm views of one array; VEX
and EVEX writes of xmm/ymm zero the rest of the zmm register), 8 mask registers, CF/ZF/SF/OF/PF.
Internal `call`s must find rsp 16-byte aligned; the top-level call must restore rbx, rbp,
r12-r15 and rsp (ABIViolation otherwise).
"""
from softjit.codegen.emulator.errors import (ABIViolation, AsmParseError, EmulatedFault,
                                             EmulationError, InstructionLimitExceeded)
from softjit.codegen.emulator.handlers import SUPPORTED_MNEMONICS
from softjit.codegen.emulator.machine import Machine

__all__ = [
    "Machine", "EmulationError", "AsmParseError", "EmulatedFault", "ABIViolation",
    "InstructionLimitExceeded", "SUPPORTED_MNEMONICS",
]
