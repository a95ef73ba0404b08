"""Arrays fenced by PROT_NONE pages, so that a kernel touching one byte outside them faults.

    with GuardedArray(n, place="end") as g:      # g.array ends exactly where a guard page starts
        kernel(g.array, ...)
        assert g.canaries_intact()

Layout of one allocation (mmap, then mprotect through libc):

    [guard page][data pages ... ][guard page]
                 ^ place="start": the array starts here (a read before x[0] faults)
                       place="end": the array ends at the last guard  ^ (a read past x[n-1] faults)

The data pages outside the array are filled with a canary pattern; canaries_intact() says
whether anything wrote there. An n == 0 array sits right at a guard page (its pointer is the
first byte a kernel must not touch).

Run as a script, it is the child process of tests/kernels/test_guard_pages.py: it runs registered
kernels on guarded arrays and prints a line before each call, so that a fault (the child dies by
a signal) is reported with the case that caused it:

    python tests/guarded.py VARIANT_NAME N [N ...]
"""
from __future__ import annotations

import ctypes
import functools
import mmap
import os
import sys

import numpy as np

PAGE = mmap.PAGESIZE
CANARY = 0x7FBADBAD  # a signalling NaN that no kernel produces
PROT_NONE = 0  # Linux; the mmap module names only PROT_READ / PROT_WRITE / PROT_EXEC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.mprotect.restype = ctypes.c_int
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} failed: {os.strerror(errno)}")


class GuardedArray:
    """n float32 elements right after (place="start") or right before (place="end") a guard page
    (dtype: any 4-byte or 2-byte dtype instead, such as float16 or bfloat16; 2-byte canaries
    are the low half of CANARY)."""

    def __init__(self, n: int, place: str = "end", dtype=np.float32):
        if place not in ("start", "end"):
            raise ValueError(f"place must be 'start' or 'end', not {place!r}")
        self.n, self.place = n, place
        size = np.dtype(dtype).itemsize
        if size not in (2, 4):
            raise ValueError(f"GuardedArray holds 2- or 4-byte elements, not {np.dtype(dtype)}")
        self.itemsize = size
        self.canary = CANARY & ((1 << 8 * size) - 1)
        self.data_pages = max(1, -(-size * n // PAGE))
        self.size = (self.data_pages + 2) * PAGE
        base = _libc.mmap(None, self.size, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        if base in (None, _MAP_FAILED):
            raise OSError(ctypes.get_errno(), "mmap failed")
        self.base = base
        self.data_start = base + PAGE
        self.data_end = self.data_start + self.data_pages * PAGE
        _check(_libc.mprotect(base, PAGE, PROT_NONE), "mprotect(low guard)")
        _check(_libc.mprotect(self.data_end, PAGE, PROT_NONE), "mprotect(high guard)")
        words = self.data_pages * PAGE // size
        word_type = ctypes.c_uint32 if size == 4 else ctypes.c_uint16
        self.whole = np.ctypeslib.as_array((word_type * words).from_address(self.data_start))
        self.whole[:] = self.canary
        self.offset = 0 if place == "start" else words - n
        self.array = self.whole[self.offset:self.offset + n].view(dtype)
        assert self.address == (self.data_start if place == "start" else self.data_end - size * n)

    @property
    def address(self) -> int:
        """The array's first byte (for n == 0, where it would be)."""
        return self.data_start + self.itemsize * self.offset

    def canaries_intact(self) -> bool:
        return bool((self.whole[:self.offset] == self.canary).all()
                    and (self.whole[self.offset + self.n:] == self.canary).all())

    def touched_outside(self) -> list:
        """Offsets (in elements, relative to the array's first element) of changed canaries."""
        changed = np.flatnonzero(self.whole != self.canary)
        outside = changed[(changed < self.offset) | (changed >= self.offset + self.n)]
        return [int(i) - self.offset for i in outside[:10]]

    def close(self) -> None:
        if self.base is not None:
            self.array = self.whole = None
            _check(_libc.munmap(self.base, self.size), "munmap")
            self.base = None

    def __enter__(self) -> "GuardedArray":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@functools.lru_cache(maxsize=None)
def _ffi():
    import cffi

    return cffi.FFI()


def pointer(address: int):
    """An address as the void* that the kernels' cffi declarations take."""
    return _ffi().cast("void*", address)


# ---------------------------------------------------------------------------- the child
PLACEMENTS = (("end", "end"), ("start", "start"), ("end", "start"), ("start", "end"))


def _values(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-100.0, 90.0, n).astype(np.float32)


def run_case(variant, function, n: int, x_place: str, out_place: str) -> list:
    """One guarded call; returns the problems found (a fault kills the process instead)."""
    problems = []
    values = _values(n, seed=n)
    out_n = n if variant.op == "vexp" else 1
    with GuardedArray(n, x_place) as gx, GuardedArray(out_n, out_place) as gy:
        gx.array[:] = values
        gy.array[:] = np.float32(12345.0)
        x_before = gx.whole.copy()
        print(f"RUN {variant.name} n={n} x at {x_place} guard, out at {out_place} guard",
              flush=True)
        if variant.op == "vexp":
            function(pointer(gx.address), pointer(gy.address), n)
        else:
            function(pointer(gx.address), n, pointer(gy.address))
        label = f"{variant.name} n={n} x={x_place} out={out_place}"
        if not np.array_equal(gx.whole, x_before):
            problems.append(f"{label}: the input (or its surroundings) was modified")
        if not gy.canaries_intact():
            problems.append(f"{label}: wrote outside the output at offsets {gy.touched_outside()}")
        if variant.op == "vexp":
            expected = np.empty(n, np.float32)
            if n:
                function(_ffi().from_buffer(values), _ffi().from_buffer(expected), n)
            if not np.array_equal(gy.array.view(np.uint32), expected.view(np.uint32)):
                problems.append(f"{label}: results differ from an unguarded call")
        else:
            expected = values.max() if n else np.float32(-np.inf)
            if not gy.array[0] == expected:
                problems.append(f"{label}: max {gy.array[0]!r}, expected {expected!r}")
    return problems


def main(argv: list) -> int:
    from softjit.codegen.variants import REGISTRY
    from softjit.runtime import bindings

    variant = REGISTRY.named(argv[0])
    function = bindings.function(variant)
    problems, cases = [], 0
    for n in map(int, argv[1:]):
        for x_place, out_place in PLACEMENTS:
            problems += run_case(variant, function, n, x_place, out_place)
            cases += 1
    for p in problems:
        print("FAIL", p, flush=True)
    print(f"DONE {cases} cases, {len(problems)} problems", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
