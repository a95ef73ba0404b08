"""What the README says softjit.softmax runs, observed rather than inferred from results:

- "auto": the tuned table (`python -m softjit tune`) when there is one, else AUTO_TABLE
  (three-pass-reload up to 2^22 elements, two-pass beyond);
- outputs of 16 MiB or more take the non-temporal-store kernels, smaller ones the plain kernels,
  through the generated entries and through the general path alike;
- threads=k splits the rows over k threads; a row of 2^20 elements or more is always reduced in
  chunks that depend on its length only, and threads share the chunks (shorter rows are one
  driver call); the bits do not depend on threads.

The non-temporal and plain kernels give the same bits, so which one ran is observed by
substituting, for the non-temporal requests only, the plain kernels of another algorithm whose
bits differ (kernel_calls.substitute): the result then names the table row the entry picked.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import softjit
from softjit.codegen import variants

from softmax_checks import check_softmax

HOST_ISAS = list(softjit.host_isas())
ALGORITHMS = variants.ALGORITHMS
# Documented in runtime/dispatch.py (NONTEMPORAL_MIN_BYTES): outputs of at least 16 MiB use non-temporal stores.
NONTEMPORAL_MIN_BYTES = 16 << 20
# README: a row "of 2^20 or more elements is always reduced chunk by chunk" (chunks of at least
# 2^18 elements, at most 64 of them).
SPLIT_ROW_MIN = 1 << 20
# README: AUTO_TABLE picks three-pass-reload up to 2^22 elements, two-pass beyond.
AUTO_LIMIT = 1 << 22
# An algorithm whose bits differ from each algorithm's on random rows (three-pass-reload and
# three-pass-recompute give the same bits; two-pass rounds differently from both).
DIFFERENT_BITS = {"two-pass": "three-pass-reload", "three-pass-reload": "two-pass",
                  "three-pass-recompute": "two-pass"}


def rng_for(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).view(np.uint32)


# ------------------------------------------------------------------------------ non-temporal
@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_outputs_of_16_mib_take_the_nontemporal_kernels(algorithm, isa, kernel_calls):
    """At 16 MiB - one row the plain kernels run, at 16 MiB the non-temporal ones: through the
    generated entry (C-contiguous, threads=1) and through the general path (a strided view)."""
    other = DIFFERENT_BITS[algorithm]
    rng = rng_for("nontemporal", algorithm, isa)
    n = 1 << 19  # rows shorter than rows.SPLIT_ROW_MIN: one driver call for the batch
    large = rng.uniform(-30, 30, (NONTEMPORAL_MIN_BYTES // (4 * n), n)).astype(np.float32)
    small = large[:-1]  # one row less: below the threshold
    assert large.nbytes == NONTEMPORAL_MIN_BYTES
    plain = {a: softjit.softmax(large, algorithm=a, isa=isa) for a in (algorithm, other)}
    assert not np.array_equal(_bits(plain[algorithm]), _bits(plain[other])), (
        "the substitute's bits must differ for the observation to mean anything")

    kernel_calls.substitute(True, DIFFERENT_BITS)  # non-temporal requests run `other`
    for x, expected in ((small, plain[algorithm][:-1]), (large, plain[other])):
        entry = softjit.softmax(x, algorithm=algorithm, isa=isa)
        padded = np.empty((x.shape[0], n + 16), np.float32)[:, :n]
        padded[...] = x
        general = softjit.softmax(padded, algorithm=algorithm, isa=isa, threads=1)
        for path, y in (("generated entry", entry), ("general path", general)):
            which = "non-temporal" if x.nbytes >= NONTEMPORAL_MIN_BYTES else "plain"
            assert np.array_equal(_bits(y), _bits(expected)), (
                f"{algorithm}/{isa}, {x.nbytes} bytes through the {path}: the {which} kernels "
                "did not run")


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_nontemporal_lookups_give_kernels_with_nontemporal_stores(algorithm, isa):
    """The kernels a non-temporal request gets store with vmovntps wherever the registry has
    such a variant (three-pass-reload's last pass re-reads y, so it has none)."""
    from softjit.runtime.bindings import assembly, driver

    registered = any(v.op == "softmax" and v.algorithm == algorithm and v.isa == isa
                     and v.nontemporal for v in variants.VARIANTS)
    found = driver(algorithm, isa, True)
    text = assembly(found.variant)
    assert ("vmovntps" in text) == registered, found.variant.name
    assert "vmovntps" not in assembly(driver(algorithm, isa, False).variant)
    assert algorithm != "two-pass" or registered, "two-pass registers a non-temporal variant"


# ------------------------------------------------------------------------------------ threads
@pytest.mark.parametrize("isa", HOST_ISAS)
def test_threads_split_the_rows_over_that_many_threads(isa, kernel_calls, monkeypatch):
    """threads=3 on 9 rows: three driver calls of three rows, covering every row once, one on
    the calling thread and two on the pool's (a pool thread that is done early may take the
    third piece too). The cap to the CPUs this process may run on is lifted (64 pretended)."""
    from softjit.runtime import rows

    monkeypatch.setattr(rows, "usable_cpus", lambda: 64)
    kernel_calls.use_entries(False)
    x = rng_for("rows", isa).uniform(-5, 5, (9, 1000)).astype(np.float32)
    y = softjit.softmax(x, algorithm="three-pass-reload", isa=isa, threads=3)
    calls = kernel_calls.of("driver")
    assert len(calls) == 3, calls
    assert sorted(c.thread == "MainThread" for c in calls) == [False, False, True], calls
    row = x.strides[0]
    starts = sorted((c.start - x.ctypes.data) // row for c in calls)
    assert sorted(c.count for c in calls) == [3, 3, 3] and starts == [0, 3, 6], calls
    assert np.array_equal(y, softjit.softmax(x, algorithm="three-pass-reload", isa=isa))


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_row_of_2_to_the_20_is_reduced_in_chunks_shared_by_the_threads(
        algorithm, isa, kernel_calls, monkeypatch):
    """A row one element shorter than 2^20 runs through one driver call, threads=2 included.
    A row of 2^20 elements is reduced over four chunks of 2^18 whatever threads is: with
    threads=1 every call is on the calling thread, the sum pass runs once per chunk and the
    other passes once over the whole row; with threads=2 the sum pass's chunks are shared by two
    threads and the other passes run on two pieces on two threads. Both give the same bits. The
    cap to the CPUs this process may run on is lifted (64 pretended)."""
    from softjit.runtime import rows

    monkeypatch.setattr(rows, "usable_cpus", lambda: 64)
    kernel_calls.use_entries(False)
    rng = rng_for("split", algorithm, isa)
    x = rng.uniform(-20, 20, SPLIT_ROW_MIN).astype(np.float32)
    x[SPLIT_ROW_MIN // 2:] += 15  # the chunks' maxima (and two-pass exponents) differ
    count = len(variants.REGISTRY.softmax(algorithm, isa).passes)
    sum_pass = 0 if algorithm == "two-pass" else 1  # the pass whose partials are chunk sums
    chunk = SPLIT_ROW_MIN // 4

    softjit.softmax(x[:-1], algorithm=algorithm, isa=isa, threads=2)
    assert not kernel_calls.of("pass"), "a row shorter than 2^20 was reduced in chunks"
    assert [c.count for c in kernel_calls.of("driver")] == [1]

    results = {}
    for threads in (1, 2):
        kernel_calls.calls.clear()
        results[threads] = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads)
        assert not kernel_calls.of("driver"), "a row of 2^20 elements went to the row driver"
        passes = kernel_calls.of("pass")
        for index in range(count):
            calls = [c for c in passes if c.index == index]
            assert sum(c.count for c in calls) == x.size, calls
            if index == sum_pass:
                assert sorted(c.count for c in calls) == [chunk] * 4, calls
                starts = sorted(c.start - x.ctypes.data for c in calls)
                assert starts == [4 * chunk * k for k in range(4)], calls
            else:
                assert len(calls) == threads, calls
            assert len({c.thread for c in calls}) == threads, calls  # caller (+ pool)
        check_softmax(results[threads], x)
    assert np.array_equal(_bits(results[1]), _bits(results[2]))


# ------------------------------------------------------------------------------------- "auto"
_AUTO_CHILD = r"""
import json, sys
import numpy as np
import softjit

isas, lengths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
rng = np.random.default_rng(7)
chosen = {}
for isa, n in ((isa, n) for isa in isas for n in lengths):
    x = rng.uniform(-30, 30, n).astype(np.float32)
    bits = {a: softjit.softmax(x, algorithm=a, isa=isa).view(np.uint32)
            for a in ("two-pass", "three-pass-reload")}
    assert not np.array_equal(bits["two-pass"], bits["three-pass-reload"]), n
    # two rows a padded stride apart: not C-contiguous, so the entry refuses them (one such
    # row alone would count as contiguous)
    padded = np.empty((2, n + 16), np.float32)[:, :n]
    padded[...] = x
    for path, y in (("entry", softjit.softmax(x, isa=isa)),
                    ("general", softjit.softmax(padded, isa=isa)[0])):
        found = [a for a, b in bits.items() if np.array_equal(b, y.view(np.uint32))]
        chosen[f"{isa} {n} {path}"] = found[0] if len(found) == 1 else repr(found)
print(json.dumps(chosen))
"""


def _auto_choices(lengths: list, cache_dir) -> dict:
    """{"ISA N PATH": the algorithm "auto" ran} for every host ISA, in a fresh process."""
    env = {**os.environ, "SOFTJIT_CACHE_DIR": str(cache_dir)}
    env.pop("SOFTJIT_ISA", None)
    result = subprocess.run([sys.executable, "-c", _AUTO_CHILD, json.dumps(HOST_ISAS),
                             json.dumps(lengths)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_auto_without_a_tuned_table_follows_auto_table(tmp_path):
    """No tuned table: three-pass-reload up to 2^22 elements, two-pass beyond (a fresh process
    with an empty cache directory; the choice read from the bits of the result)."""
    lengths = [1000, AUTO_LIMIT, AUTO_LIMIT + 1]
    chosen = _auto_choices(lengths, tmp_path / "cache")
    expected = {"1000": "three-pass-reload", str(AUTO_LIMIT): "three-pass-reload",
                str(AUTO_LIMIT + 1): "two-pass"}
    assert chosen == {f"{isa} {n} {path}": expected[str(n)] for isa in HOST_ISAS
                      for n in lengths for path in ("entry", "general")}


def test_auto_follows_the_tuned_table(tmp_path, monkeypatch):
    """A stored tuned table (the reverse of AUTO_TABLE: two-pass up to 100 elements,
    three-pass-reload beyond) is what "auto" runs, through the entry and the general path."""
    from softjit.runtime import tuning

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    monkeypatch.setenv("SOFTJIT_CACHE_DIR", str(cache_dir))
    table = ((100.0, "two-pass"), (math.inf, "three-pass-reload"))
    tuning.save_tables({isa: table for isa in HOST_ISAS})
    for isa in HOST_ISAS:
        assert tuning.load_table(isa) == table, "the stored table is not valid for this host"
    lengths = [50, 100, 101, AUTO_LIMIT + 1]
    chosen = _auto_choices(lengths, cache_dir)
    expected = {50: "two-pass", 100: "two-pass", 101: "three-pass-reload",
                AUTO_LIMIT + 1: "three-pass-reload"}
    assert chosen == {f"{isa} {n} {path}": expected[n] for isa in HOST_ISAS
                      for n in lengths for path in ("entry", "general")}
