"""Fixtures and helpers shared by every test directory.

tests/ mirrors the packages: codegen/ (the generators, emission, the generated files), kernels/
(each kernel called directly: exp, rmax, the softmax row drivers, guard pages), emulator/ (the
emulator itself and the kernels through it), runtime/ (cache, loading, CPU detection, entries),
api/ (softjit.softmax and softjit.exp as users call them, and what the README says of them),
bench/, examples/; test_cli.py and test_wheel_install.py cover the command line and packaging.

The shared helpers, one of each (modules beside this file, imported by name):
- softmax_checks: the float64 softmax reference, the acceptance check, value distributions;
- softmax_cases: the softmax tests' parameters, seeded generators and special rows;
- exp_reference: the float32 exp reference and accuracy bookkeeping;
- runners: registered variants run natively or emulated, aligned buffers;
- drivers: the one call of a softmax row driver, natively or emulated, with any row strides;
- guarded: arrays fenced by PROT_NONE pages;
- kernel_calls: which kernels softjit.softmax asks for and calls (the kernel_calls fixture).

Fixtures: `emulator`, `kernel_calls`, and the helpers above as `softmax_reference`,
`call_driver`, `aligned_buffer`, `guarded_array`.

hypothesis profiles: "ci" (derandomized: the same examples on every run, no example database)
is loaded when the CI environment variable is set (.ci/run sets it), "dev" (random examples)
elsewhere; HYPOTHESIS_PROFILE names one explicitly.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import settings


def _build_entry_module_first() -> None:
    """softjit.softmax and softjit.exp become generated builtins at `import softjit` only when
    the entry module is already built (a warm cache or prebuilt objects); a process that starts
    from a cold cache keeps the Python functions. Build it in a child process before this
    session imports softjit, so that a fresh machine (CI) tests the builtins too instead of
    skipping their tests."""
    subprocess.run([sys.executable, "-c",
                    "import numpy, softjit; x = numpy.ones(4, numpy.float32); "
                    "softjit.softmax(x); softjit.exp(x)"], check=True, timeout=900)


_build_entry_module_first()

import drivers  # noqa: E402  (after the entry module is built: these import softjit)
import guarded  # noqa: E402
import runners  # noqa: E402
import softmax_checks  # noqa: E402
from kernel_calls import KernelCalls  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(scope="session")
def emulator() -> runners.Emulator:
    """Registered variants run in softjit.codegen.emulator on numpy buffers:
    emulator.call(variant, ("ro", x), y, n, symbol=...) maps the arrays for the call (any byte
    touched outside them faults) and returns rax; emulator.machine(variant) is the parsed
    Machine, shared by the whole session."""
    return runners.EMULATOR


@pytest.fixture
def kernel_calls(monkeypatch) -> KernelCalls:
    """softjit.softmax with every row driver and pass kernel it looks up wrapped to record the
    request (algorithm, isa, non-temporal) and each call (thread, rows or elements); the
    generated entries are bypassed, so that every call goes through the recorded Python layer."""
    calls = KernelCalls(monkeypatch)
    yield calls
    calls.forget()


@pytest.fixture(scope="session")
def softmax_reference():
    """softmax_reference(x, axis=-1): softmax in float64 of x's float32 values."""
    return softmax_checks.reference


@pytest.fixture(scope="session")
def call_driver():
    """call_driver(variant, x2d, y2d, emulator=None) -> (marked, status): a softmax row driver
    on (rows, n) views with any row strides (drivers.call)."""
    return drivers.call


@pytest.fixture(scope="session")
def aligned_buffer():
    """aligned_buffer(n, offset=0, fill=0.0, align=64): n float32s `offset` floats past an
    `align`-byte boundary (runners.aligned)."""
    return runners.aligned


@pytest.fixture(scope="session")
def guarded_array():
    """guarded_array(n, place="end"): a GuardedArray context (PROT_NONE pages around it)."""
    return guarded.GuardedArray


@pytest.fixture(scope="session", autouse=True)
def report_max_softmax_errors(request):
    """At the end of the run, the largest relative softmax error seen per algorithm x ISA (the
    softmax tests record them through softmax_checks.check_softmax)."""
    yield
    errors = softmax_checks.MAX_ERRORS
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if not errors or reporter is None:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    lines = ["", "softmax: largest relative error seen (reference >= FLT_MIN)"]
    lines += [f"  {label}: {error:.3e}" for label, error in sorted(errors.items(), key=str)]
    if capture is None:
        for line in lines:
            reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)
