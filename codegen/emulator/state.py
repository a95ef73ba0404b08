"""The register file: 16 general-purpose registers (Python ints), 32 vector registers (one
numpy uint32 array of 32 x 16 lanes, viewed as uint64 lanes for 64-bit elements), 8 mask
registers and the CF/ZF/SF/OF/PF flags.

Instruction closures bind these lists and array views once, at decode time, and read and
write them in place; nothing here is replaced after construction.
"""
from __future__ import annotations

import numpy as np

from softjit.codegen.emulator.ieee import M32
from softjit.codegen.emulator.text import GP32_NUMBER, GP64_NUMBER, MASK_RE, VEC_BITS, VEC_RE
from softjit.codegen.abi import SYSV_ARGS, SYSV_CALLEE_SAVED
from softjit.codegen.operands import GP64

RSP = GP64.index("rsp")
ARGUMENT_REGISTERS = tuple(GP64.index(name) for name in SYSV_ARGS)
CALLEE_SAVED = tuple(GP64.index(name) for name in SYSV_CALLEE_SAVED)
FLAG_NAMES = ("CF", "ZF", "SF", "OF", "PF")

# At every call the registers that carry no argument start out poisoned, so a kernel that
# reads one before writing it computes garbage that the tests see.
POISON_GP = 0xA5A5_A5A5_A5A5_A5A5
POISON_VEC = 0x7FA5_A5A5  # a signalling NaN in every float32 lane
POISON_K = 0xA5A5
POISON_CALLEE_SAVED = 0x5EED_0000_0000_0000  # | number << 8: told apart when not restored


class Registers:
    def __init__(self, poison: bool = True):
        self.poison = poison
        self.gp = [0] * 16
        self.kregs = [0] * 8
        self.flags = [0, 0, 0, 0, 0]  # CF, ZF, SF, OF, PF
        self.vu = np.zeros((32, 16), np.uint32)
        self.vq = self.vu.view(np.uint64)
        self.vv = {16: self.vu.view(np.uint16), 32: self.vu, 64: self.vq}  # lanes by width

    def reset(self) -> None:
        """Every register poisoned (or zeroed without poison), the flags cleared."""
        g, poison = self.gp, self.poison
        for i in range(16):
            g[i] = (POISON_GP ^ i) if poison else 0
        for r in CALLEE_SAVED:
            g[r] = POISON_CALLEE_SAVED | (r << 8) if poison else 0
        self.vu[...] = POISON_VEC if poison else 0
        for i in range(8):
            self.kregs[i] = POISON_K if poison else 0
        self.flags[:] = [0, 0, 0, 0, 0]

    def read(self, name: str):
        """int for gp (r64/r32) and k registers, a uint32 array copy for xmm/ymm/zmm."""
        low = name.lower()
        if low in GP64_NUMBER:
            return self.gp[GP64_NUMBER[low]]
        if low in GP32_NUMBER:
            return self.gp[GP32_NUMBER[low]] & M32
        m = VEC_RE.match(low)
        if m and int(m.group(2)) < 32:
            return self.vu[int(m.group(2)), :VEC_BITS[m.group(1)] // 32].copy()
        if MASK_RE.fullmatch(low):
            return self.kregs[int(low[1])]
        raise KeyError(name)

    def flag_values(self) -> dict:
        return dict(zip(FLAG_NAMES, (int(bool(f)) for f in self.flags)))
