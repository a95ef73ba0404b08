"""`python -m softjit ...` end to end, in child processes with their own cache directory."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import softjit
from softjit.__main__ import main
from softjit.codegen import generate, variants
from softjit.runtime import cpu
from softjit.runtime.bindings import assembly

GENERATED_DIR = Path(__file__).resolve().parents[1] / "generated"
AVX512_VARIANTS = [v for v in variants.VARIANTS if v.isa == "avx512f"]


@pytest.fixture
def softjit_cli(tmp_path: Path):
    """Run `python -m softjit ARGS` with an empty cache and none of the user's softjit settings."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith("SOFTJIT_")}
    environment["SOFTJIT_CACHE_DIR"] = str(tmp_path / "cache")

    def run(*args: str, **extra_environment: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "softjit", *args], capture_output=True,
                              text=True, timeout=120, env={**environment, **extra_environment})

    run.cache_dir = tmp_path / "cache"
    return run


def test_version_prints_the_version_and_exits_0(softjit_cli) -> None:
    result = softjit_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"softjit {softjit.__version__}\n"


def test_console_script_prints_the_version() -> None:
    script = Path(sysconfig.get_path("scripts")) / "softjit"
    if not script.is_file():
        pytest.skip(f"no softjit console script in {script.parent}: softjit is not pip-installed "
                    f"into this Python")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"softjit {softjit.__version__}\n"


def test_version_has_one_source() -> None:
    from softjit._version import __version__
    from softjit.codegen import emit
    from softjit.runtime import cache

    assert softjit.__version__ is __version__
    assert emit.VERSION is __version__
    assert cache.softjit_version() is __version__


def test_info_names_the_host_the_cache_and_the_toolchain(softjit_cli) -> None:
    result = softjit_cli("info")
    assert result.returncode == 0, result.stderr
    for label in ("cpu features:", "host isas:", "chosen isa:", "assembler:", "linker:",
                  "prebuilt:", "numpy:", "cffi:", "platform:"):
        assert label in result.stdout
    assert f"cache dir:     {softjit_cli.cache_dir}" in result.stdout
    assert "SOFTJIT_ISA:   (unset)" in result.stdout


def test_info_survives_a_missing_toolchain(softjit_cli, tmp_path: Path) -> None:
    result = softjit_cli("info", SOFTJIT_AS=str(tmp_path / "no-such-as"))
    assert result.returncode == 0, result.stderr
    assert "assembler:     not found" in result.stdout


def test_info_shows_the_isa_cap(softjit_cli) -> None:
    result = softjit_cli("info", SOFTJIT_ISA="avx2")
    assert result.returncode == 0, result.stderr
    assert "SOFTJIT_ISA:   avx2" in result.stdout
    assert "chosen isa:    avx2" in result.stdout


