"""Run a registered variant on numpy arrays: natively when the host has its ISA, otherwise
through the software emulator softjit.codegen.emulator (AVX-512 on an AVX2 host).

    y = runners.vexp(variant, x)          # float32 in, float32 out, same length
    m = runners.rmax(variant, x)          # numpy.float32
    runners.EMULATOR.call(variant, ("ro", x), y, n)   # any function of the variant, emulated

Tests parametrize over `variants_of(op)`; `require(variant)` says how a variant runs here
(natively or emulated), `require_native(variant)` skips, saying why, when it cannot run natively.
Tests reach EMULATOR through the `emulator` fixture (tests/conftest.py).
"""
from __future__ import annotations

import numpy as np
import pytest

import softjit
from softjit.codegen.emulator import Machine
from softjit.codegen.variants import VARIANTS
from softjit.runtime import bindings


def variants_of(op: str) -> list:
    return [v for v in VARIANTS if v.op == op]


def variant_params(op: str) -> list:
    return [pytest.param(v, id=v.name) for v in variants_of(op)]


def unroll_elements(variant) -> int:
    return variant.unroll * variant.target.lanes


def is_native(variant) -> bool:
    return variant.isa in softjit.host_isas()


def require(variant) -> str:
    """'native' or 'emulated': how the variant runs here."""
    return "native" if is_native(variant) else "emulated"


def require_native(variant) -> None:
    if not is_native(variant):
        pytest.skip(f"{variant.name}: this host does not run {variant.isa} natively "
                    f"(host ISAs: {', '.join(softjit.host_isas()) or 'none'})")


# ---------------------------------------------------------------------------- native
def native_function(variant):
    return bindings.function(variant)


def _pointer(array: np.ndarray):
    return bindings.pointer(array)


def native_vexp_into(variant, x: np.ndarray, y: np.ndarray, n: int | None = None) -> None:
    """y[:n] = exp(x[:n]) with the variant's native function (x and y: float32 buffers)."""
    n = x.size if n is None else n
    native_function(variant)(_pointer(x), _pointer(y), n)


def native_rmax(variant, x: np.ndarray, n: int | None = None) -> np.float32:
    n = x.size if n is None else n
    out = np.full(1, np.float32(12345.0), np.float32)
    native_function(variant)(_pointer(x), n, _pointer(out))
    return out[0]


# ---------------------------------------------------------------------------- emulated
class Emulator:
    """A registered variant's functions run in softjit.codegen.emulator on numpy buffers.

    Each variant's module is parsed once (~20 ms) into a Machine; every call resets its
    registers. numpy arguments are mapped for the call only: writable, or read-only when
    passed as ("ro", array) (a write to them faults); other arguments pass as integers."""

    def __init__(self):
        self._machines: dict = {}

    def machine(self, variant) -> Machine:
        m = self._machines.get(variant)
        if m is None:
            m = self._machines[variant] = Machine(bindings.assembly(variant))
        return m

    def call(self, variant, *args, symbol: str | None = None) -> int:
        """Call symbol (by default the variant's own function); returns rax."""
        m = self.machine(variant)
        mapped, call_args = [], []
        try:
            for a in args:
                if isinstance(a, tuple) and a[0] == "ro":
                    address = m.map(a[1], writable=False)
                elif isinstance(a, np.ndarray):
                    address = m.map(a)
                else:
                    call_args.append(a)
                    continue
                mapped.append(address)
                call_args.append(address)
            return m.call(symbol or variant.name, *call_args)
        finally:
            for address in mapped:
                m.unmap(address)


EMULATOR = Emulator()


def emulated_vexp_into(variant, x: np.ndarray, y: np.ndarray, n: int | None = None) -> None:
    """x is mapped read-only (a write to it faults), y by reference."""
    EMULATOR.call(variant, ("ro", x), y, x.size if n is None else n)


def emulated_rmax(variant, x: np.ndarray, n: int | None = None) -> np.float32:
    out = np.full(1, np.float32(12345.0), np.float32)
    EMULATOR.call(variant, ("ro", x), x.size if n is None else n, out)
    return out[0]


# ---------------------------------------------------------------------------- either
def vexp_into(variant, x: np.ndarray, y: np.ndarray, n: int | None = None) -> None:
    if is_native(variant):
        native_vexp_into(variant, x, y, n)
    else:
        emulated_vexp_into(variant, x, y, n)


def vexp(variant, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float32)
    y = np.empty_like(x)
    vexp_into(variant, x, y)
    return y


def rmax(variant, x: np.ndarray, n: int | None = None) -> np.float32:
    x = np.ascontiguousarray(x, np.float32)
    if is_native(variant):
        return native_rmax(variant, x, n)
    return emulated_rmax(variant, x, n)


# ---------------------------------------------------------------------------- buffers
def aligned(n: int, offset: int = 0, fill=0.0, align: int = 64) -> np.ndarray:
    """n float32s starting `offset` floats past an `align`-byte aligned address."""
    raw = np.empty(n + offset + align // 4, np.float32)
    skip = (-raw.ctypes.data % align) // 4
    view = raw[skip + offset: skip + offset + n]
    view.fill(fill)
    assert (view.ctypes.data - offset * 4) % align == 0
    return view


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))
