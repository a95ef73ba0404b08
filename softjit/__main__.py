"""softjit's command line: `python -m softjit COMMAND` (the `softjit` console script is the same).

Each handler only gathers arguments, calls the library and prints; the work lives in the library
(codegen.generate, runtime.prebuilt, runtime.cache_admin, softjit.demo) so tests can share it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from softjit._version import __version__

from softjit.bench import cli as bench_cli
from softjit.codegen import generate, variants
from softjit.codegen.errors import UnknownVariantError
from softjit.runtime import bindings, cache_admin, cpu, prebuilt, toolchain
from softjit.runtime.errors import SoftjitError, ToolchainMissingError
from softjit.runtime.files import sha256_text

ISA_CHOICES = ("auto", *cpu.ISAS)


class UsageError(Exception):
    """A name or combination of options the command cannot serve (exit status 2)."""


# Setting this to a non-empty value other than "0" lets every error propagate with its
# traceback (to tell a bug in softjit from a bad argument).
DEBUG_ENV_VARIABLE = "SOFTJIT_DEBUG"

# What a command may fail with on a bad argument, an unusable setting or a file it cannot use:
# reported in one line with exit status 2. Anything else is a bug and keeps its traceback.
_REPORTED_ERRORS = (UsageError, SoftjitError, ValueError, TypeError, OSError)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error it reports is one line `softjit COMMAND: message` on stderr
    and exit status 2 (argparse's own usage errors exit 2 too)."""
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:
        # The reader went away (`softjit asm ... | head`); silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except _REPORTED_ERRORS as error:
        if _debugging():
            raise
        print(f"softjit {_command_name(args)}: {_one_line(error)}", file=sys.stderr)
        return 2


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV_VARIABLE, "") not in ("", "0")


def _command_name(args) -> str:
    action = getattr(args, "action", None)
    return f"{args.command} {action}" if action else args.command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="softjit", description="Generated x86-64 AVX2 / AVX-512 exp and softmax kernels.")
    parser.add_argument("--version", action="version", version=f"softjit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="host CPU, chosen ISA, cache, toolchain, prebuilt")
    info.set_defaults(handler=_info)

    demo = commands.add_parser("demo", help="run the kernels for this host once, with a check")
    demo.set_defaults(handler=_demo)

    asm = commands.add_parser("asm", help="print the emitted assembly of a kernel")
    asm.add_argument("--isa", choices=ISA_CHOICES, default=None,
                     help="the ISA of an op name given to --kernel, or of --algorithm (default: "
                          "auto, the host's best); with --list, list only that ISA's variants "
                          "(auto: the host's best; default: every ISA)")
    which = asm.add_mutually_exclusive_group(required=True)
    ops = ", ".join(variants.REGISTRY.ops)
    which.add_argument("--kernel", metavar="NAME",
                       help=f"a registered variant name, or an op name ({ops}) with --isa")
    which.add_argument("--algorithm", metavar="ALG",
                       help="every pass kernel of a softmax algorithm, or of log_softmax, "
                            "log_softmax-three-pass or logsumexp")
    which.add_argument("--list", action="store_true", help="list the registered variants")
    asm.add_argument("--scaled", action="store_true",
                     help="with --algorithm: the kernels of scale= (of scale * x: softmax, "
                          "log_softmax, logsumexp)")
    asm.set_defaults(handler=_asm)

    gen = commands.add_parser(
        "generate", help="write generated/: NAME.S, kernels.h, manifest.json",
        description="Write one NAME.S per registered variant, kernels.h and manifest.json. Only "
                    "these files are written; the only files removed are .S files that the "
                    "directory's previous manifest.json lists and no variant produces any more.")
    gen.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="directory (default: generated/ of the source checkout softjit runs "
                          "from; an installed softjit needs --out)")
    gen.set_defaults(handler=_generate)

    build = commands.add_parser("build", help="assemble every registered variant ahead of time")
    build.add_argument("--isa", action="extend", nargs="+", choices=cpu.ISAS,
                       help="only these ISAs (default: all)")
    build.add_argument("--out", type=Path, required=True, help="directory for the .so files")
    build.set_defaults(handler=_build)

    cache_parser = commands.add_parser("cache", help="the cache of built kernels")
    cache_commands = cache_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    cache_commands.add_parser("info", help="directory, entries, size").set_defaults(
        handler=_cache_info)
    cache_commands.add_parser("clear", help="remove every cache entry").set_defaults(
        handler=_cache_clear)

    # bench/ (softjit.bench) owns these two commands' options and handlers
    bench = commands.add_parser("bench", help="the paper's experiment on this host (or --sweep)")
    bench_cli.add_bench_arguments(bench)
    bench.set_defaults(handler=bench_cli.run_bench)
    tune = commands.add_parser("tune", help="measure and store the per-host choice table used "
                                            "by \"auto\"")
    bench_cli.add_tune_arguments(tune)
    tune.set_defaults(handler=bench_cli.run_tune)
    return parser


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")


