"""threads=k: validated, capped to what can help, no threads left behind, and results bitwise
identical for every k, every algorithm and ISA, single long rows and batches alike."""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

import softjit
from softjit.runtime import rows

ALGORITHMS = ("two-pass", "three-pass-reload", "three-pass-recompute")
HOST_ISAS = softjit.host_isas()
THREAD_COUNTS = (1, 2, 3, 4, 7)
CHUNK_MIN = rows.CHUNK_MIN
SPLIT_ROW_MIN = rows.SPLIT_ROW_MIN


@pytest.fixture
def many_cpus(monkeypatch):
    """Let threads=k really run k pieces on this 2-CPU host: the cap to the CPUs this process may
    run on would otherwise make threads=3, 4 and 7 the same as 2."""
    monkeypatch.setattr(rows, "usable_cpus", lambda: 64)


def masked_row(n: int, seed: int, kind: str) -> np.ndarray:
    """Random values of several magnitudes, with a -inf mask of the given kind."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * rng.choice([1.0, 10.0, 60.0], n)).astype(np.float32)
    if kind == "random":
        x[rng.random(n) < 0.3] = -np.inf
    elif kind == "tail":  # a causal-attention style mask: the second half is masked
        x[n // 2:] = -np.inf
    elif kind == "one-left":
        keep = rng.integers(n)
        x[:] = -np.inf
        x[keep] = rng.standard_normal() * 50
    elif kind == "huge":  # past the two-pass clamp: that row is recomputed by three passes
        x[rng.integers(n)] = 3e6
    return x


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


def assert_same_bits(results: dict, label: str) -> None:
    (k0, base), *others = results.items()
    for k, y in others:
        differ = np.flatnonzero(bits(y).ravel() != bits(base).ravel())
        assert differ.size == 0, (
            f"{label}: threads={k} differs from threads={k0} in {differ.size} of {y.size} "
            f"elements, first at {differ[:4].tolist()}: {y.ravel()[differ[:4]].tolist()} vs "
            f"{base.ravel()[differ[:4]].tolist()}")


# Row lengths around the thresholds: below and at the split, chunk boundaries, and a row long
# enough that its chunks are larger than CHUNK_MIN.
LENGTHS = (SPLIT_ROW_MIN - 1, SPLIT_ROW_MIN, SPLIT_ROW_MIN + 17, 3 * CHUNK_MIN,
           3 * CHUNK_MIN + 1, 5 * CHUNK_MIN - 64 + 3)


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_long_row_is_bitwise_identical_for_any_threads(many_cpus, algorithm, isa) -> None:
    for n in LENGTHS:
        for seed, kind in enumerate(("none", "random", "tail", "one-left", "huge")):
            x = masked_row(n, seed, kind)
            results = {k: softjit.softmax(x, algorithm=algorithm, isa=isa, threads=k)
                       for k in THREAD_COUNTS}
            assert_same_bits(results, f"{algorithm} {isa} n={n} {kind}")
            y = results[1]
            assert np.all(y <= 1.0), f"{algorithm} {isa} n={n} {kind}: output above 1"
            if kind == "one-left":
                assert np.array_equal(y, np.where(np.isfinite(x), 1.0, 0.0).astype(np.float32))


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS + ("auto",))
def test_a_very_long_row_is_bitwise_identical_for_any_threads(many_cpus, algorithm, isa) -> None:
    """More elements than MAX_CHUNKS chunks of CHUNK_MIN: the chunks grow with n (never with
    threads), and the output is large enough for non-temporal stores."""
    n = rows.MAX_CHUNKS * CHUNK_MIN + 4099
    x = masked_row(n, 7, "random")
    results = {k: softjit.softmax(x, algorithm=algorithm, isa=isa, threads=k) for k in (1, 2, 7)}
    assert_same_bits(results, f"{algorithm} {isa} n={n}")


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("shape", [(33, 1000), (5, 4099), (3, SPLIT_ROW_MIN + 5), (9, 3 * CHUNK_MIN)])
def test_batches_are_bitwise_identical_for_any_threads(many_cpus, algorithm, isa, shape) -> None:
    rows_count, n = shape
    x = np.stack([masked_row(n, r, ("none", "random", "tail", "one-left", "huge")[r % 5])
                  for r in range(rows_count)])
    results = {k: softjit.softmax(x, algorithm=algorithm, isa=isa, threads=k)
               for k in THREAD_COUNTS}
    assert_same_bits(results, f"{algorithm} {isa} {shape}")
    # a row's result does not depend on the batch it came in
    alone = softjit.softmax(x[rows_count // 2], algorithm=algorithm, isa=isa, threads=2)
    assert np.array_equal(bits(alone), bits(results[1][rows_count // 2]))


def test_strided_and_other_axis_are_bitwise_identical(many_cpus) -> None:
    n = SPLIT_ROW_MIN + 3
    x = masked_row(2 * n * 2, 3, "random").reshape(2, 2 * n)[:, ::2]  # strided rows
    results = {k: softjit.softmax(x, threads=k) for k in THREAD_COUNTS}
    assert_same_bits(results, "strided rows")
    xt = np.ascontiguousarray(x.T)  # the softmax axis first
    results = {k: softjit.softmax(xt, axis=0, threads=k) for k in THREAD_COUNTS}
    assert_same_bits(results, "axis=0")


def test_nan_rows_are_nan_for_any_threads(many_cpus) -> None:
    for algorithm in ALGORITHMS:
        x = masked_row(SPLIT_ROW_MIN + 9, 1, "none")
        x[SPLIT_ROW_MIN - 5] = np.nan
        results = {k: softjit.softmax(x, algorithm=algorithm, threads=k) for k in THREAD_COUNTS}
        assert all(np.isnan(y).all() for y in results.values()), algorithm
        assert_same_bits(results, f"{algorithm} NaN row")


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("shape", [(9, 3000), (2, SPLIT_ROW_MIN + 5)])
def test_log_softmax_and_logsumexp_are_bitwise_identical_for_any_threads(
        many_cpus, isa, shape) -> None:
    """The other functions with a threads argument: threads share the rows, each row is one
    kernel call whichever thread runs it."""
    x = np.stack([masked_row(shape[1], 40 + r, ("random", "tail", "none")[r % 3])
                  for r in range(shape[0])])
    for algorithm in ("two-pass", "three-pass"):
        results = {k: softjit.log_softmax(x, algorithm=algorithm, isa=isa, threads=k)
                   for k in THREAD_COUNTS}
        assert_same_bits(results, f"log_softmax {algorithm} {isa} {shape}")
    results = {k: np.atleast_1d(softjit.logsumexp(x, isa=isa, threads=k))
               for k in THREAD_COUNTS}
    assert_same_bits(results, f"logsumexp {isa} {shape}")


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("threads, error", [
    (1.0, TypeError), (2.0, TypeError), (True, TypeError), (False, TypeError), ("2", TypeError),
    (None, TypeError), (0, ValueError), (-1, ValueError), (10 ** 30, ValueError),
    (np.int64(0), ValueError),
])
def test_bad_threads_are_refused_naming_the_value(threads, error) -> None:
    x = np.ones((4, 8), np.float32)
    with pytest.raises(error, match="threads") as raised:
        softjit.softmax(x, threads=threads)
    assert repr(threads) in str(raised.value) or str(threads) in str(raised.value)


def test_numpy_integer_threads_are_accepted() -> None:
    x = np.ones((4, 8), np.float32)
    assert np.array_equal(softjit.softmax(x, threads=np.int32(2)), softjit.softmax(x))


@pytest.mark.parametrize("threads", [1000, 10 ** 8, sys.maxsize])
def test_huge_threads_are_capped_quickly_and_leave_no_threads(threads) -> None:
    x = masked_row(SPLIT_ROW_MIN * 2, 5, "random")
    batch = np.ones((300, 16), np.float32)
    expected = (softjit.softmax(x), softjit.softmax(batch))
    before = threading.active_count()
    start = time.perf_counter()
    got = (softjit.softmax(x, threads=threads), softjit.softmax(batch, threads=threads))
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"threads={threads} took {elapsed:.1f} s"
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    usable = len(os.sched_getaffinity(0))
    # at most a worker per usable CPU besides the caller's thread, which takes a piece itself
    assert threading.active_count() - before <= usable - 1, (
        f"{threading.active_count()} threads alive after threads={threads} "
        f"({before} before; this process may run on {usable} CPUs)")


def test_threads_are_capped_to_the_usable_cpus_and_the_pieces() -> None:
    usable = len(os.sched_getaffinity(0))
    assert rows.usable_cpus() == usable
    assert rows.threads_for(10 ** 8, pieces=3) == min(3, usable)
    assert rows.threads_for(10 ** 8, pieces=10 ** 6) == usable
    assert rows.threads_for(1, pieces=10 ** 6) == 1
    assert rows.threads_for(5, pieces=1) == 1


def test_the_pool_stays_small_whatever_threads_asked(many_cpus) -> None:
    """Even with the cap lifted (64 usable CPUs pretended), the workers alive never exceed the
    largest effective thread count used, minus the caller's own thread."""
    before = threading.active_count()
    x = np.ones((64, 100), np.float32)
    for k in (7, 3, 7, 2, 7):
        softjit.softmax(x, threads=k)
    assert threading.active_count() - before <= 6


@pytest.mark.parametrize("isa", HOST_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_chunked_scale_is_rounded_as_the_kernels_round_it(algorithm, isa) -> None:
    """rows.scale_for mirrors how the sum passes turn a row's sum into the output scale: on a
    row of zeros both sums are exact (every term is exp(0) = 1), so the chunked path and one
    whole-row driver call must give the same bits (y_i = the scale itself)."""
    from softjit.runtime import bindings

    n = SPLIT_ROW_MIN + 3  # 1 / n is not a float32: the rounding shows
    x = np.zeros(n, np.float32)
    chunked = softjit.softmax(x, algorithm=algorithm, isa=isa)
    whole = np.empty((1, n), np.float32)
    status = np.empty(1, np.int32)
    strides = np.array([4 * n, 4 * n], np.int64)
    assert bindings.driver(algorithm, isa)(x.reshape(1, n), whole, status, strides) == 0
    assert np.array_equal(bits(chunked), bits(whole[0])), (chunked[:2], whole[0, :2])
