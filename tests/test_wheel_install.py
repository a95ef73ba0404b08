"""softjit as a user gets it: the sdist and the wheel, built, audited, installed and run.

Builds the sdist and, from it, the wheel (`python -m build`, once per test session; the wheel's
build step assembles every registered kernel), checks what each holds, runs `auditwheel show` on
the wheel, installs each in its own fresh virtual environment and there, outside the source tree,
with `as` and `ld` hidden (PATH without them, SOFTJIT_AS/LD unset), runs the README's first
command's job (`python -m softjit demo`) and softmax / exp for every algorithm, checking that
every kernel came from the prebuilt objects.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import softjit
from softjit.codegen import entries, variants

REPO = Path(__file__).resolve().parents[1]
WHEEL_PLATFORM = "manylinux_2_17_x86_64.manylinux2014_x86_64"
NEWEST_GLIBC_CLAIMED = (2, 17)  # what the wheel's tag promises to run on

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
from softjit.runtime import entries
assert entries.unavailable_reason() is None, entries.unavailable_reason()
sources = {name: record.source for name, record in cache._records.items()}
assert sources and set(sources.values()) == {"prebuilt"}, sources
print("ok", softjit.__file__, len(sources))
"""


@dataclass(frozen=True)
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> Dists:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        "python -m build failed (pip install -e '.[test]' brings it):\n"
        + result.stdout[-3000:] + result.stderr[-3000:])
    (sdist,) = out.glob("softjit-*.tar.gz")
    (wheel,) = out.glob("softjit-*.whl")
    return Dists(sdist, wheel)


def test_wheel_is_tagged_manylinux_and_pure_python_otherwise(dists) -> None:
    assert dists.wheel.name == f"softjit-{softjit.__version__}-py3-none-{WHEEL_PLATFORM}.whl"
    with zipfile.ZipFile(dists.wheel) as wheel:
        info = wheel.read(f"softjit-{softjit.__version__}.dist-info/WHEEL").decode()
    assert "Root-Is-Purelib: false" in info
    assert "Tag: py3-none-manylinux_2_17_x86_64" in info


def test_wheel_built_without_binutils_is_pure_python(dists, tmp_path: Path) -> None:
    # SOFTJIT_AS naming no program makes the build's toolchain lookup fail, as on a machine
    # without binutils. Built from the sdist, so the source tree gets no build/ folder.
    env = {**os.environ, "SOFTJIT_AS": str(tmp_path / "no-assembler")}
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose",
                             "--wheel-dir", str(tmp_path), str(dists.sdist)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "no prebuilt kernels in this build" in result.stdout + result.stderr
    (wheel,) = tmp_path.glob("softjit-*.whl")
    assert wheel.name == f"softjit-{softjit.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        assert not [n for n in archive.namelist() if "/prebuilt/" in n]


