"""User variants: registered by a call or by an installed package's entry point, they appear
in `asm --list`, `asm --kernel`, `generate`, `build` and the prebuilt manifest, after the
built-in variants (never a default). Each check runs in a child process, so the registry of
the test process stays the built-in one."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from softjit.codegen import AVX2, UserVariant
from softjit.codegen.variants import REGISTRY, Registry, VExp

PLUGIN = textwrap.dedent('''
    from softjit import In, Out, Size, jit
    from softjit.codegen import for_each_vector

    def relu(f):
        x, y, n = f.args
        zero = f.vec("zero")
        f.vxorps(zero, zero, zero)
        def step(tile):
            v = f.vec("v")
            tile.load(v, x, 0)
            f.vmaxps(v, zero, v)
            tile.store(y, 0, v)
        for_each_vector(f, n, [x, y], 1, step, "relu")
        f.ret()

    kernel = jit(relu, name="user_relu",
                 args=[In("x", "float32", "n"), Out("y", "float32", "n"), Size("n")])

    def variants():
        return [kernel.variant("avx2"), kernel.variant("avx512f")]
''')


def _child(code: str, tmp_path: Path, extra_path: Path | None = None) -> str:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_register_rules():
    registry = Registry(tuple(REGISTRY)[:2])
    variant = UserVariant("mine__avx2", "avx2", "mine", lambda name, target: None)
    registry.register(variant)
    registry.register(variant)  # the same one twice: harmless
    assert registry.variants[-1] is variant and len(registry) == 3
    with pytest.raises(ValueError, match="already registered"):
        registry.register(UserVariant("mine__avx2", "avx2", "other", lambda n, t: None))
    with pytest.raises(ValueError, match="ISA 'sse2'"):
        registry.register(UserVariant("mine__sse", "sse2", "mine", lambda n, t: None))
    with pytest.raises(ValueError, match="not a C identifier"):
        registry.register(UserVariant("my-kernel", "avx2", "mine", lambda n, t: None))
    with pytest.raises(TypeError, match="Variant protocol"):
        registry.register(object())
    assert registry.for_op("vexp", "avx2") == VExp("avx2", 4)  # defaults stay the built-ins
    with pytest.raises(TypeError, match="must return a Module named"):
        variant.build()


def test_a_registered_jit_kernel_appears_in_the_cli(tmp_path: Path):
    (tmp_path / "user_kernels.py").write_text(PLUGIN)
    out = _child(textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import user_kernels
        from softjit.codegen import register
        from softjit.__main__ import main
        register(*user_kernels.variants())
        main(["asm", "--list"])
        main(["asm", "--kernel", "user_relu__avx512f"])
        main(["generate", "--out", {str(tmp_path / "gen")!r}])
    '''), tmp_path)
    assert re.search(r"^user_relu__avx2\s+avx2\s+jit$", out, re.M)
    assert re.search(r"^user_relu__avx512f\s+avx512f\s+jit$", out, re.M)
    assert "vmaxps zmm" in out
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    names = [k["name"] for k in manifest["kernels"]]
    assert "user_relu__avx2" in names and "f32_vexp__avx2_rr2_p5_u32" in names
    assert "user_relu(const float* x" in (tmp_path / "gen" / "kernels.h").read_text()


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None,
                    reason="build needs GNU binutils (as, ld)")
def test_an_entry_point_plugin_is_built_into_the_prebuilt_manifest(tmp_path: Path):
    """An installed package declaring [softjit.variants] is found by `python -m softjit`."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "user_kernels.py").write_text(PLUGIN)
    dist = site / "user_kernels-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-kernels\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[softjit.variants]\nrelu = user_kernels:variants\n")
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    listed = subprocess.run([sys.executable, "-m", "softjit", "asm", "--list"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert "user_relu__avx2" in listed.stdout
    built = subprocess.run([sys.executable, "-m", "softjit", "build", "--isa", "avx2", "--out",
                            str(tmp_path / "prebuilt")], env=env, capture_output=True, text=True,
                           timeout=600)
    assert built.returncode == 0, built.stderr
    manifest = json.loads((tmp_path / "prebuilt" / "manifest.json").read_text())
    assert "user_relu__avx2" in manifest and "user_relu__avx512f" not in manifest
    assert (tmp_path / "prebuilt" / "user_relu__avx2.so").is_file()
