"""No softmax kernel touches memory outside its arguments.

Every native row driver and every pass kernel runs in a child process on buffers that end exactly
at a PROT_NONE page, or start right after one (tests/guarded.py's GuardedArray), so a read or write one float too far is a SIGSEGV
of the child (reported with the call that was running), not of the test run. Bytes beside the
outputs (canaries) must stay as they were, and inputs must come back unmodified. The scaled
variants run with a negative input scale (their row_strides and states carry it), against the
softmax of the products.

The AVX-512 kernels are checked the same way by the emulator tests in test_softmax.py (the
emulator raises EmulatedFault on any out-of-bounds access) on hosts without AVX-512.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import softjit
from softjit.codegen import variants

HOST_ISAS = softjit.host_isas()
TESTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/, for guarded.py
SOFTMAX_VARIANTS = [v for v in variants.VARIANTS if v.op == "softmax" and v.element == "f32"]
ROW_LENGTHS = list(range(0, 71)) + [127, 128, 129, 255, 256, 257, 1000, 4101, 4096 + 13, 65539]
# the scaled variants: every tail length of both ISAs, a few lengths through the unrolled loops
SCALED_ROW_LENGTHS = list(range(0, 36)) + [129, 257, 4101, 65539]

# The child: every call on guarded buffers, a progress line before each (to name a fault).
CHILD = r'''
import faulthandler, json, sys
sys.path.insert(0, sys.argv[3])  # tests/, for guarded.py
import numpy as np
from guarded import GuardedArray, pointer as P  # PROT_NONE-fenced arrays; void* of an address
from softjit.codegen import variants
from softjit.runtime import bindings

faulthandler.enable()
name, lengths = sys.argv[1], json.loads(sys.argv[2])
variant = variants.REGISTRY.named(name)
scale = np.float32(-0.625) if variant.scaled else None


class Guarded(GuardedArray):
    # a GuardedArray (float32 words) holding values of any 4- or 8-byte dtype
    def __init__(self, values, where):
        super().__init__(values.nbytes // 4, where)
        self.array.view(values.dtype)[:] = values
        self.nbytes = values.nbytes
        self.dtype = values.dtype

    def values(self):
        return self.array.view(self.dtype)

    def snapshot(self):
        return self.whole.copy()

    def outside_changed(self, before, allowed=None):
        # offsets (bytes, from the array start) of changed bytes outside [0, allowed)
        changed = (np.flatnonzero(self.whole != before) - self.offset) * 4
        if allowed is not None:
            changed = changed[(changed < 0) | (changed >= allowed)]
        return changed.tolist()[:8]

    def free(self):
        self.close()


failures = []


def progress(text):
    sys.stdout.write("CALL " + text + "\n")
    sys.stdout.flush()


def fill(rng, n, rows=1):
    return rng.uniform(-30.0, 30.0, n * rows).astype(np.float32)


def guarded_with(values, where):
    return Guarded(values, where)


rng = np.random.default_rng(1)
driver = bindings.function(variant, variant.driver_symbol)
passes = [(p.symbol, bindings.function(variant, p.symbol)) for p in variant.passes]
for n in lengths:
    for where in ("end", "start"):
        # ---- the row driver: 1 and 3 rows, positive and negative row strides
        for rows, sign in ((1, 1), (3, 1), (3, -1)):
            label = f"{variant.driver_symbol} n={n} rows={rows} stride_sign={sign} at {where}"
            xs = fill(rng, n, rows)
            gx = guarded_with(xs, where)
            gy = guarded_with(np.zeros(n * rows, np.float32), where)
            first = 0 if sign > 0 else (rows - 1) * n * 4  # byte offset of row 0
            gs = guarded_with(bindings.strides_argument(sign * 4 * n, sign * 4 * n, scale), where)
            gst = guarded_with(np.full(rows, -5, np.int32), where)
            bx, by = gx.snapshot(), gy.snapshot()
            progress(label)
            marked = driver(P(gx.address + first), P(gy.address + first), n, rows,
                            P(gs.address), P(gst.address))
            if gx.outside_changed(bx):
                failures.append(f"{label}: x changed at bytes {gx.outside_changed(bx)}")
            if gy.outside_changed(by, 4 * n * rows):
                failures.append(f"{label}: wrote outside y at bytes {gy.outside_changed(by, 4 * n * rows)}")
            status = gst.values().copy()
            if n and (marked != 0 or status.tolist() != [0] * rows):
                failures.append(f"{label}: marked {marked}, status {status.tolist()}")
            if n:
                y = gy.values().reshape(rows, n)
                x = xs.reshape(rows, n) * (scale or 1)
                e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
                ref = e / e.sum(1, keepdims=True)
                err = float(np.max(np.abs(y - ref) / ref))
                if not err <= 1e-5:
                    failures.append(f"{label}: relative error {err}")
            for g in (gx, gy, gs, gst):
                g.free()
        # ---- each pass kernel on its own, in the order the driver calls them
        xs = fill(rng, n)
        gx = guarded_with(xs, where)
        gy = guarded_with(np.zeros(n, np.float32), where)
        gstate = guarded_with(np.array([0, 0, 0, scale or 0], np.float32), where)
        bx = gx.snapshot()
        for symbol, function in passes:
            label = f"{symbol} n={n} at {where}"
            by, bstate = gy.snapshot(), gstate.snapshot()
            progress(label)
            result = function(P(gx.address), P(gy.address), n, P(gstate.address))
            if gx.outside_changed(bx):
                failures.append(f"{label}: x changed at bytes {gx.outside_changed(bx)}")
            if gy.outside_changed(by, 4 * n):
                failures.append(f"{label}: wrote outside y at bytes {gy.outside_changed(by, 4 * n)}")
            if gstate.outside_changed(bstate, 16):
                failures.append(f"{label}: wrote outside state[0:4]")
            if n and result != 0:
                failures.append(f"{label}: returned {result} on an ordinary row")
        if n:
            y = gy.values()
            xs = xs * (scale or 1)
            e = np.exp(xs.astype(np.float64) - xs.max())
            err = float(np.max(np.abs(y - e / e.sum()) / (e / e.sum())))
            if not err <= 1e-5:
                failures.append(f"passes of {name} n={n} at {where}: relative error {err}")
        for g in (gx, gy, gstate):
            g.free()
print("RESULT " + json.dumps(failures))
'''


@pytest.mark.parametrize("variant", SOFTMAX_VARIANTS, ids=lambda v: v.name)
def test_no_access_outside_the_buffers(variant):
    if variant.isa not in HOST_ISAS:
        pytest.skip(f"this host lacks {variant.isa}; test_softmax.py's emulator tests check its "
                    "bounds instead")
    lengths = SCALED_ROW_LENGTHS if variant.scaled else ROW_LENGTHS
    result = subprocess.run([sys.executable, "-c", CHILD, variant.name, json.dumps(lengths),
                             TESTS_DIR],
                            capture_output=True, text=True, timeout=600, env=dict(os.environ))
    calls = [line for line in result.stdout.splitlines() if line.startswith("CALL ")]
    if result.returncode != 0:
        last = calls[-1][5:] if calls else "(before the first kernel call)"
        pytest.fail(f"the child died with status {result.returncode} during: {last}\n"
                    f"{result.stderr[-4000:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-2000:] + result.stderr[-2000:]
    failures = json.loads(lines[-1][len("RESULT "):])
    assert not failures, "\n".join(failures[:20])
    # every length, both placements, 3 driver shapes and every pass were exercised
    assert len(calls) == len(lengths) * 2 * (3 + len(variant.passes))


def test_the_guard_pages_catch_an_overrun():
    """The harness itself: reading one float past a buffer that ends at a guard page kills the
    child with SIGSEGV."""
    source = CHILD.split("failures = []")[0] + r'''
import ctypes
g = Guarded(np.zeros(5, np.float32), "end")
x = (ctypes.c_float * 6).from_address(g.address)
print(x[4]); sys.stdout.flush()
print(x[5])
'''
    result = subprocess.run([sys.executable, "-c", source, SOFTMAX_VARIANTS[0].name, "[]",
                             TESTS_DIR], capture_output=True, text=True, timeout=120)
    assert result.returncode == -11, (result.returncode, result.stdout, result.stderr[-2000:])