def test_asm_list_names_every_variant_with_its_isa(softjit_cli) -> None:
    result = softjit_cli("asm", "--list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [(name, isa) for name, isa, _ in rows] == [(v.name, v.isa) for v in variants.VARIANTS]


def _listed(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    assert result.returncode == 0, result.stderr
    return [tuple(line.split()[:2]) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("isa", cpu.ISAS)
def test_asm_list_isa_lists_only_that_isa(softjit_cli, isa) -> None:
    expected = [(v.name, v.isa) for v in variants.VARIANTS if v.isa == isa]
    assert expected and _listed(softjit_cli("asm", "--list", "--isa", isa)) == expected


def test_asm_list_isa_auto_lists_the_host_best(softjit_cli) -> None:
    capped = _listed(softjit_cli("asm", "--list", "--isa", "auto", SOFTJIT_ISA="avx2"))
    assert capped == [(v.name, v.isa) for v in variants.VARIANTS if v.isa == "avx2"]
    best = cpu.resolve_isa("auto")
    host = _listed(softjit_cli("asm", "--list", "--isa", "auto"))
    assert host == [(v.name, v.isa) for v in variants.VARIANTS if v.isa == best]


@pytest.mark.parametrize("variant", AVX512_VARIANTS, ids=lambda v: v.name)
def test_asm_prints_avx512_kernels_on_any_host(softjit_cli, variant) -> None:
    result = softjit_cli("asm", "--kernel", variant.name)
    assert result.returncode == 0, result.stderr
    assert result.stdout == assembly(variant)


def test_asm_op_name_picks_the_default_variant_of_the_isa(softjit_cli) -> None:
    result = softjit_cli("asm", "--isa", "avx2", "--kernel", "vexp")
    assert result.returncode == 0, result.stderr
    assert result.stdout == assembly(variants.REGISTRY.for_op("vexp", "avx2"))


def test_asm_unknown_kernel_lists_the_valid_ones(softjit_cli) -> None:
    result = softjit_cli("asm", "--kernel", "f32_vlog__avx2")
    assert result.returncode == 2
    assert "unknown kernel 'f32_vlog__avx2'" in result.stderr
    for v in variants.VARIANTS:
        assert v.name in result.stderr


def test_asm_kernel_of_another_isa_is_refused(softjit_cli) -> None:
    avx2_kernel = next(v for v in variants.VARIANTS if v.isa == "avx2")
    result = softjit_cli("asm", "--isa", "avx512f", "--kernel", avx2_kernel.name)
    assert result.returncode == 2
    assert "avx2 kernel" in result.stderr


@pytest.mark.skipif(not hasattr(softjit, "assembly"), reason="no softmax kernels yet")
def test_asm_algorithm_prints_its_pass_kernels(softjit_cli) -> None:
    result = softjit_cli("asm", "--algorithm", "two-pass", "--isa", "avx512f")
    assert result.returncode == 0, result.stderr
    assert result.stdout == softjit.assembly("two-pass", isa="avx512f")
    unknown = softjit_cli("asm", "--algorithm", "one-pass")
    assert unknown.returncode == 2
    assert "two-pass" in unknown.stderr


def test_asm_algorithm_without_softmax_kernels_says_so(monkeypatch, capsys) -> None:
    monkeypatch.delattr(softjit, "assembly", raising=False)
    assert main(["asm", "--algorithm", "two-pass"]) == 1
    assert "softmax kernels are not available yet" in capsys.readouterr().err


def test_generate_writes_the_committed_bytes(softjit_cli, tmp_path: Path) -> None:
    out = tmp_path / "generated"
    result = softjit_cli("generate", "--out", str(out))
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(generate.expected_files())
    for name in written:
        assert (out / name).read_bytes() == (GENERATED_DIR / name).read_bytes(), name
    again = softjit_cli("generate", "--out", str(out))
    assert "up to date" in again.stdout


def test_generate_leaves_files_it_did_not_write_alone(softjit_cli, tmp_path: Path) -> None:
    out = tmp_path / "kernels"
    out.mkdir()
    (out / "my_kernel.S").write_text("# the user's own\n")
    (out / "README.txt").write_text("notes\n")
    result = softjit_cli("generate", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"left {out / 'my_kernel.S'} alone" in result.stdout
    assert "removed" not in result.stdout
    assert (out / "my_kernel.S").read_text() == "# the user's own\n"
    assert (out / "README.txt").read_text() == "notes\n"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*generate.expected_files(), "my_kernel.S", "README.txt"])


@pytest.mark.parametrize("out", ["/proc/nope", "/dev/null", "/proc/self/nope/deeper"])
def test_generate_unwritable_out_is_one_line_exit_2(softjit_cli, out) -> None:
    result = softjit_cli("generate", "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith(f"softjit generate: ") and out in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_generate_defaults_to_the_checkout(softjit_cli) -> None:
    assert generate.default_out_dir() == GENERATED_DIR
    result = softjit_cli("generate")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{GENERATED_DIR}: up to date\n"


def test_generate_refuses_an_installed_package(monkeypatch, capsys, tmp_path: Path) -> None:
    installed = tmp_path / "site-packages" / "softjit" / "generated"
    monkeypatch.setattr(generate, "package_dir", lambda: installed)
    assert generate.source_checkout_dir() is None
    assert main(["generate"]) == 2
    error = capsys.readouterr().err
    assert "installed package" in error and str(installed) in error and "--out DIR" in error
    assert not installed.exists()


def test_build_makes_prebuilt_objects_that_the_runtime_uses(softjit_cli, tmp_path: Path) -> None:
    out = tmp_path / "prebuilt"
    result = softjit_cli("build", "--out", str(out), "--isa", "avx2")
    assert result.returncode == 0, result.stderr
    avx2_names = sorted([v.name for v in variants.VARIANTS if v.isa == "avx2"]
                        + ["cpython_entries"])
    assert sorted(p.stem for p in out.glob("*.so")) == avx2_names
    assert sorted(json.loads((out / "manifest.json").read_text())) == avx2_names
    assert sorted(json.loads((out / "asm-index.json").read_text())["modules"]) == avx2_names

    # the prebuilt objects are found by the index's hashes: no assembly is generated
    source = ("import numpy, softjit\n"
              "from softjit.codegen import variants\n"
              "from softjit.codegen.variants import REGISTRY\n"
              "from softjit.runtime.cache import last_shared_object\n"
              "variants.VExp.build = lambda self: 1 / 0\n"
              "softjit.exp(numpy.zeros(3, numpy.float32), isa='avx2')\n"
              "print(last_shared_object(REGISTRY.for_op('vexp', 'avx2').name).source)\n")
    environment = {**os.environ, "SOFTJIT_PREBUILT_DIR": str(out),
                   "SOFTJIT_CACHE_DIR": str(softjit_cli.cache_dir)}
    used = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          env=environment, timeout=120)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == "prebuilt"


def test_cache_info_and_clear(softjit_cli) -> None:
    empty = softjit_cli("cache", "info")
    assert empty.returncode == 0, empty.stderr
    assert f"cache dir:     {softjit_cli.cache_dir}" in empty.stdout
    assert "cache entries: 0 (0 bytes)" in empty.stdout

    demo = softjit_cli("demo")
    assert demo.returncode == 0, demo.stderr
    filled = softjit_cli("cache", "info")
    assert "cache entries: 0" not in filled.stdout

    cleared = softjit_cli("cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert "removed" in cleared.stdout
    assert "cache entries: 0 (0 bytes)" in softjit_cli("cache", "info").stdout


def _numbers(text: str) -> list:
    return [float(v) for v in text.strip().strip("[]").split(",")]


def test_demo_runs_the_host_kernel_and_checks_it(softjit_cli) -> None:
    """The demo's printed values are right: its examples against float64 (printed with 7
    significant digits), its measured errors within the README's bounds, its speeds positive,
    and the kernel it names is the host's best ISA's exp (just built: a fresh cache)."""
    import re

    import numpy as np

    from softjit.demo import EXP_EXAMPLE, SOFTMAX_EXAMPLE

    result = softjit_cli("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    isa = softjit.host_isas()[0]
    assert f"using {isa}" in out
    blocks = {}
    for name in ("exp", "softmax"):
        match = re.search(rf"^{name}\(x\) for x = (\[.*\])\n  = (\[.*\])\n"
                          rf"  max error vs numpy float64 over (\d+) uniform x in .*: "
                          rf"(\S+) relative, (\S+) ULP\n  speed on .*softjit (\S+) ns/element, "
                          rf"numpy (\S+) ns/element", out, re.M)
        assert match, f"no {name} block in the demo output:\n{out}"
        blocks[name] = match.groups()
    x_exp, y_exp = (np.float64(_numbers(v)) for v in blocks["exp"][:2])
    np.testing.assert_allclose(x_exp, EXP_EXAMPLE)
    # exp(-100) is a subnormal float32: compared with the float32 rounding, one unit of 2^-149
    rounded = np.exp(EXP_EXAMPLE.astype(np.float64)).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(y_exp, rounded, rtol=1e-6, atol=2.0 ** -149)
    x_sm, y_sm = (np.float64(_numbers(v)) for v in blocks["softmax"][:2])
    np.testing.assert_allclose(x_sm, SOFTMAX_EXAMPLE)
    e = np.exp(x_sm - x_sm.max())
    np.testing.assert_allclose(y_sm, e / e.sum(), rtol=1e-6)
    for name, (_, _, count, relative, ulps, softjit_ns, numpy_ns) in blocks.items():
        assert int(count) >= 10 ** 6
        assert 0 <= float(relative) <= (1e-6 if name == "exp" else 1e-5), (name, relative)
        if name == "exp":
            assert float(ulps) <= 2.0, ulps  # README: within 2 ULP
        assert float(softjit_ns) > 0 and float(numpy_ns) > 0
    kernel = variants.REGISTRY.for_op("vexp", isa).name
    assert re.search(rf"^  kernel {kernel} \({isa}\), built: ", out, re.M), out
