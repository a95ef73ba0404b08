"""An ISA the host lacks (or above the SOFTJIT_ISA cap) raises UnsupportedISAError, never
SIGILL: checked in a child process, so that an illegal instruction shows up as a signal exit
instead of killing the test run.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from softmax_cases import (ISAS, HOST_ISAS)


_MISSING_ISA_CHILD = r"""
import sys, numpy as np, softjit
isa = sys.argv[1]
x = np.ones((2, 40), np.float32)
try:
    softjit.softmax(x, isa=isa)
except softjit.UnsupportedISAError as e:
    assert isinstance(e, softjit.SoftjitError)
    assert isa in str(e), str(e)
    for algorithm in ("auto", "two-pass", "three-pass-reload", "three-pass-recompute"):
        try:
            softjit.softmax(x, algorithm=algorithm, isa=isa, out=np.empty_like(x), threads=2)
        except softjit.UnsupportedISAError:
            pass
        else:
            raise SystemExit("no error for " + algorithm)
    # the text can still be generated for any target
    assert "zmm" in softjit.assembly("two-pass", isa="avx512f")
    y = softjit.softmax(x)  # auto still works
    assert np.allclose(y, 1 / 40)
    print("UNSUPPORTED-OK", softjit.host_isas())
else:
    print("RAN", softjit.host_isas())
"""


def _run_child(isa, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", _MISSING_ISA_CHILD, isa], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("isa", ISAS)
def test_isa_the_host_lacks_raises_never_sigill(isa):
    """Asking for an ISA the host lacks raises UnsupportedISAError; run in a child process, so
    an illegal instruction would show up as a signal exit instead of killing the test run."""
    if isa in HOST_ISAS:
        pytest.skip(f"this host runs {isa}; the SOFTJIT_ISA cap test covers the error path")
    result = _run_child(isa)
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "UNSUPPORTED-OK" in result.stdout, result.stdout + result.stderr


def test_isa_above_the_softjit_isa_cap_raises():
    result = _run_child("avx512f", {"SOFTJIT_ISA": "avx2"})
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "UNSUPPORTED-OK" in result.stdout, result.stdout + result.stderr
