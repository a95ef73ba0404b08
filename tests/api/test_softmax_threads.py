"""softjit.softmax with threads: rows split over threads give the bits of one thread (also on
row-strided views); a single long row split into pieces is within the tolerance of the
reference; concurrent callers get what sequential calls get.
"""
from __future__ import annotations

import numpy as np
import pytest

import softjit

from softmax_checks import FLT_MAX, check_softmax, uniform
from softmax_cases import (ALL_ALGORITHMS, ISAS, native, concrete, rng_for, mixed_fallback_batch)


# ------------------------------------------------------------------------------------- threads
@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_threads_match_one_thread_bit_for_bit(algorithm, isa):
    """Many rows split over threads: each row is computed exactly as with one thread."""
    native(isa)
    rng = rng_for("threads", algorithm, isa)
    many = uniform(rng, (1001, 300), 30.0)
    few_long = uniform(rng, (9, 20011), 30.0)
    mixed, _ = mixed_fallback_batch(rng, 500)
    mixed = np.concatenate([mixed] * 7)
    for x in (many, few_long, mixed, many[:, ::3], many.reshape(7, 143, 300)):
        one = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=1)
        for threads in (2, 3, 8):
            got = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads)
            assert np.array_equal(got, one, equal_nan=True), threads
        check_softmax(one, x, label=(concrete(algorithm, isa), isa))
    # one row, more threads than rows
    row = many[:1]
    assert np.array_equal(softjit.softmax(row, algorithm=algorithm, isa=isa, threads=4),
                          softjit.softmax(row, algorithm=algorithm, isa=isa))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_threads_on_row_strided_views(algorithm, isa):
    """Rows at a non-contiguous row stride (x[::-1], x[::2]) over threads, as with one thread."""
    native(isa)
    rng = rng_for("threads-strided", algorithm, isa)
    many = uniform(rng, (1001, 300), 30.0)
    for x in (many[::-1], many[::2]):
        one = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=1)
        check_softmax(one, x, label=(concrete(algorithm, isa), isa))
        assert np.array_equal(softjit.softmax(x, algorithm=algorithm, isa=isa, threads=2), one)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_one_long_row_over_threads(algorithm, isa):
    """A single long row is split over the threads (partial results combined in float64): not
    bit-identical to one thread, but within the same tolerance of the reference."""
    native(isa)
    rng = rng_for("split", algorithm, isa)
    n = 300_007
    cases = {
        "uniform": uniform(rng, n, 100.0),
        "normal": rng.standard_normal(n, np.float32),
        "max in the last piece": np.concatenate([uniform(rng, n - 10, 10.0),
                                                 np.float32([50.0] * 10)]),
        "first half -inf": np.concatenate([np.full(n // 2, -np.inf, np.float32),
                                           uniform(rng, n - n // 2, 10.0)]),
        "huge (two-pass fallback)": uniform(rng, n, 1e30),
        "one NaN late": np.where(np.arange(n) == n - 3, np.nan, uniform(rng, n, 10.0)),
        "all -inf": np.full(n, -np.inf, np.float32),
        "FLT_MAX in one piece": np.where(np.arange(n) == 7, FLT_MAX, uniform(rng, n, 10.0)),
    }
    for name, x in cases.items():
        x = x.astype(np.float32)
        two_rows = np.stack([x, x[::-1]])
        for threads in (2, 3, 5):
            for shape in ((n,), (1, n), (2, n)):
                source = two_rows if shape[0] == 2 else x.reshape(shape)
                y = softjit.softmax(source, algorithm=algorithm, isa=isa, threads=threads)
                try:
                    check_softmax(y, source, label=(concrete(algorithm, isa), isa))
                except AssertionError as e:
                    raise AssertionError(f"{algorithm}/{isa} threads={threads} '{name}': {e}") \
                        from None


@pytest.mark.parametrize("isa", ISAS)
def test_concurrent_callers(isa):
    """softjit.softmax called from several Python threads at once (its per-thread scratch
    buffers and shared pool) gives what sequential calls give."""
    native(isa)
    import concurrent.futures

    rng = rng_for("concurrent", isa)
    inputs = []
    for i in range(12):
        x, _ = mixed_fallback_batch(rng, 50 + 37 * i)
        inputs.append(x)
    expected = [softjit.softmax(x, isa=isa) for x in inputs]
    expected_threads = [softjit.softmax(x, isa=isa, algorithm="three-pass-reload") for x in inputs]

    def work(i):
        for _ in range(20):
            a = softjit.softmax(inputs[i], isa=isa)
            b = softjit.softmax(inputs[i], isa=isa, algorithm="three-pass-reload", threads=2)
            if not (np.array_equal(a, expected[i], equal_nan=True)
                    and np.array_equal(b, expected_threads[i], equal_nan=True)):
                return i
        return None

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        bad = [r for r in pool.map(work, range(len(inputs))) if r is not None]
    assert not bad, f"inputs {bad} gave different results under concurrent calls"
