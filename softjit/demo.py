"""`python -m softjit demo`: detect the CPU, build (or load) the kernels for it, run them on an
example, check them against numpy in float64 and time them against numpy.

The timing is a quick figure from one short run, not a benchmark.
"""
from __future__ import annotations

import functools
import statistics
import time

import numpy as np

import softjit

from softjit.codegen import variants
from softjit.runtime import cache, cpu

EXP_EXAMPLE = np.array([-100.0, -10.0, -1.0, -0.5, 0.0, 0.5, 1.0, 10.0, 88.0], np.float32)
SOFTMAX_EXAMPLE = np.array([1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0], np.float32)
CHECK_SIZE = 1 << 20  # elements compared against float64
EXP_RANGE = (-87.0, 88.0)  # exp of these is a normal float32
SOFTMAX_RANGE = (-10.0, 10.0)  # logits; every output of a 2^20-element row stays a normal float32
SPEED_SIZE = 1 << 16  # elements per timed call: 256 KiB, cache-resident on most CPUs
REPEATS = 7
SAMPLE_SECONDS = 0.005  # each repetition loops over calls for at least this long


def run_demo() -> int:
    isas = softjit.host_isas()
    print(f"cpu: {cpu.cpu_model() or '(no model name)'}")
    print(f"cpu features: {' '.join(sorted(cpu.host_features())) or '(none softjit uses)'}")
    if not isas:
        print("this CPU runs none of softjit's kernels (it needs AVX2+FMA or AVX-512)")
        return 1
    isa = isas[0]
    print(f"host isas: {' '.join(isas)}; using {isa}")

    exp = functools.partial(softjit.exp, isa=isa)
    _show("exp", exp, _numpy_exp, np.exp, EXP_EXAMPLE, EXP_RANGE)
    kernel = variants.REGISTRY.for_op("vexp", isa).name
    loaded = cache.last_shared_object(kernel)
    if loaded is not None:
        print(f"  kernel {kernel} ({isa}), {loaded.source}: {loaded.path}")

    softmax = getattr(softjit, "softmax", None)
    if softmax is None:
        print("\nsoftmax: not available yet in this softjit")
    else:
        _show("softmax", functools.partial(softmax, isa=isa), _numpy_softmax, _softmax_float64,
              SOFTMAX_EXAMPLE, SOFTMAX_RANGE)
        print(f"  softjit.softmax(x, isa={isa!r}), algorithm auto")
    print("\nSpeeds are a quick figure from one short run on one thread, not a benchmark; "
          "`python -m softjit bench` is the real benchmark.")
    return 0


def _show(label: str, run, numpy_run, reference, example: np.ndarray,
          check_range: tuple[float, float]) -> None:
    """Print run(example), its worst error against float64 and its speed against numpy."""
    print(f"\n{label}(x) for x = {_format(example)}")
    print(f"  = {_format(run(example))}")

    x = np.random.default_rng(0).uniform(*check_range, CHECK_SIZE).astype(np.float32)
    got = run(x).astype(np.float64)
    expected = reference(x.astype(np.float64))
    relative = np.max(np.abs(got - expected) / np.abs(expected))
    ulps = np.max(np.abs(got - expected) / np.spacing(expected.astype(np.float32)))
    print(f"  max error vs numpy float64 over {CHECK_SIZE} uniform x in {list(check_range)}: "
          f"{relative:.3g} relative, {ulps:.3g} ULP")

    x = x[:SPEED_SIZE]
    out = np.empty_like(x)
    speeds = _median_ns_per_element({"softjit": lambda: run(x, out=out),
                                     "numpy": lambda: numpy_run(x, out)}, x.size)
    print(f"  speed on {x.size} float32, median of {REPEATS} interleaved repetitions: "
          f"softjit {speeds['softjit']:.3f} ns/element, numpy {speeds['numpy']:.3f} ns/element "
          f"(softjit {speeds['numpy'] / speeds['softjit']:.2f}x numpy's speed)")


def _format(values: np.ndarray) -> str:
    return np.array2string(values, separator=", ", max_line_width=1 << 16,
                           formatter={"float_kind": "{:.7g}".format})


def _numpy_exp(x: np.ndarray, out: np.ndarray) -> None:
    np.exp(x, out=out)


def _numpy_softmax(x: np.ndarray, out: np.ndarray) -> None:
    np.exp(x - x.max(), out=out)
    out /= out.sum()


def _softmax_float64(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _median_ns_per_element(calls: dict, size: int) -> dict[str, float]:
    """Median ns per element of each call, the calls taking turns so drift hits all alike."""
    slowest = 0
    for call in calls.values():
        call()  # the first call may build and load a kernel
        start = time.perf_counter_ns()
        call()
        slowest = max(slowest, time.perf_counter_ns() - start)
    loops = max(1, int(SAMPLE_SECONDS * 1e9 / max(slowest, 1)))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(REPEATS):
        for name, call in calls.items():
            start = time.perf_counter_ns()
            for _ in range(loops):
                call()
            samples[name].append((time.perf_counter_ns() - start) / (loops * size))
    return {name: statistics.median(values) for name, values in samples.items()}
