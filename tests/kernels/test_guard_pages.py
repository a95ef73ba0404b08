"""No kernel reads or writes a byte outside its buffers.

Native kernels (the host's ISAs) run in a child process on arrays fenced by PROT_NONE pages
(tests/guarded.py), both input and output guarded, the array ending exactly at a guard page or
starting right after one: an out-of-bounds access kills the child by a signal, which is reported
with the case it was running. The child also checks canaries around the output, that the input
is unchanged and that the results equal an unguarded call.

AVX-512 kernels (and, as a cross-check, the AVX2 ones) run in the emulator, which maps each
array exactly (nothing within 4096 bytes of it) and raises EmulatedFault on any access outside,
and on any write to the read-only input.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runners
from guarded import CANARY, GuardedArray
from softjit.codegen.emulator import EmulatedFault

GUARDED = Path(__file__).resolve().parents[1] / "guarded.py"
GUARDED_OPS = runners.variant_params("vexp") + runners.variant_params("rmax")


def lengths(variant, top: int = 70) -> list:
    """0..top, then both sides of one and two unrolled steps, then multi-page lengths."""
    u, lanes = runners.unroll_elements(variant), variant.target.lanes
    around = {u - 1, u, u + 1, u + lanes - 1, u + lanes + 1, 2 * u - 1, 2 * u, 2 * u + 1,
              2 * u + lanes + 3, 3 * u + 2 * lanes + 7}
    return list(range(top + 1)) + sorted(k for k in around if k > top)


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def run_child(args: list, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=GUARDED.parent)


@pytest.mark.parametrize("variant", GUARDED_OPS)
def test_native_kernel_stays_inside_guard_pages(variant):
    runners.require_native(variant)
    ns = lengths(variant) + [1000, 1024, 4099, 65536 + 13]
    done = run_child([str(GUARDED), variant.name, *map(str, ns)])
    runs = [line for line in done.stdout.splitlines() if line.startswith("RUN")]
    failures = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    if done.returncode < 0:
        pytest.fail(f"{variant.name}: the child was {describe_exit(done.returncode)} while "
                    f"running: {runs[-1][4:] if runs else '(before the first case)'}\n"
                    f"stderr: {done.stderr[-2000:]}")
    assert not failures, f"{variant.name}: {len(failures)} problems\n" + "\n".join(failures[:20])
    assert done.returncode == 0 and "DONE" in done.stdout, (
        f"{variant.name}: child {describe_exit(done.returncode)}\n"
        f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}")
    assert len(runs) == 4 * len(ns)


@pytest.mark.parametrize("place, step", [("end", "past the end"), ("start", "before the start")])
def test_the_guard_page_faults(place, step):
    """The harness works: one float beyond the array kills the child with SIGSEGV."""
    offset = "g.address + 4 * g.n" if place == "end" else "g.address - 4"
    source = textwrap.dedent(f"""
        import ctypes
        from guarded import GuardedArray
        g = GuardedArray(5, {place!r})
        print(ctypes.c_float.from_address(g.address).value + g.array.sum(), flush=True)
        print("READING", flush=True)
        ctypes.c_float.from_address({offset}).value
        print("NOT FAULTED", flush=True)
    """)
    done = run_child(["-c", source], timeout=60)
    assert "READING" in done.stdout, done.stdout + done.stderr
    assert done.returncode == -signal.SIGSEGV, (
        f"reading one float {step} gave {describe_exit(done.returncode)}, not SIGSEGV: "
        f"{done.stdout} {done.stderr}")


def test_canaries_detect_writes_around_the_array():
    for place in ("start", "end"):
        with GuardedArray(10, place) as g:
            assert g.canaries_intact() and g.array.size == 10
            g.array[:] = 1.0
            assert g.canaries_intact()
            g.whole[g.offset + 10 if place == "start" else g.offset - 1] = 0
            assert not g.canaries_intact()
            assert g.touched_outside() == ([10] if place == "start" else [-1])
    with GuardedArray(0, "end") as g:
        assert g.array.size == 0 and g.address == g.data_end
        assert (g.whole == CANARY).all()


# ---------------------------------------------------------------------------- emulated
def _emulated_case(emulator, variant, n: int) -> None:
    x = np.random.default_rng(n).uniform(-100.0, 90.0, n).astype(np.float32)
    if variant.op == "vexp":
        y = np.full(n, np.float32(12345.0))
        emulator.call(variant, ("ro", x), y, n)
        assert n == 0 or not (y == np.float32(12345.0)).any(), f"n={n}: some outputs not written"
    else:
        out = np.full(1, np.float32(12345.0))
        emulator.call(variant, ("ro", x), n, out)
        expected = x.max() if n else np.float32(-np.inf)
        assert out[0] == expected, f"{variant.name} n={n}: max {out[0]!r}, expected {expected!r}"


@pytest.mark.parametrize("variant", GUARDED_OPS)
def test_emulated_kernel_stays_inside_its_arrays(variant, emulator):
    for n in lengths(variant):
        try:
            _emulated_case(emulator, variant, n)
        except EmulatedFault as fault:
            pytest.fail(f"{variant.name} n={n} (x read-only, exactly n floats; out exactly "
                        f"{n if variant.op == 'vexp' else 1}): {fault}")


@pytest.mark.parametrize("variant", GUARDED_OPS)
def test_the_emulator_catches_an_overrun(variant, emulator):
    """The harness works: claiming one element more than the arrays hold faults."""
    n = 2 * runners.unroll_elements(variant) + 3
    x = np.ones(n, np.float32)
    with pytest.raises(EmulatedFault):
        if variant.op == "vexp":
            emulator.call(variant, ("ro", x), np.empty(n, np.float32), n + 1)
        else:
            emulator.call(variant, ("ro", x), n + 1, np.empty(1, np.float32))
