"""Packaging hook: a wheel carries every registered kernel assembled ahead of time.

pyproject.toml holds the metadata; this file only extends build_py so that the committed
generated/*.S (byte-identical to what the generators emit; a test checks it) are assembled into
softjit/generated/prebuilt/ with a manifest. An installed softjit then runs with no `as`/`ld` on
the machine. Without binutils at build time the wheel is built without prebuilt objects (a
warning says so) and kernels are assembled on first use instead.
"""
import importlib.util
import sys
import warnings
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1 ships it in the wheel package
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent


def _runtime_module(name):
    """softjit.runtime.<name> loaded from the source tree without importing softjit (whose
    dependencies, numpy and cffi, are not in the build environment)."""
    package = "_softjit_build_runtime"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, HERE / "runtime" / "__init__.py",
            submodule_search_locations=[str(HERE / "runtime")])
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{name}")


class BuildPyWithPrebuiltKernels(build_py):
    def run(self):
        super().run()
        if self.dry_run:
            return
        sources = sorted((HERE / "generated").glob("*.S"))
        out_dir = Path(self.build_lib) / "softjit" / "generated" / "prebuilt"
        errors = _runtime_module("errors")
        try:
            prebuilt = _runtime_module("prebuilt")
            prebuilt.build_prebuilt({s.stem: s.read_text() for s in sources}, out_dir)
        except errors.ToolchainMissingError as missing:
            warnings.warn(f"softjit: no prebuilt kernels in this build ({missing}); "
                          "kernels will be assembled on first use")
            return
        self.announce(f"softjit: assembled {len(sources)} prebuilt kernel modules into {out_dir}",
                      level=2)


class PlatformWheel(bdist_wheel):
    """The prebuilt objects are x86-64 Linux code: tag the wheel so (no Python ABI involved)."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        return "py3", "none", "linux_x86_64"


setup(cmdclass={"build_py": BuildPyWithPrebuiltKernels, "bdist_wheel": PlatformWheel})
