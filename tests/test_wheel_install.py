"""An installed wheel runs softmax with no assembler or linker on the machine.

Builds the wheel (whose build step assembles every registered kernel), installs it in a fresh
virtual environment, hides `as` and `ld` (PATH without them, SOFTJIT_AS/LD unset) and runs
softjit.softmax and softjit.exp for the host ISA, checking the results and that every kernel came
from the prebuilt objects.
"""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import shutil, sys
import numpy as np
assert shutil.which("as") is None and shutil.which("ld") is None, "as/ld still visible"
import softjit
from softjit.runtime import cache
x = np.random.default_rng(0).uniform(-50, 50, (5, 1000)).astype(np.float32)
for algorithm in ("two-pass", "three-pass-reload", "three-pass-recompute"):
    y = softjit.softmax(x, algorithm=algorithm)
    ref = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    ref /= ref.sum(axis=1, keepdims=True)
    keep = ref > 1.2e-38
    assert np.max(np.abs(y - ref)[keep] / ref[keep]) < 1e-5, algorithm
assert np.allclose(softjit.exp(np.float32([0, 1])), [1, np.e])
sources = {name: record.source for name, record in cache._records.items()}
assert sources and set(sources.values()) == {"prebuilt"}, sources
print("ok", softjit.__file__, len(sources))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-w", str(out),
                    "-q"], check=True, timeout=600)
    (built,) = out.glob("softjit-*.whl")
    return built


def test_wheel_runs_without_a_toolchain(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   timeout=900)
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("SOFTJIT_AS", "SOFTJIT_LD")}
    env.update(PATH=str(bare_path), SOFTJIT_CACHE_DIR=str(tmp_path / "cache"), HOME=str(tmp_path))
    env.pop("SOFTJIT_PREBUILT_DIR", None)
    result = subprocess.run([str(python), "-c", SCRIPT], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith("ok ") and str(env_dir) in result.stdout
    assert shutil.which("as") is not None  # the toolchain was only hidden, not removed