def _info(args) -> int:
    import cffi
    import numpy

    from softjit import __version__

    rows = [("softjit", __version__), ("platform", platform.platform()),
            ("python", platform.python_version()), ("numpy", numpy.__version__),
            ("cffi", cffi.__version__)]
    _print_rows(rows + _cpu_rows() + _toolchain_rows() + _cache_rows())
    return 0


def _cpu_rows() -> list[tuple[str, str]]:
    try:
        rows = [("cpu", cpu.cpu_model() or "(no model name)"),
                ("cpu features", " ".join(sorted(cpu.host_features())) or "(none softjit uses)")]
    except SoftjitError as error:
        return [("cpu", str(error))]
    setting = os.environ.get(cpu.ISA_ENV_VARIABLE)
    rows.append((cpu.ISA_ENV_VARIABLE, setting if setting is not None else "(unset)"))
    try:
        rows.append(("host isas", " ".join(cpu.host_isas()) or "(none)"))
        rows.append(("chosen isa", cpu.resolve_isa("auto")))
    except (SoftjitError, ValueError) as error:
        rows.append(("chosen isa", f"none: {error}"))
    return rows


def _toolchain_rows() -> list[tuple[str, str]]:
    rows = []
    for label, find in (("assembler", toolchain.find_assembler),
                        ("linker", toolchain.find_linker)):
        try:
            program = find()
            rows.append((label, f"{program} ({toolchain.tool_version(program)})"))
        except ToolchainMissingError:
            rows.append((label, "not found (install binutils, or use prebuilt kernels)"))
    return rows


def _cache_rows() -> list[tuple[str, str]]:
    info = cache_admin.cache_info()
    directory = info["dir"]
    if info["fallback"]:
        directory += f" (fallback: {info['configured_dir']} is unusable)"
    rows = [("cache dir", directory),
            ("cache entries", f"{info['entries']} ({info['bytes']} bytes)")]
    if info["problem"]:
        rows.append(("cache problem", info["problem"]))
    found = [f"{p['dir']} ({p['count']} kernels)" for p in info["prebuilt"]]
    rows.append(("prebuilt", "; ".join(found) or "(none)"))
    return rows


def _demo(args) -> int:
    from softjit.demo import run_demo

    return run_demo()


def _asm(args) -> int:
    isa = args.isa or "auto"
    if args.scaled and args.algorithm is None:
        raise UsageError("--scaled goes with --algorithm (a scaled kernel's --kernel NAME has "
                         "_scaled in it: see --list)")
    if args.list:
        return _asm_list(None if args.isa is None else _host_isa() if isa == "auto" else isa)
    if args.algorithm is not None:
        return _asm_algorithm(args.algorithm, isa, args.scaled)
    sys.stdout.write(bindings.assembly(_pick_variant(args.kernel, isa)))
    return 0


def _asm_list(isa: str | None) -> int:
    """Print the registered variants, only those of `isa` unless it is None."""
    variants.REGISTRY.load_plugins()
    listed = [v for v in variants.REGISTRY if isa in (None, v.isa)]
    width = max(len(v.name) for v in listed)
    for v in listed:
        print(f"{v.name:<{width}}  {v.isa:<8} {v.op}")
    return 0


