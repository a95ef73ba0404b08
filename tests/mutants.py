"""The mutation check: plant known bugs, one at a time, and see the default test run catch each.

    python tests/mutants.py                 # every mutant, 2 at a time; a table at the end
    python tests/mutants.py --jobs 1 --only tails-avx512 split-threshold
    python tests/mutants.py --list          # what each mutant changes
    python tests/mutants.py --check         # only check that every mutant still applies

Each mutant is a list of exact text edits. For each one the script copies the repository (the
files git knows, tracked or not ignored) into a temporary directory, applies the edits (a target
text that is not found exactly once stops the script: a mutant whose target moved must be
updated, not skipped), regenerates generated/ when codegen/ or templates/ changed (so that the
freshness test does not catch every code mutant by accident), and runs the default suite there
(`python -m pytest -q -x`, the CI profile, an empty kernel cache of its own), the test files
most likely to catch it first, then the whole suite. A mutant is killed when the run fails; the table names the first
failing test. Exit status: 0 when every mutant was killed, 1 when any survived or could not run.

Each mutant runs in a throwaway virtual environment that sees this interpreter's packages
(numpy, pytest, hypothesis, ...) but not its softjit, and imports softjit.* from the copy's
folders (pyproject.toml's package-dir) through a finder a .pth file installs: every process the
tests start with that python sees the copy, whatever environment it is given, while the
environments the tests create themselves (the wheel tests) keep their own softjit.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 3600  # seconds per mutant's test run


@dataclass(frozen=True)
class Edit:
    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    edits: tuple
    first: tuple = ()  # test files to run before the rest of the suite


MUTANTS = (
    Mutant("auto-ignores-tuned-table-general",
           "dispatch.choose_algorithm (general path) uses AUTO_TABLE even when a tuned table exists",
           (Edit("runtime/dispatch.py", "table = tuning.cached_table(isa) or AUTO_TABLE[isa]",
                 "table = AUTO_TABLE[isa]"),),
           ("tests/api/test_dispatch_observed.py",)),
    Mutant("auto-ignores-tuned-table-entry",
           "the generated entry's table for \"auto\" is AUTO_TABLE even with a tuned table",
           (Edit("runtime/entry_tables.py",
                 "table = tuning.cached_table(isa) or dispatch.AUTO_TABLE[isa]",
                 "table = dispatch.AUTO_TABLE[isa]"),),
           ("tests/api/test_dispatch_observed.py",)),
    Mutant("never-nontemporal-general",
           "the general path never asks for the non-temporal kernels",
           (Edit("runtime/rows.py",
                 "run = _driver(algorithm, isa, nontemporal_for(x2d.nbytes), element_of(x2d.dtype)",
                 "run = _driver(algorithm, isa, False, element_of(x2d.dtype)"),),
           ("tests/api/test_dispatch_observed.py",)),
    Mutant("never-nontemporal-entry",
           "the generated entry's large-output rows run the plain kernels",
           (Edit("runtime/entry_tables.py",
                 "_driver(chosen, isa, True, scaled=scaled)", "_driver(chosen, isa, False, scaled=scaled)"),),
           ("tests/api/test_dispatch_observed.py",)),
    Mutant("split-threshold-raised",
           "a long row is never reduced in chunks (threshold 2^40)",
           (Edit("runtime/dispatch.py", "SPLIT_ROW_MIN = 1 << 20", "SPLIT_ROW_MIN = 1 << 40"),),
           ("tests/api/test_dispatch_observed.py", "tests/api/test_threads.py")),
    Mutant("rows-on-one-thread",
           "threads=k runs every row on the calling thread",
           (Edit("runtime/rows.py",
                 "    threads = threads_for(threads, rows)\n    if threads > 1:\n",
                 "    threads = threads_for(threads, rows)\n    if False:\n"),),
           ("tests/api/test_dispatch_observed.py",)),
    Mutant("split-sums-not-rescaled",
           "a two-pass row reduced in chunks adds its chunks' sums without rescaling them to "
           "a common exponent",
           (Edit("runtime/rows.py",
                 'terms = np.ldexp(states["sum"][good].astype(np.float64), shifts)',
                 'terms = states["sum"][good].astype(np.float64)'),),
           ("tests/api/test_threads.py", "tests/api/test_softmax_threads.py")),
Mutant("exp-coefficient-one-ulp",
           "the exp polynomial's c1 is one unit in the last place smaller (AVX2: 9 inputs "
           "break the subnormal bound)",
           (Edit("codegen/kernels/constants.py", 'C1 = f32("0x1.FFFFF6p-1")',
                 'C1 = f32("0x1.FFFFF4p-1")'),),
           ("tests/kernels/test_exp_subnormal_range.py",)),
    Mutant("no-float64-block-folds",
           "one block spans the whole row: float32 sums are never folded into float64",
           (Edit("codegen/kernels/pass_emitter.py", "        f.mov(count, block)\n",
                 "        f.mov(count, n)\n"),),
           ("tests/api/test_softmax_accuracy.py",)),
Mutant("two-pass-pass1-unclamped",
           "two-pass pass 1 clamps x at -FLT_MAX instead of -2^20",
           (Edit("codegen/kernels/softmax.py",
                 '    e = pe.e\n    x_min = f.constant_register("x_min", -K.TWO_PASS_X_LIMIT)\n',
                 '    e = pe.e\n    x_min = f.constant_register("x_min", -3.0e38)\n'),),
           ("tests/kernels/test_softmax_drivers.py", "tests/api/test_softmax_values.py")),
Mutant("driver-y-uses-x-stride",
           "the row driver advances y by x's row stride",
           (Edit("codegen/kernels/driver.py",
                 'f.add(keep["y"], ptr(keep["row_strides"], 8))',
                 'f.add(keep["y"], ptr(keep["row_strides"], 0))'),),
           ("tests/kernels/test_driver_strides.py",)),
    Mutant("runtime-passes-x-stride-for-y",
           "the general path passes x's row stride for y too",
           (Edit("runtime/rows.py",
                 "    strides = strides_argument(x2d.strides[0], y2d.strides[0], input_scale)\n"
                 "    status = np.empty(rows, STATUS_DTYPE)\n",
                 "    strides = strides_argument(x2d.strides[0], x2d.strides[0], input_scale)\n"
                 "    status = np.empty(rows, STATUS_DTYPE)\n"),),
           ("tests/api/test_softmax_layouts.py",)),
Mutant("tails-avx512-one-lane-too-many",
           "the AVX-512 tail mask enables one lane past the end",
           (Edit("codegen/kernels/loops.py", "tuple((1 << r) - 1 for r in range(f.target.lanes))",
                 "tuple((1 << (r + 1)) - 1 for r in range(f.target.lanes))"),),
           ("tests/kernels/test_driver_strides.py",)),
    Mutant("tails-avx2-one-lane-too-few",
           "the AVX2 tail window leaves the last element out",
           (Edit("codegen/kernels/loops.py", "ptr(table_ptr, 4 * lanes, back, 4)",
                 "ptr(table_ptr, 4 * lanes + 4, back, 4)"),),
           ("tests/kernels/test_driver_strides.py",)),
    Mutant("scaled-tail-scales-the-fill",
           "the scaled AVX-512 tail multiplies every lane, the -inf fill too (+inf for a "
           "negative scale)",
           (Edit("codegen/kernels/loops.py",
                 "                f.vmulps(masked, factor, address)",
                 "                f.vmovups(masked, address)\n"
                 "                f.vmulps(dest, dest, factor)"),),
           ("tests/kernels/test_scaled_kernels.py",)),
    Mutant("exp-nan-clamped",
           "exp clamps NaN to -104 (operands of the clamp's VMAXPS swapped): exp(NaN) = 0",
           (Edit("codegen/kernels/elementwise.py", "f.vmaxps(v, x_min, v)", "f.vmaxps(v, v, x_min)"),),
           ("tests/kernels/test_exp_accuracy.py",)),
    Mutant("marked-rows-not-recomputed",
           "rows the two-pass driver marks are not recomputed on the general path",
           (Edit("runtime/rows.py",
                 "    if marked:\n        recompute_rows(x2d, y2d, status, isa, input_scale)\n",
                 "    if False:\n        recompute_rows(x2d, y2d, status, isa, input_scale)\n"),),
           ("tests/api/test_softmax_values.py",)),
Mutant("cache-skips-sha256",
           "a cached object is loaded without checking its sha256",
           (Edit("runtime/cache.py",
                 'if info.st_size == meta["so_size"] and sha256_fd(descriptor) == meta["so_sha256"]:',
                 'if info.st_size == meta["so_size"]:'),),
           ("tests/runtime/test_runtime_cache_faults.py", "tests/runtime/test_runtime_cache.py")),
    Mutant("entry-holds-the-gil",
           "the softmax entry calls its kernels without releasing the GIL",
           (Edit("codegen/entries.py",
                 '    f.comment("release the GIL around the kernels")\n'
                 '    f.call(f.imported("PyEval_SaveThread"))\n',
                 '    f.comment("release the GIL around the kernels")\n'),
            Edit("codegen/entries.py",
                 '    f.mov(arg(0), state)\n    f.call(f.imported("PyEval_RestoreThread"))\n'
                 '    entry.release_and_return(recomputed)\n',
                 '    entry.release_and_return(recomputed)\n')),
           ("tests/api/test_gil_release.py",)),
)

_FINDER = '''\
"""Written by tests/mutants.py: softjit.* from the mutant copy {root!r} (its package-dir)."""
import importlib.abc
import importlib.util
import os
import sys

_ROOT = {root!r}
_DIRS = {dirs!r}


class _MutantFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        folder = _DIRS.get(name)
        if folder is None:
            return None
        location = os.path.join(_ROOT, folder)
        return importlib.util.spec_from_file_location(
            name, os.path.join(location, "__init__.py"), submodule_search_locations=[location])


sys.meta_path.insert(0, _MutantFinder())
'''


def make_environment(work: Path, copy: Path) -> Path:
    """A virtual environment for one mutant: this interpreter's packages (numpy, pytest, ...)
    without its softjit, softjit.* imported from the copy (a finder installed by a .pth file,
    so that every process started with this environment's python, whatever its environment
    variables, sees the copy), and a `softjit` console script. Returns its python."""
    import sysconfig
    import tomllib

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = [p for p in (sysconfig.get_path("purelib"), sysconfig.get_path("platlib"))]
    (site / "_mutant_runner_packages.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    with open(copy / "pyproject.toml", "rb") as stream:
        dirs = tomllib.load(stream)["tool"]["setuptools"]["package-dir"]
    (site / "_mutant_finder.py").write_text(_FINDER.format(root=str(copy), dirs=dirs))
    (site / "_mutant_finder.pth").write_text("import _mutant_finder\n")
    script = venv / "bin" / "softjit"
    script.write_text(f"#!{python}\nimport sys\nfrom softjit.__main__ import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    return python


class MutantRotted(Exception):
    """A mutant's target text is not in the code exactly once."""