def test_auditwheel_accepts_the_wheel_tag(dists) -> None:
    # `auditwheel show` reads the ELF files; it needs no patchelf (only `repair` does).
    result = subprocess.run([sys.executable, "-m", "auditwheel", "show", str(dists.wheel)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    report = " ".join(result.stdout.split())
    assert "The wheel requires no external shared libraries" in report, report
    assert "references no external versioned symbols" in report, report
    consistent = re.search(r'consistent with the following platform tag: "manylinux_(\d+)_(\d+)_'
                           r'x86_64"', report)
    assert consistent, report
    # The objects run on every glibc from the one auditwheel names on, so on the claimed one.
    assert tuple(map(int, consistent.groups())) <= NEWEST_GLIBC_CLAIMED, report


def test_wheel_holds_the_runtime_the_objects_and_the_license(dists) -> None:
    with zipfile.ZipFile(dists.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"softjit-{softjit.__version__}.dist-info/METADATA").decode()
    prebuilt = {n for n in names if n.startswith("softjit/generated/prebuilt/")}
    assert prebuilt == {f"softjit/generated/prebuilt/{v.name}.so" for v in variants.VARIANTS} | {
        f"softjit/generated/prebuilt/{entries.MODULE_NAME}.so",
        "softjit/generated/prebuilt/manifest.json"}
    assert not [n for n in names if n.endswith(".S")], "the .S files stay in the sdist"
    for name in ("softjit/py.typed", "softjit/_version.py", "softjit/generated/kernels.h",
                 "softjit/templates/kernel.S.j2", "softjit/bench/cli.py",
                 f"softjit-{softjit.__version__}.dist-info/licenses/LICENSE"):
        assert name in names, name
    for line in (f"Version: {softjit.__version__}", "License-Expression: MIT",
                 "License-File: LICENSE", "Author: the softjit authors", "Typing :: Typed"):
        assert line in metadata.splitlines() or f"Classifier: {line}" in metadata, line


def test_sdist_holds_what_building_the_wheel_needs(dists) -> None:
    root = f"softjit-{softjit.__version__}"
    with tarfile.open(dists.sdist) as sdist:
        names = set(sdist.getnames())
    for name in ("LICENSE", "README.md", "pyproject.toml", "setup.py", "softjit/_version.py",
                 "softjit/py.typed", "generated/kernels.h", "generated/manifest.json",
                 f"generated/{entries.MODULE_NAME}.S",
                 *(f"generated/{v.name}.S" for v in variants.VARIANTS)):
        assert f"{root}/{name}" in names, name


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def _without_toolchain(tmp_path: Path) -> dict[str, str]:
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("SOFTJIT_AS", "SOFTJIT_LD", "SOFTJIT_PREBUILT_DIR", "SOFTJIT_ISA")}
    env.update(PATH=str(bare_path), SOFTJIT_CACHE_DIR=str(tmp_path / "cache"),
               HOME=str(tmp_path))
    return env


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_softjit_runs_without_a_toolchain(dists, kind, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    python = _fresh_venv(env_dir)
    # Installing the sdist builds a wheel from it, which needs binutils: that is the build
    # machine's business. Running is what must work without them.
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(getattr(dists, kind))],
                   check=True, timeout=900, cwd=tmp_path)
    env = _without_toolchain(tmp_path)
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(python), *args], env=env, cwd=work, capture_output=True,
                              text=True, timeout=300)

    demo = run("-m", "softjit", "demo")
    assert demo.returncode == 0, demo.stderr + demo.stdout
    assert "max error vs numpy float64" in demo.stdout
    assert f", prebuilt: {env_dir}" in demo.stdout, demo.stdout

    checked = run("-c", SCRIPT)
    assert checked.returncode == 0, checked.stderr + checked.stdout
    assert checked.stdout.startswith("ok ") and str(env_dir) in checked.stdout

    version = run("-m", "softjit", "--version")
    assert version.returncode == 0 and version.stdout == f"softjit {softjit.__version__}\n"

    generate = run("-m", "softjit", "generate")
    assert generate.returncode == 2 and "installed package" in generate.stderr, generate.stderr
    installed = next(env_dir.glob("lib/python*/site-packages/softjit/generated"))
    assert not list(installed.glob("*.S")) and not (installed / "manifest.json").exists()
    assert shutil.which("as") is not None  # the toolchain was only hidden, not removed


# torch is the one peer the bench extra leaves out (PyPI's Linux wheel brings the CUDA stack);
# the README says how to install its CPU build instead.
PEERS_OUTSIDE_THE_BENCH_EXTRA = {"torch"}


def _distribution_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.\-]+", requirement).group().lower().replace("_", "-")


def test_bench_extra_brings_every_peer_pypi_serves() -> None:
    import importlib.metadata

    from softjit.bench import peers

    requirements = importlib.metadata.requires("softjit") or []
    core = {_distribution_name(r) for r in requirements if "extra ==" not in r}
    bench = {_distribution_name(r) for r in requirements if 'extra == "bench"' in r}
    installed = importlib.metadata.packages_distributions()
    for peer in peers.PEERS:
        for module in peer.modules:
            top = module.split(".")[0]
            if top in PEERS_OUTSIDE_THE_BENCH_EXTRA:
                continue
            names = {_distribution_name(d) for d in installed.get(top, [top])}
            assert names & (core | bench), (
                f"peer {peer.key} imports {module}, which neither softjit's dependencies nor "
                f"its bench extra bring ({sorted(bench)})")
    readme = (REPO / "README.md").read_text()
    assert "pip install torch --index-url" in readme