def _host_isa() -> str:
    """The ISA "auto" means here (the best the host runs, under SOFTJIT_ISA)."""
    try:
        return cpu.resolve_isa("auto")
    except SoftjitError as error:
        raise UsageError(f"{error}; pass --isa to pick one") from None


def _asm_algorithm(algorithm: str, isa: str, scaled: bool = False) -> int:
    import softjit

    assembly = getattr(softjit, "assembly", None)
    if assembly is None:
        print("softjit asm: softmax kernels are not available yet in this softjit "
              "(softjit.assembly is missing); use --kernel NAME, see --list", file=sys.stderr)
        return 1
    try:
        sys.stdout.write(assembly(algorithm, isa=isa, scaled=scaled))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return 0


def _pick_variant(kernel: str, isa: str):
    """A variant from its full name, or the default variant of an op name for `isa`."""
    if kernel not in variants.REGISTRY and isa == "auto":
        isa = _host_isa()
    try:
        return variants.REGISTRY.pick(kernel, isa)
    except UnknownVariantError as error:
        raise UsageError(str(error)) from None


def _generate(args) -> int:
    variants.REGISTRY.load_plugins()
    out_dir = args.out if args.out is not None else generate.default_out_dir()
    if out_dir is None:
        raise UsageError(f"softjit runs from an installed package ({generate.package_dir()}), "
                         "not a source checkout, and generate does not rewrite an installed "
                         "package; pass --out DIR (an installed package's folder too, if you "
                         "mean it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is not a directory; give a directory to write into")
    try:
        report = generate.write_generated(out_dir)
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(out_dir) \
            else ""
        raise UsageError(f"cannot write to {out_dir}: {reason}{where}") from None
    for path in report.written:
        print(f"wrote {path}")
    for path in report.removed:
        print(f"removed {path} (listed in the previous manifest, no longer generated)")
    for path in report.foreign:
        print(f"left {path} alone (not a generated file)")
    if not report.changed:
        print(f"{out_dir}: up to date")
    return 0


def _build(args) -> int:
    isas = args.isa or cpu.ISAS
    variants.REGISTRY.load_plugins()
    chosen = [v for v in variants.REGISTRY if v.isa in isas]
    modules = {v.name: bindings.module(v) for v in chosen}
    from softjit.codegen import entries
    from softjit.codegen.pipeline import render_module
    from softjit.runtime import asm_index

    modules[entries.MODULE_NAME] = entries.build_module()
    texts = {name: render_module(module) for name, module in modules.items()}
    manifest = prebuilt.build_prebuilt(texts, args.out)
    index = asm_index.write_shipped(args.out, {
        name: (sha256_text(texts[name]), module.cdef()) for name, module in modules.items()})
    for v in chosen:
        print(f"built {args.out / (v.name + '.so')} ({v.isa})")
    print(f"built {args.out / (entries.MODULE_NAME + '.so')} (CPython entry points)")
    print(f"manifest: {manifest}")
    print(f"assembly index: {index}")
    return 0


def _cache_info(args) -> int:
    try:
        _print_rows(_cache_rows())
    except (SoftjitError, OSError) as error:
        raise UsageError(_one_line(error)) from None
    return 0


def _cache_clear(args) -> int:
    # Every failure is one line and status 2: an unsafe or foreign directory is refused with the
    # reason and the fix, and nothing in it is touched.
    try:
        report = cache_admin.cache_clear()
    except SoftjitError as error:  # raised before anything is removed
        raise UsageError(f"nothing removed: {_one_line(error)}") from None
    except OSError as error:
        raise UsageError(f"stopped: {_one_line(error)}") from None
    where = ", ".join(str(directory) for directory in report.directories)
    print(f"removed {report.removed} cache entries"
          + (f" from {where}" if where else " (there is no cache directory yet)"))
    if report.kept:
        shown = ", ".join(str(path) for path in report.kept[:3])
        more = f" and {len(report.kept) - 3} more" if len(report.kept) > 3 else ""
        print(f"kept {len(report.kept)} paths softjit did not create: {shown}{more}")
    return 0


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    sys.exit(main())
