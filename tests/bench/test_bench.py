"""softjit.bench: the bandwidth probes compute what they claim, the suite runs end to end and
writes its files, missing or failing peers do not stop it, tune stores a table load_table reads.
No timing is asserted: these run with tiny sizes and one round."""
from __future__ import annotations

import csv
import json
import math
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from softjit.bench import candidates, peers, port_floor, report, suite, sweep, tune
from softjit.bench.cli import main as bench_main
from softjit.codegen import variants
from softjit.runtime import bindings, cpu, tuning

HOST_ISAS = cpu.host_isas()
needs_avx2 = pytest.mark.skipif("avx2" not in HOST_ISAS, reason="the host cannot run AVX2 kernels")
LENGTHS = (0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200, 1001)
OFFSETS = (0, 1, 3, 5)  # elements past a 64-byte boundary


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SOFTJIT_ISA", raising=False)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")  # pin_to_one_cpu sets them; undone after the test
    # the suite pins the process to one CPU; give the test process its CPUs back afterwards
    allowed = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, allowed)


def aligned_slice(n: int, offset: int, fill: float) -> np.ndarray:
    """n float32s starting `offset` elements past a 64-byte boundary, inside a filled block."""
    block = np.full(n + offset + 64, fill, np.float32)
    start = (-(block.ctypes.data // 4)) % 16 + offset
    return block[start:start + n]


def small_integers(n: int, seed: int) -> np.ndarray:
    """Values whose float32 sum is exact in any order."""
    return np.random.default_rng(seed).integers(-50, 50, n).astype(np.float32)


# ---------------------------------------------------------------------------- probes
def run_probe(emulator, probe, *arrays_and_ints):
    """Call a probe natively (AVX2 host) or in the emulator, which also faults on any access
    outside the arrays and on a misaligned VMOVNTPS."""
    if probe.isa in HOST_ISAS:
        b = bindings.pointer
        bindings.function(probe)(*(b(a) if isinstance(a, np.ndarray) else a
                                  for a in arrays_and_ints))
        return
    emulator.call(probe, *arrays_and_ints)


@pytest.mark.parametrize("isa", ["avx2", "avx512f"])
def test_stream_read_sums_every_length_and_alignment(isa, emulator):
    probe = variants.StreamRead(isa)
    lengths = LENGTHS if isa in HOST_ISAS else (0, 1, 17, 129, 300)
    for n in lengths:
        for offset in OFFSETS:
            x = aligned_slice(n, offset, 0.0)
            x[...] = small_integers(n, n + offset)
            out = np.full(1, 12345.0, np.float32)
            run_probe(emulator, probe, x, n, out)
            assert out[0] == x.sum(dtype=np.float64), (isa, n, offset)


@pytest.mark.parametrize("isa", ["avx2", "avx512f"])
@pytest.mark.parametrize("nontemporal", [False, True])
def test_stream_copy_copies_exactly_the_row(isa, nontemporal, emulator):
    probe = variants.StreamCopy(isa, nontemporal=nontemporal)
    lengths = LENGTHS if isa in HOST_ISAS else (0, 1, 17, 129, 300)
    for n in lengths:
        for x_offset, y_offset in ((0, 0), (1, 3), (5, 0), (0, 7)):
            x = aligned_slice(n, x_offset, 0.0)
            x[...] = small_integers(n, n)
            block = np.full(n + 48, -7.0, np.float32)
            start = (-(block.ctypes.data // 4)) % 16 + y_offset
            y = block[start:start + n]
            run_probe(emulator, probe, x, y, n)
            assert np.array_equal(y, x), (isa, n, x_offset, y_offset)
            untouched = np.ones(block.shape, bool)
            untouched[start:start + n] = False
            assert np.all(block[untouched] == -7.0), "wrote outside y"


@needs_avx2
def test_rows_drivers_walk_rows_and_repeat_one_row():
    b = bindings.pointer
    read, copy, _ = variants.probes("avx2")
    x = small_integers(5 * 40, 3).reshape(5, 40)
    sums = np.zeros(5, np.float32)
    bindings.function(read, read.driver_symbol)(b(x), b(sums), 37, 5, 160, 4)
    assert np.array_equal(sums, x[:, :37].sum(axis=1))
    y = np.zeros((5, 40), np.float32)
    bindings.function(copy, copy.driver_symbol)(b(x), b(y), 40, 5, 160, 160)
    assert np.array_equal(y, x)
    y[...] = 0
    bindings.function(copy, copy.driver_symbol)(b(x), b(y), 40, 1000, 0, 0)  # the same row again
    assert np.array_equal(y[0], x[0]) and not y[1:].any()


def test_probe_names_encode_their_parameters():
    names = [p.name for p in variants.probes("avx2")]
    assert names == ["f32_stream_read__avx2_u64_acc4", "f32_stream_copy__avx2_u64",
                     "f32_stream_copy__avx2_u64_nt"]
    assert variants.StreamRead("avx512f", 4, 2).name == "f32_stream_read__avx512f_u64_acc2"
    assert all(p.driver_symbol == p.name + "_rows" for p in variants.probes("avx512f"))


# ------------------------------------------------------------------------------ suite
def test_sizes_parse_as_the_paper_writes_them():
    cases = suite.parse_sizes("1e3, 3e3 64M 4096x1000 1234")
    assert [(c.rows, c.n) for c in cases] == [(1, 1000), (1, 3000), (1, 64_000_000),
                                              (4096, 1000), (1, 1234)]
    assert [c.label for c in cases] == ["1e3", "3e3", "64M", "4096x1e3", "1234"]
    for bad in ("", "1.5", "abc", "0"):
        with pytest.raises(ValueError):
            suite.parse_sizes(bad)
    with pytest.raises(ValueError, match="unknown peer"):
        suite.Config.from_options(peers="numpy,nonesuch")


@needs_avx2
def test_suite_runs_end_to_end_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "results"
    status = bench_main(["--sizes", "1000,3x100", "--repeats", "1", "--peers", "numpy",
                         "--out", str(out), "--no-progress", "--budget", "1"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "GB/s (8 B/element)" in printed and "port floor" in printed
    # both cases fit in cache: the probes bound nothing there, so no bound and no %bound
    assert "bound 2R+1W avx2 (read + copy)" not in printed
    for name in ("table.txt", "results.csv", "results.json"):
        assert (out / name).stat().st_size > 0
    document = json.loads((out / "results.json").read_text())
    meta = document["meta"]
    assert meta["pinned_cpu"] in os.sched_getaffinity(0) | {meta["pinned_cpu"]}
    for field in ("cpu_model", "host_isas", "date", "softjit", "numpy", "peers", "repeats"):
        assert field in meta
    assert [c["label"] for c in document["cases"]] == ["1e3", "3x100"]
    for case in document["cases"]:
        by_key = {e["key"]: e for e in case["candidates"]}
        for algorithm in variants.ALGORITHMS:
            entry = by_key[f"softjit/{algorithm}/avx2"]
            assert entry["status"] == "ok" and entry["check"] == "ok"
            assert entry["median_ns"] > 0 and len(entry["samples_ns"]) == 1
            assert entry["gbps"] > 0 and entry["pct_bound"] is None
            if port_floor.host_family()[0] is not None:
                assert entry["floor_ns_per_element"] > 0 and entry["x_floor"] > 0
        # the host's ISAs by default: no "not runnable" rows
        assert {e["isa"] for e in case["candidates"] if e["family"] == "softjit"} == set(HOST_ISAS)
        assert all(e["vs_best_three_pass"] is None for e in case["candidates"]
                   if e["family"] == "probe")
        assert by_key["peer/numpy"]["check"] == "ok"
        assert by_key["softjit/auto"]["status"] == "ok"
        assert case["bound_ns"]["avx2"] > 0 and case["bound_nt_ns"]["avx2"] > 0
        three_pass = [by_key[f"softjit/{a}/avx2"]["vs_best_three_pass"]
                      for a in ("three-pass-reload", "three-pass-recompute")]
        assert max(three_pass) == pytest.approx(1.0)
    with open(out / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert set(report.CSV_FIELDS) <= set(rows[0])
    assert {r["case"] for r in rows} == {"1e3", "3x100"}


@needs_avx2
def test_suite_draws_the_throughput_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot needs matplotlib (pip install matplotlib)")
    plot = tmp_path / "figure.png"
    status = bench_main(["--sizes", "1000,2000", "--repeats", "1", "--peers", "none",
                         "--algorithms", "two-pass", "--plot", str(plot), "--no-progress"])
    assert status == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_avx2
def test_missing_and_failing_peers_are_reported_not_fatal(monkeypatch):
    def broken(x):
        raise RuntimeError("no softmax today")

    fake = {"ghost": peers.Peer("ghost", "ghost softmax", ("no_such_module_for_softjit",),
                                broken),
            "broken": peers.Peer("broken", "broken softmax", ("numpy",), broken)}
    monkeypatch.setattr(peers, "BY_KEY", {**peers.BY_KEY, **fake})
    config = suite.Config(cases=suite.parse_sizes("500"), algorithms=("two-pass",),
                          isas=("avx2",), peers=("ghost", "broken"), repeats=1, budget_s=1,
                          progress=False)
    document = report.derive(suite.run_suite(config))
    by_key = {e["key"]: e for e in document["cases"][0]["candidates"]}
    assert by_key["peer/ghost"]["status"] == peers.NOT_INSTALLED
    assert by_key["peer/broken"]["status"].startswith("failed: RuntimeError: no softmax today")
    assert by_key["softjit/two-pass/avx2"]["status"] == "ok"
    text = report.format_report(document)
    assert "not installed" in text and "failed: RuntimeError" in text


def test_report_flags_wrong_outputs_and_counts_eight_bytes_per_element():
    case = {"label": "1e3", "n": 1000, "rows": 1, "elements": 1000, "out_of_cache": False,
            "rounds": 1, "candidates": [
                {"key": "probe/read/avx2", "label": "r", "family": "probe", "algorithm": "read",
                 "isa": "avx2", "status": "ok", "median_ns": 100.0, "check": "unchecked"},
                {"key": "probe/copy/avx2", "label": "c", "family": "probe", "algorithm": "copy",
                 "isa": "avx2", "status": "ok", "median_ns": 300.0, "check": "unchecked"},
                {"key": "softjit/three-pass-reload/avx2", "label": "3p", "family": "softjit",
                 "algorithm": "three-pass-reload", "isa": "avx2", "status": "ok",
                 "median_ns": 800.0, "check": "ok"},
                {"key": "softjit/two-pass/avx2", "label": "2p", "family": "softjit",
                 "algorithm": "two-pass", "isa": "avx2", "status": "ok", "median_ns": 500.0,
                 "check": "ok"},
                {"key": "peer/x", "label": "x", "family": "peer", "algorithm": "x", "isa": None,
                 "status": "ok", "median_ns": 400.0, "check": "wrong", "max_abs_error": 0.5}]}
    case["candidates"][3]["floor_ns_per_element"] = 0.25
    out_of_cache = json.loads(json.dumps(dict(case, out_of_cache=True)))
    document = report.derive({"meta": {"host_isas": ["avx2"]}, "cases": [case, out_of_cache]})
    two_pass = document["cases"][0]["candidates"][3]
    assert two_pass["gbps"] == pytest.approx(8 * 1000 / 500)
    assert two_pass["pct_bound"] is None  # in cache the probes bound nothing
    assert document["cases"][1]["candidates"][3]["pct_bound"] == pytest.approx(100 * 400 / 500)
    assert two_pass["vs_best_three_pass"] == pytest.approx(800 / 500)
    assert two_pass["x_floor"] == pytest.approx(0.5 / 0.25)
    assert document["cases"][0]["candidates"][0]["vs_best_three_pass"] is None  # a probe
    assert document["cases"][0]["candidates"][4]["gbps"] is None
    assert "WRONG OUTPUT" in report.format_case(document["cases"][0])
    assert "bound 2R+1W" not in report.format_case(document["cases"][0])
    assert "bound 2R+1W avx2" in report.format_case(document["cases"][1])


# ------------------------------------------------------------------------------- tune
def test_compress_merges_runs_and_ends_unbounded():
    winners = [(1000, "a"), (3000, "a"), (10_000, "b"), (30_000, "b"), (100_000, "a")]
    assert tuning.compress(winners) == ((5477.0, "a"), (54772.0, "b"), (math.inf, "a"))
    assert tuning.compress([(5, "x")]) == ((math.inf, "x"),)


def test_pick_winners_keeps_the_previous_choice_within_noise():
    times = {1000: {"a": 100.0, "b": 120.0}, 2000: {"a": 201.0, "b": 200.0},
             4000: {"a": 500.0, "b": 400.0}}
    assert tune.pick_winners(times) == [(1000, "a"), (2000, "a"), (4000, "b")]


@needs_avx2
def test_tune_stores_a_private_table_that_load_table_reads(tmp_path):
    summary = tune.run_tune(isas=("avx2",), sizes="1000,3000", repeats=1, budget_s=0.5,
                            sample_ms=0.2, progress=False)
    path = summary["path"]
    assert path == tmp_path / "cache" / tuning.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tuning-")]
    table = tuning.load_table("avx2")
    assert table == summary["tables"]["avx2"]
    assert table[-1][0] == math.inf and all(a in variants.ALGORITHMS for _, a in table)
    assert tuning.load_table("avx512f") is None  # not tuned
    assert tuning.cached_table("avx2") == table
    assert "table:" in tune.format_tables(summary)


@pytest.mark.parametrize("isa", HOST_ISAS)
def test_tune_runs_at_the_non_temporal_size(isa):
    """At and above NONTEMPORAL_MIN_BYTES of output softmax runs each algorithm's non-temporal
    variant, or its plain one where none is registered (three-pass-reload): tune times the same."""
    from softjit.runtime import dispatch

    n = dispatch.NONTEMPORAL_MIN_BYTES // 4
    summary = tune.run_tune(isas=(isa,), sizes=str(n), repeats=1, budget_s=0.5, sample_ms=0.2,
                            progress=False, save=False)
    measured = summary["measurements"][isa][str(n)]
    assert set(measured) == set(variants.ALGORITHMS)
    assert all(t > 0 for t in measured.values())
    assert summary["tables"][isa][-1][0] == math.inf


# ----------------------------------------------------------------------------- port floor
def test_port_floor_counts_the_main_loop_of_every_pass():
    """Zen 4: the AVX-512 three-pass-reload main loops hold, per 16 elements, 8 FMA-class zmm
    instructions (log2e multiply, one-FMA reduction, 5 Horner FMAs, the scale pass's multiply)
    and 7 FADD-pipe ones (sub, max, round, scalef counted twice, add, the max pass's max), each
    taking two passes through a 256-bit pipe; each zmm store takes the store port twice."""
    variant = variants.REGISTRY.softmax("three-pass-reload", "avx512f")
    floor = port_floor.variant_floor(variant, port_floor.MODELS["zen4"])
    assert floor.counts["fma"] == pytest.approx(16 / 16)
    assert floor.counts["add"] == pytest.approx(14 / 16)
    assert floor.counts["stores"] == pytest.approx(4 / 16)  # the sum pass's and the scale pass's
    # per pass, the busiest resource: max pass 1 cycle (FADD pipes, and the zmm load), sum pass
    # 7 (FMA pipes), scale pass 2 (its zmm store through the one store port)
    assert floor.cycles_per_element == pytest.approx(10 / 16)
    zen5 = port_floor.variant_floor(variant, port_floor.MODELS["zen5"])
    # one pass per 512-bit op: max pass 0.5, sum pass 3.5, scale pass 1 (its store)
    assert zen5.cycles_per_element == pytest.approx(5 / 16)
    exp = port_floor.variant_floor(variants.REGISTRY.for_op("vexp", "avx2"), port_floor.MODELS["zen3"])
    assert exp.cycles_per_element > 0
    assert port_floor.variant_floor(variants.StreamRead("avx2"), port_floor.MODELS["zen3"]) is None
    assert port_floor.family_of(0x19, 0x11) == "zen4" and port_floor.family_of(0x19, 0x21) == "zen3"
    assert port_floor.family_of(0x1A, 0x02) == "zen5" and port_floor.family_of(0x17, 0x31) is None


def test_port_floor_charges_loads_stores_and_dispatch():
    """A loop of 8 loads of constants and 4 FMAs per vector is bound by its loads (4 cycles at
    two a cycle), not by its FMAs (2 cycles); a register move takes no pipe, only dispatch; a
    compare fused with its jump is one macro-op."""
    zen4 = port_floor.MODELS["zen4"]
    body = ([port_floor.parse("vmovups", "ymm0, YMMWORD PTR [rdi]")]
            + [port_floor.parse("vfmadd231ps", "ymm0, ymm1, YMMWORD PTR [rip + .Lc]")] * 4
            + [port_floor.parse("vmaxps", "ymm2, ymm3, YMMWORD PTR [rip + .Lc]")] * 3
            + [port_floor.parse("vmovaps", "ymm4, ymm5")]
            + [port_floor.parse("vmovups", "YMMWORD PTR [rsi], ymm0")]
            + [port_floor.parse("cmp", "rdx, 8"), port_floor.parse("jae", ".Lloop")])
    floor = port_floor.loop_floor(body, 8, zen4)
    assert floor.counts["loads"] * 8 == 8 and floor.counts["stores"] * 8 == 1
    assert floor.counts["dispatch"] * 8 == 11  # cmp + jae: one
    assert floor.bound == "loads" and floor.cycles_per_element * 8 == pytest.approx(4)
    wide = port_floor.parse("vfmadd231ps", "zmm0, zmm1, DWORD BCST [rip + .Lc]")
    assert port_floor.loop_floor([wide], 16, zen4).counts["loads"] * 16 == 1  # one dword


def test_pipe_makespan_is_the_best_fractional_assignment():
    from softjit.bench import pipes

    sets = {"fma": pipes.FMA_PIPES, "add": pipes.ADD_PIPES, "any": frozenset(pipes.PIPES),
            "one": frozenset({"FP0"})}
    assert pipes.makespan({"fma": 10, "add": 4, "any": 3}, sets) == pytest.approx(5)
    assert pipes.makespan({"fma": 4, "add": 4, "any": 8}, sets) == pytest.approx(4)
    # a one-pipe op and the FMAs share FP0/FP1: (6 + 6) / 2
    assert pipes.makespan({"fma": 6, "one": 6}, sets) == pytest.approx(6)
    assert pipes.makespan({"one": 6, "add": 2}, sets) == pytest.approx(6)


def test_pipe_probe_runs_and_infers_the_reference_pipes(monkeypatch):
    """The probes build, run and are timed in core cycles; the inference puts a form measured
    with the FMA-pipe signature on the FMA pipes (timings stubbed: no timing asserted)."""
    from softjit.bench import pipes

    cycles = pipes.measure_mixes([((pipes.FMA, 4),), ((pipes.LOAD, 4), (pipes.STORE, 2))],
                                 rounds=1, sample_ns=1e5)
    assert all(c > 0 for c in cycles.values())
    known = pipes.PipeMap(dict(pipes.REFERENCE), 2.0, 1.0)
    # 24 alone in 12 cycles; beside 12 FMAs, 12 cycles (shared pipes); beside 12 adds, 6
    measured = {(("vmulps", 24),): 12.0, (("vmulps", 12), (pipes.FMA, 12)): 12.0,
                (("vmulps", 12), (pipes.ADD, 12)): 6.0}
    found, cost, error = pipes.infer("vmulps", measured, known)
    assert found == pipes.FMA_PIPES and cost == 1.0 and error < 0.01


def test_pipes_report_infers_every_form_from_model_timings(monkeypatch):
    """bench --pipes end to end with the timings replaced by what a known pipe map predicts
    (FMA-pipe forms, FADD-pipe forms, any-pipe forms, eliminated moves, loads, stores): the
    inference gives each form back its pipes, and the report prints them."""
    from softjit.bench import pipes

    truth = {name: (pipes.FMA_PIPES, 1.0) for name in
             ("vfmadd231ps", "vfmadd213ps", "vfmadd231ps m", "vmulps", "vblendvps")}
    truth.update({name: (frozenset(pipes.PIPES), 1.0) for name in
                  ("vpaddd", "vpsubd", "vpand", "vandps", "vandnps", "vorps", "vxorps",
                   "vpcmpgtd")})
    truth.update({name: (frozenset(), 1.0) for name in ("vmovaps", pipes.LOAD, pipes.STORE)})
    for name in pipes.FORMS:
        truth.setdefault(name, (pipes.ADD_PIPES, 1.0))
    model = pipes.PipeMap(truth, 2.0, 1.0)

    def fake_measure(loops, isa, rounds, sample_ns=2e6):
        return {key: (model.cycles(dict(key)) if isinstance(key[0], tuple) else 4.0 * key[1])
                for key in loops}

    monkeypatch.setattr(pipes, "measure_loops", fake_measure)
    monkeypatch.setattr("softjit.bench.timing.pin_to_one_cpu", lambda cpu=None: None)
    results = pipes.run(rounds=1)
    for name, (expected, _) in truth.items():
        assert set(results["forms"][name]["pipes"]) == set(expected), name
    assert results["map"].loads_per_cycle == pytest.approx(2.0)
    text = pipes.format_results(results)
    assert "vblendvps" in text and "none (not FP)" in text and "in flight" in text


def _rewrite(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_load_table_refuses_other_versions_cpus_kernels_and_garbage(tmp_path):
    assert tuning.load_table("avx2") is None  # no file yet
    table = ((2000.0, "three-pass-reload"), (math.inf, "two-pass"))
    path = tuning.save_tables({"avx2": table})
    assert tuning.load_table("avx2") == table
    for change in (lambda d: d.update(softjit="0.0.0-other"),
                   lambda d: d["cpu"].update(model="Some Other CPU"),
                   lambda d: d["kernels"]["avx2"].update({"two-pass": "f32_softmax_old"}),
                   lambda d: d.update(format=999),
                   lambda d: d["tables"].update(avx2=[[100, "no-such-algorithm"], [None, "two-pass"]]),
                   lambda d: d["tables"].update(avx2=[[100, "two-pass"]])):
        tuning.save_tables({"avx2": table})
        _rewrite(path, change)
        assert tuning.load_table("avx2") is None
    path.write_text("{not json")
    assert tuning.load_table("avx2") is None
    with pytest.raises(ValueError, match="last entry"):
        tuning.save_tables({"avx2": ((10.0, "two-pass"),)})


# ------------------------------------------------------------------------------ sweep
@needs_avx2
def test_sweep_ranks_buildable_variants_and_skips_register_overflow(monkeypatch):
    monkeypatch.setitem(sweep.GRIDS, "tiny", {"avx2": ((1, 8), (1,), (2,), (0,))})
    result = sweep.run_sweep(isa="avx2", algorithms=("two-pass",), grid_name="tiny",
                             classes=sweep.size_classes((500, 1000), ()), first_rounds=1,
                             final_rounds=1, finalists=1, sample_ms=0.2, progress=False)
    (entry,) = result["classes"]
    (ranked,) = entry["algorithms"]
    assert ranked["tried"] == 1 and ranked["skipped_register_budget"] == 1  # u64 does not fit
    names = [r["name"] for r in ranked["ranking"]]
    assert variants.REGISTRY.softmax("two-pass", "avx2").name in names  # the registered one
    scores = [r["score"] for r in ranked["ranking"]]
    assert scores == sorted(scores) and all(1.0 <= s < math.inf for s in scores)
    assert "registered" in sweep.format_sweep(result)


# -------------------------------------------------------------------------- commands
def test_bench_and_tune_commands_are_wired(tmp_path):
    for module, command in (("softjit", ["bench"]), ("softjit", ["tune"]),
                            ("softjit.bench", []), ("softjit.bench", ["tune"])):
        result = subprocess.run([sys.executable, "-m", module, *command, "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert "--repeats" in result.stdout


def test_load_times_cold_then_warm():
    """Every registered module: the cold process builds it, the warm one finds it cached."""
    from softjit.bench.load_times import format_table, measure
    from softjit.codegen import variants

    results = measure()
    assert set(results) == {v.name for v in variants.VARIANTS}
    for name, r in results.items():
        assert (r["cold_source"], r["warm_source"]) == ("built", "cache"), name
        assert r["cold_s"] > 0 and r["warm_s"] > 0 and r["generate_s"] > 0
    assert "median over" in format_table(results)


def test_exp_throughput_runs_and_reports_every_host_kernel(monkeypatch):
    from softjit.bench import exp_throughput
    from softjit.codegen import variants
    from softjit.runtime import cpu

    monkeypatch.setattr(exp_throughput, "SIZES", (64, 1000))
    monkeypatch.setattr(exp_throughput, "pin_to_one_cpu", lambda cpu_index=None: None)
    results = exp_throughput.run(repeats=1)
    expected = {f"softjit {v.name}" for v in variants.VARIANTS
                if v.op == "vexp" and v.isa in cpu.host_isas()} | {"numpy.exp(x, out=y)"}
    for n in (64, 1000):
        assert set(results["sizes"][n]) == expected
        assert all(rate > 0 for rate in results["sizes"][n].values())
    assert "/ numpy" in exp_throughput.format_results(results)


def test_block_cost_compares_each_algorithm_with_and_without_folds(monkeypatch):
    from softjit.bench import block_cost
    from softjit.codegen import variants

    monkeypatch.setattr(block_cost, "pin_to_one_cpu", lambda cpu_index=None: None)
    results = block_cost.run(repeats=1, sizes=(5000,))
    r = results["sizes"][5000]
    assert set(r["ns_per_element"]) == {(a, label) for a in variants.ALGORITHMS
                                       for label in ("blocks + float64", "one float32 block")}
    assert all(err < 1e-5 for err in r["max_relative_error"].values())
    assert "cost" in block_cost.format_results(results)
