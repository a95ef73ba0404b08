"""Every example in examples/ runs, natively where the host can and in the emulator on both
ISAs, and agrees with numpy (each example's check() states its tolerance)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_examples():
    assert {p.stem for p in SCRIPTS} >= {"dot", "silu", "scaled_softmax"}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_example_agrees_with_numpy(path: Path):
    module = _load(path)
    assert module.check() > 0


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_as_a_script(path: Path):
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "agree with numpy" in done.stdout


def test_a_wrong_kernel_is_caught():
    """The checks can fail: the dot example with its FMA turned into a subtract disagrees."""
    module = _load(EXAMPLES / "dot.py")
    import softjit

    def broken(f):
        module.dot(f)
        for item in f.items:
            if getattr(item, "mnemonic", "") == "vfmadd231ps":
                from softjit.codegen import instructions
                item.form = instructions.FORMS["vfnmadd231ps"][0]
    module.kernel = softjit.jit(broken, name="broken_dot", args=module.kernel.args)
    with pytest.raises(AssertionError):
        module.check(sizes=(100,), emulate=("avx2",), native=False)