def apply(mutant: Mutant, root: Path) -> None:
    missing = [name for name in mutant.first if not (root / name).is_file()]
    if missing:
        raise MutantRotted(f"mutant {mutant.name}: its first test files {missing} do not exist: "
                           "update the mutant in tests/mutants.py")
    for edit in mutant.edits:
        path = root / edit.path
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        found = text.count(edit.old)
        if found != 1:
            raise MutantRotted(
                f"mutant {mutant.name}: {edit.path} holds its target text {found} times (must be "
                f"exactly once): update the mutant in tests/mutants.py to the code as it is\n"
                f"target: {edit.old!r}")
        path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")


def copy_repository(destination: Path, source_root: Path = ROOT) -> None:
    """The files git knows (tracked, or untracked and not ignored) of source_root."""
    if source_root != ROOT:  # a snapshot made by this function: copy it whole
        shutil.copytree(source_root, destination, symlinks=True)
        return
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        source = ROOT / name
        if not name or not source.is_file():
            continue  # deleted in the work tree
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def environment(work: Path, python: Path) -> dict:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SOFTJIT_", "PYTHON", "VIRTUAL_ENV"))}
    cache = work / "cache"
    cache.mkdir(mode=0o700)
    env.update({"SOFTJIT_CACHE_DIR": str(cache), "CI": "1",
                "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}"})
    return env


