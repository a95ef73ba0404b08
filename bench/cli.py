"""Arguments and handlers of `softjit bench` and `softjit tune` (also `python -m softjit.bench`).

This module only imports argparse-level things at import time: softjit's own command line builds
its parser from here on every start, and the benchmark machinery loads only when it runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", metavar="LIST",
                        help="row lengths, comma-separated (1e3, 3e7, 64M; ROWSxN for a batch); "
                             "default 1e3,3e3,...,3e7,64M,4096x1000")
    parser.add_argument("--algorithms", metavar="LIST",
                        help="softjit algorithms (two-pass, three-pass-reload, "
                             "three-pass-recompute; all / none); default all")
    parser.add_argument("--isas", metavar="LIST",
                        help="ISAs (avx512f, avx2); those the host lacks are listed as not "
                             "runnable; default: the host's")
    parser.add_argument("--peers", metavar="LIST",
                        help="numpy, scipy, torch, torch-out, onnxruntime, litert (all / none); "
                             "missing ones are listed as not installed; default all")
    parser.add_argument("--repeats", type=int, metavar="N",
                        help="most interleaved rounds per size (default 21; big rows get fewer "
                             "within --budget, never fewer than 3)")
    parser.add_argument("--budget", type=float, default=45.0, metavar="SECONDS",
                        help="time budget per size that limits the rounds (default 45)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write table.txt, results.csv, results.json and throughput.png here")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="the throughput plot (PNG; default DIR/throughput.png with --out)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and rounds: a look in about a minute")
    parser.add_argument("--cpu", type=int, metavar="K",
                        help="the CPU to pin to (default: the highest-numbered allowed one)")
    parser.add_argument("--clock", choices=("wall", "cpu"),
                        help="report medians of wall time (the suite's default) or of the "
                             "thread's CPU time (steadier on a shared machine; both are always "
                             "recorded; the sweep's default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sweep = parser.add_argument_group("parameter sweep (instead of the suite)")
    sweep.add_argument("--sweep", action="store_true",
                       help="time Softmax variants over a grid of kernel parameters on the host "
                            "ISA and report the best per algorithm and size class")
    sweep.add_argument("--sweep-grid", choices=("quick", "full", "wide"), default="full")
    sweep.add_argument("--sweep-isa", metavar="ISA", help="default: the host's best")
    parser.add_argument("--block-cost", action="store_true",
                        help="instead of the suite: the softmax kernels with and without their "
                             "float64 block folds, time and accuracy")
    parser.add_argument("--exp", action="store_true",
                        help="instead of the suite: exp kernels against numpy.exp, in cache")
    parser.add_argument("--pipes", action="store_true",
                        help="instead of the suite: which FP pipes each vector instruction form "
                             "of the AVX2 loops uses (alone, beside FMAs, beside adds), and the "
                             "load and store rates, in core cycles on one pinned core")
    parser.add_argument("--calls", action="store_true",
                        help="instead of the suite: the time of one call from Python, every "
                             "documented call form beside the bare kernel, numpy, scipy, torch, "
                             "onnxruntime and LiteRT, at n = 16 ... 10,000 and 8 x 1,000")
    parser.add_argument("--functions", action="store_true",
                        help="instead of the suite: log_softmax and logsumexp against softjit's "
                             "softmax, scipy.special and torch, at n = 10^5 and 64M (or --sizes)")
    parser.add_argument("--dask", action="store_true",
                        help="instead of the suite: softjit.dask.softmax against the plain Dask "
                             "composition on a lazy 2^31-element float32 array (8 GiB, rows "
                             "split across chunks): wall time, peak worker memory, error")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help="with --dask: a running Dask scheduler (tcp://host:8786) instead "
                             "of a LocalCluster on this machine")
    parser.add_argument("--dask-elements", type=int, default=1 << 31, metavar="N",
                        help="with --dask: elements of the array, in rows of 2^24 (default 2^31)")
    parser.add_argument("--load-times", action="store_true",
                        help="instead of the suite: cold (generate + assemble + link + load) and "
                             "warm (cache hit) load time of every registered kernel module")


def run_bench(args: argparse.Namespace) -> int:
    if args.sweep:
        return _run_sweep(args)
    if args.block_cost:
        from softjit.bench.block_cost import format_results as format_block_cost
        from softjit.bench.block_cost import run as run_block_cost

        sys.stdout.write(format_block_cost(run_block_cost(
            **({"repeats": args.repeats} if args.repeats else {}), cpu_index=args.cpu)))
        return 0
    if args.exp:
        from softjit.bench.exp_throughput import format_results, run

        sys.stdout.write(format_results(run(**({"repeats": args.repeats} if args.repeats else {}),
                                            cpu_index=args.cpu)))
        return 0
    if args.pipes:
        from softjit.bench.pipes import format_results as format_pipes
        from softjit.bench.pipes import run as run_pipes

        sys.stdout.write(format_pipes(run_pipes(
            **({"rounds": args.repeats} if args.repeats else {}), cpu_index=args.cpu)))
        return 0
    if args.calls:
        from softjit.bench.calls import format_results as format_calls
        from softjit.bench.calls import run as run_calls

        sys.stdout.write(format_calls(run_calls(
            **({"repeats": args.repeats} if args.repeats else {}), cpu_index=args.cpu,
            clock=args.clock or "wall")))
        return 0
    if args.functions:
        from softjit.bench.functions import format_results as format_functions
        from softjit.bench.functions import run as run_functions

        from softjit.bench.suite import parse_sizes

        sizes = {"sizes": [c.n if c.rows == 1 else (c.rows, c.n) for c in
                           parse_sizes(args.sizes)]} if args.sizes else {}
        sys.stdout.write(format_functions(run_functions(
            **sizes, **({"repeats": args.repeats} if args.repeats else {}), cpu_index=args.cpu,
            clock=args.clock or "wall")))
        return 0
    if args.dask:
        from softjit.bench.dask_bench import format_results as format_dask
        from softjit.bench.dask_bench import run as run_dask

        sys.stdout.write(format_dask(run_dask(elements=args.dask_elements,
                                              repeats=args.repeats or 1,
                                              scheduler=args.dask_scheduler)))
        return 0
    if args.load_times:
        from softjit.bench.load_times import format_table, measure

        sys.stdout.write(format_table(measure()))
        return 0
    from softjit.bench import report
    from softjit.bench.suite import Config, run_suite

    config = Config.from_options(sizes=args.sizes, algorithms=args.algorithms, isas=args.isas,
                                 peers=args.peers, repeats=args.repeats, quick=args.quick,
                                 budget_s=args.budget, cpu=args.cpu, clock=args.clock or "wall",
                                 progress=not args.no_progress, argv=list(sys.argv))
    document = report.derive(run_suite(config))
    sys.stdout.write(report.format_report(document))
    written = report.write_all(document, args.out, args.plot)
    for kind, path in written.items():
        if path is None:
            print(f"{kind}: not written (matplotlib is not installed: pip install matplotlib)")
        else:
            print(f"{kind}: {path}")
    return 0


def _run_sweep(args: argparse.Namespace) -> int:
    from softjit.codegen import variants
    from softjit.bench.suite import parse_names
    from softjit.bench.sweep import format_sweep, run_sweep, size_classes

    algorithms = parse_names(args.algorithms, variants.ALGORITHMS, "algorithm")
    classes = None
    if args.sizes:
        from softjit.bench.suite import parse_sizes

        lengths = [c.n for c in parse_sizes(args.sizes) if c.rows == 1]
        classes = size_classes([n for n in lengths if n < 4_000_000],
                               [n for n in lengths if n >= 4_000_000])
    result = run_sweep(isa=args.sweep_isa, algorithms=algorithms, grid_name=args.sweep_grid,
                       classes=classes, cpu_index=args.cpu, progress=not args.no_progress,
                       clock=args.clock or "cpu",
                       **({"final_rounds": args.repeats} if args.repeats else {}))
    text = format_sweep(result)
    sys.stdout.write(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sweep.txt").write_text(text, encoding="utf-8")
        (args.out / "sweep.json").write_text(json.dumps(result, indent=1) + "\n",
                                             encoding="utf-8")
        print(f"sweep: {args.out / 'sweep.txt'}, {args.out / 'sweep.json'}")
    return 0


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--isas", metavar="LIST", help="ISAs to tune (default: every host ISA)")
    parser.add_argument("--sizes", metavar="LIST",
                        help="the ladder of row lengths (default 1e3,3e3,...,1e7,16M)")
    parser.add_argument("--repeats", type=int, default=21, metavar="N",
                        help="most interleaved rounds per length (default 21)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="compare medians of the thread's CPU time (default: steady on a "
                             "shared machine) or of wall time")
    parser.add_argument("--cpu", type=int, metavar="K", help="the CPU to pin to")
    parser.add_argument("--dry-run", action="store_true",
                        help="measure and print the table without storing it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run_tune(args: argparse.Namespace) -> int:
    from softjit.runtime import cpu
    from softjit.bench.suite import parse_names
    from softjit.bench.tune import LADDER, format_tables, run_tune as tune

    isas = parse_names(args.isas, cpu.ISAS, "isa") if args.isas else None
    summary = tune(isas=isas, sizes=args.sizes or LADDER, repeats=args.repeats,
                   cpu_index=args.cpu, progress=not args.no_progress, save=not args.dry_run,
                   clock=args.clock)
    print(format_tables(summary))
    return 0


def main(argv: list | None = None) -> int:
    """`python -m softjit.bench [bench options]` and `python -m softjit.bench tune [...]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tune"]:
        parser = argparse.ArgumentParser(prog="python -m softjit.bench tune",
                                         description="measure and store the choice table")
        add_tune_arguments(parser)
        return run_tune(parser.parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="python -m softjit.bench",
                                     description="the Two-Pass Softmax paper's benchmark")
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(argv))
