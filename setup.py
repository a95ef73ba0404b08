"""Packaging hook: a wheel carries every registered kernel assembled ahead of time.

pyproject.toml holds the metadata; this file only
- extends build_py so that the committed generated/*.S (byte-identical to what the generators
  emit; a test checks it) are assembled into softjit/generated/prebuilt/ with a manifest. An
  installed softjit then runs with no `as`/`ld` on the machine. Without binutils at build time
  the wheel is built without prebuilt objects (a warning says so) and kernels are assembled on
  first use instead;
- tags the wheel: with prebuilt objects it is a platform wheel, `py3-none-manylinux_2_17_x86_64`
  (see MANYLINUX_TAG); without them it is pure Python, `py3-none-any`.
"""
import functools
import importlib.util
import sys
import types
import warnings
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent

# The prebuilt objects are position-independent x86-64 code with no NEEDED entries and no
# imported symbols, so they run on any x86-64 Linux whatever its libc (`auditwheel show` on the
# wheel confirms it; tests/test_wheel_install.py runs it). The tag claims manylinux2014 (glibc
# 2.17), the floor of numpy's own wheels for the Pythons softjit supports: older hosts cannot
# install softjit's dependencies anyway. The dotted pair is the PEP 600 name and its legacy
# alias, so pip releases from 19.3 on accept the wheel.
MANYLINUX_TAG = "manylinux_2_17_x86_64.manylinux2014_x86_64"


def _runtime_module(name):
    """softjit.runtime.<name> loaded from this source tree without running softjit/__init__.py
    (which imports numpy and cffi, absent from the build environment). Stand-in `softjit` and
    `softjit.runtime` packages point at the source folders, so the runtime's relative and
    absolute (`softjit.runtime.…`, `softjit._version`) imports both resolve here."""
    if "softjit.runtime" not in sys.modules:
        front = types.ModuleType("softjit")
        front.__path__ = [str(HERE / "softjit")]
        sys.modules["softjit"] = front
        spec = importlib.util.spec_from_file_location(
            "softjit.runtime", HERE / "runtime" / "__init__.py",
            submodule_search_locations=[str(HERE / "runtime")])
        runtime = importlib.util.module_from_spec(spec)
        sys.modules["softjit.runtime"] = runtime
        spec.loader.exec_module(runtime)
        front.runtime = runtime
    return importlib.import_module(f"softjit.runtime.{name}")


@functools.lru_cache(maxsize=None)
def _missing_toolchain():
    """Why this build cannot assemble prebuilt kernels (binutils missing), or None."""
    toolchain = _runtime_module("toolchain")
    errors = _runtime_module("errors")
    try:
        toolchain.find_assembler()
        toolchain.find_linker()
    except errors.ToolchainMissingError as missing:
        return str(missing)
    return None


class BuildPyWithPrebuiltKernels(build_py):
    def run(self):
        super().run()
        if self.dry_run:
            return
        missing = _missing_toolchain()
        if missing is not None:
            warnings.warn(f"softjit: no prebuilt kernels in this build ({missing}); "
                          "kernels will be assembled on first use")
            return
        sources = sorted((HERE / "generated").glob("*.S"))
        out_dir = Path(self.build_lib) / "softjit" / "generated" / "prebuilt"
        _runtime_module("prebuilt").build_prebuilt(
            {s.stem: s.read_text() for s in sources}, out_dir)
        self.announce(f"softjit: assembled {len(sources)} prebuilt kernel modules into {out_dir}",
                      level=2)


class DistributionWithPrebuiltKernels(Distribution):
    """A distribution that carries native code (the prebuilt .so files) whenever this build can
    assemble them: setuptools then installs it as platlib and bdist_wheel marks it not pure."""

    def has_ext_modules(self):
        return _missing_toolchain() is None


class ManylinuxWheel(bdist_wheel):
    """No Python ABI is involved (the objects are loaded through cffi's dlopen), so the wheel
    is py3-none; its platform is MANYLINUX_TAG when it holds prebuilt objects."""

    def get_tag(self):
        if self.root_is_pure:
            return "py3", "none", "any"
        return "py3", "none", MANYLINUX_TAG


setup(distclass=DistributionWithPrebuiltKernels,
      cmdclass={"build_py": BuildPyWithPrebuiltKernels, "bdist_wheel": ManylinuxWheel})