def run(mutant: Mutant, base: Path, snapshot: Path) -> tuple:
    """(outcome, detail, seconds) of one mutant: "killed", "SURVIVED" or "ERROR"."""
    start = time.monotonic()
    work = base / mutant.name
    copy = work / "repo"
    work.mkdir(parents=True)
    copy_repository(copy, snapshot)
    apply(mutant, copy)
    python = make_environment(work, copy)
    env = environment(work, python)
    if any(e.path.startswith(("codegen/", "templates/")) for e in mutant.edits):
        generated = subprocess.run([str(python), "-m", "softjit", "generate"], cwd=copy,
                                   env=env, capture_output=True, text=True, timeout=600)
        if generated.returncode != 0:
            return "killed", ("softjit generate failed: "
                              + (generated.stderr.strip().splitlines() or ["?"])[-1]), \
                time.monotonic() - start
    # The files most likely to catch this mutant first (pytest would reorder them into the
    # directory walk if given together with tests/), then the whole default suite.
    runs = ([list(mutant.first)] if mutant.first else []) + [["tests"]]
    log = []
    for paths in runs:
        command = [str(python), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *paths]
        try:
            result = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True,
                                    timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "ERROR", f"the test run took more than {RUN_TIMEOUT} s", \
                time.monotonic() - start
        log.append(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            break
    (work / "pytest.log").write_text("\n".join(log), encoding="utf-8")
    seconds = time.monotonic() - start
    if result.returncode == 0:
        return "SURVIVED", "the default run passed", seconds
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", result.stdout, re.M)
    if result.returncode == 1 and failed:
        return "killed", failed[0], seconds
    tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
    return "killed" if result.returncode in (1, 2) else "ERROR", \
        f"pytest exit {result.returncode}: {' | '.join(tail)}", seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true",
                        help="only check that every mutant applies to the code as it is")
    parser.add_argument("--keep", action="store_true", help="keep the mutant copies and logs")
    args = parser.parse_args(argv)
    names = {m.name for m in MUTANTS}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        parser.error(f"unknown mutant(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what} ({', '.join(e.path for e in m.edits)})")
        return 0
    base = Path(tempfile.mkdtemp(prefix="softjit-mutants-"))
    try:
        # One snapshot of the repository as it is now: the work tree may change while the
        # mutants run (hours), every mutant starts from this.
        snapshot = base / "snapshot"
        copy_repository(snapshot)
        check = base / "check"
        for m in chosen:  # every mutant applies before any runs
            shutil.rmtree(check, ignore_errors=True)
            copy_repository(check, snapshot)
            apply(m, check)
        shutil.rmtree(check)
        if args.check:
            print(f"all {len(chosen)} mutants apply")
            return 0
        print(f"{len(chosen)} mutants, {args.jobs} at a time, copies in {base}", flush=True)
        results = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run, m, base, snapshot): m for m in chosen}
            for future in concurrent.futures.as_completed(futures):
                m = futures[future]
                try:
                    results[m.name] = future.result()
                except MutantRotted:
                    raise
                except Exception as error:  # noqa: BLE001 - reported in the table
                    results[m.name] = ("ERROR", f"{type(error).__name__}: {error}", 0.0)
                outcome, detail, seconds = results[m.name]
                print(f"  {m.name}: {outcome} ({detail}) in {seconds:.0f} s", flush=True)
        print("\n| mutant | what it changes | outcome | first failing test | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for m in chosen:
            outcome, detail, seconds = results[m.name]
            print(f"| {m.name} | {m.what} | {outcome} | {detail} | {seconds:.0f} |")
        bad = [name for name, (outcome, _, _) in results.items() if outcome != "killed"]
        print(f"\n{len(chosen) - len(bad)} of {len(chosen)} mutants killed"
              + (f"; not killed: {', '.join(bad)}" if bad else ""))
        return 1 if bad else 0
    except MutantRotted as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"copies and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
