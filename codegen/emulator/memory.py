"""Emulated memory: regions of bytes at emulated addresses, and nothing else.

Every mapped numpy array is a region aliasing the array (writes show up in it at once),
placed so that its emulated address has the array's real address mod 64 (alignment behaviour
is preserved), with unmapped gaps of at least 4096 bytes between regions. The text's data
sections and the stack are regions too; code is not readable memory. Any access touching a
byte outside a region, or writing a read-only one, raises Fault (the run loop turns it into
an EmulatedFault naming the instruction). Lane accesses check each enabled lane only when the
whole vector is not in bounds: disabled lanes never fault (fault suppression, as on hardware).
"""
from __future__ import annotations

import bisect

import numpy as np

from softjit.codegen.emulator.errors import Fault
from softjit.codegen.emulator.text import align_up

# The emulated address space. Code is not readable memory: an instruction's "address" exists
# only as a return address on the stack (TEXT_BASE + 16 * index).
TEXT_BASE = 0x0000_1000_0000
DATA_BASE = 0x0000_2000_0000
MAP_BASE = 0x0000_4000_0000
STACK_TOP = 0x7FFF_F000_0000
RETURN_SENTINEL = 0x0000_DEAD_BEEF_0000  # the top-level call returns here: emulation ends
GAP = 4096


class Region:
    __slots__ = ("start", "end", "u8", "writable", "name", "array")

    def __init__(self, start, u8, writable, name, array=None):
        self.start, self.end = start, start + u8.size
        self.u8, self.writable, self.name, self.array = u8, writable, name, array

    def __repr__(self):
        rw = "rw" if self.writable else "r-"
        return f"<region {self.name} [0x{self.start:X}, 0x{self.end:X}) {rw}>"


class Memory:
    """The regions, sorted by start address, and the checked accesses on them."""

    def __init__(self):
        self.regions: list = []
        self.starts: list = []
        self._next_map = MAP_BASE

    # -- regions ----------------------------------------------------------------------------

    def add(self, region: Region) -> None:
        i = bisect.bisect_left(self.starts, region.start)
        self.starts.insert(i, region.start)
        self.regions.insert(i, region)

    def lay_out_sections(self, sections: dict) -> dict:
        """Place the data sections (name -> bytes) from DATA_BASE, 4096-byte gaps between them;
        .rodata is read-only. Returns name -> base address."""
        base, bases = DATA_BASE, {}
        for name, buf in sections.items():
            bases[name] = base
            if buf:
                arr = np.frombuffer(bytes(buf), np.uint8).copy()
                if name == "rodata":
                    arr.flags.writeable = False
                self.add(Region(base, arr, name != "rodata", f".{name}"))
            base = align_up(base + len(buf) + GAP, GAP)
        return bases

    def map(self, array: np.ndarray, writable: bool = True) -> int:
        if not isinstance(array, np.ndarray):
            raise TypeError(f"map() takes a numpy array, not {type(array).__name__}")
        if not array.flags.c_contiguous:
            raise ValueError("map() needs a C-contiguous array (use np.ascontiguousarray)")
        if writable and not array.flags.writeable:
            raise ValueError("the array is read-only: map it with writable=False")
        u8 = array.reshape(-1).view(np.uint8)
        real = array.__array_interface__["data"][0]
        start = align_up(self._next_map, GAP) + real % 64
        self._next_map = start + u8.size + GAP
        name = f"array{len(self.regions)}<{array.dtype}{list(array.shape)}>"
        self.add(Region(start, u8, writable, name, array))
        return start

    def unmap(self, address: int) -> None:
        for i, r in enumerate(self.regions):
            if r.start == address and r.array is not None:
                del self.regions[i]
                del self.starts[i]
                return
        raise KeyError(f"no mapped array at 0x{address:X}")

    def region_at(self, addr: int) -> Region:
        """The region starting at or below addr (the caller has checked addr is mapped)."""
        return self.regions[bisect.bisect_right(self.starts, addr) - 1]

    # -- checked accesses ---------------------------------------------------------------------

    def _describe_miss(self, addr, size, write):
        what = "write" if write else "read"
        i = bisect.bisect_right(self.starts, addr) - 1
        near = []
        if i >= 0:
            r = self.regions[i]
            if addr < r.end:
                near.append(f"runs {addr + size - r.end} bytes past the end of {r.name} "
                            f"[0x{r.start:X}, 0x{r.end:X})")
            else:
                near.append(f"starts {addr - r.end} bytes past the end of {r.name} "
                            f"[0x{r.start:X}, 0x{r.end:X})")
        if i + 1 < len(self.regions):
            r = self.regions[i + 1]
            if addr + size > r.start:
                near.append(f"starts {r.start - addr} bytes before {r.name}")
        return f"{what} outside mapped memory" + (": " + "; ".join(near) if near else "")

    def locate(self, addr, size, write=False):
        """(bytes of the region, offset of addr in it) when [addr, addr + size) lies in one
        region (writable if write); Fault otherwise."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            r = self.regions[i]
            if addr + size <= r.end:
                if write and not r.writable:
                    raise Fault(f"write to read-only {r.name}", addr, size)
                return r.u8, addr - r.start
        raise Fault(self._describe_miss(addr, size, write), addr, size)

    def load(self, addr, nbytes, dtype):
        u8, off = self.locate(addr, nbytes)
        return u8[off:off + nbytes].view(dtype)

    def load_lanes(self, addr, esize, n, lanes, dtype):
        """Read only the enabled lanes (fault suppression); disabled lanes read as 0 unless the
        whole vector is in bounds (then they hold memory, and the caller masks them)."""
        try:
            return self.load(addr, esize * n, dtype)
        except Fault:
            pass
        out = np.zeros(n, dtype)
        for i in np.flatnonzero(lanes):
            out[i] = self.load(addr + esize * int(i), esize, dtype)[0]
        return out

    def store(self, addr, data):
        b = np.ascontiguousarray(data).view(np.uint8)
        u8, off = self.locate(addr, b.size, True)
        u8[off:off + b.size] = b

    def store_lanes(self, addr, esize, data, lanes):
        n = data.shape[0]
        try:
            u8, off = self.locate(addr, esize * n, True)
        except Fault:
            for i in np.flatnonzero(lanes):
                self.store(addr + esize * int(i), data[i:i + 1])
            return
        np.copyto(u8[off:off + esize * n].view(data.dtype), data, where=lanes)

    def read_int(self, addr, size):
        u8, off = self.locate(addr, size)
        return int.from_bytes(u8[off:off + size].tobytes(), "little")

    def write_int(self, addr, size, value):
        u8, off = self.locate(addr, size, True)
        u8[off:off + size] = np.frombuffer((value & ((1 << 8 * size) - 1)).to_bytes(
            size, "little"), np.uint8)
