"""softjit.exp and the vexp kernels: every length, alignment, layout, and the argument errors.

Kernel-level checks call each registered vexp variant directly (natively on the host's ISAs,
through the emulator otherwise); results must not depend on where an element falls (unrolled
loop, one-vector loop or masked tail), so they are compared bit for bit with the same inputs
computed in one long call.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import softjit
from softjit.runtime import cpu

import runners
from exp_reference import Accuracy, describe, reference, special_inputs
from runners import aligned, same_bits

CANARY = np.uint32(0x7FBADBAD)  # a signalling NaN no kernel produces
VEXP = runners.variant_params("vexp")


def canaries(n: int) -> np.ndarray:
    return np.full(n, CANARY, np.uint32).view(np.float32)


def value_pool(size: int, seed: int = 7) -> np.ndarray:
    """Ordinary values, subnormal-result and overflow inputs, and the special values."""
    rng = np.random.default_rng(seed)
    mixed = np.concatenate([special_inputs(), rng.uniform(-110, 95, size).astype(np.float32)])
    return rng.permutation(mixed)[:size]


def assert_accurate(x: np.ndarray, y: np.ndarray, label: str) -> None:
    r, _ = reference(x.ravel())
    accuracy = Accuracy(label)
    accuracy.add(x.ravel(), y.ravel(), r)
    assert not accuracy.failures, accuracy.failure_report()


def first_mismatch(x, got, expected) -> str:
    bad = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
    if bad.size == 0:
        return "no mismatch"
    i = bad[0]
    return (f"{bad.size} mismatches, first at index {i}: x={describe(x[i])} "
            f"got {describe(got[i])} expected {describe(expected[i])}")


# ---------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("variant", VEXP)
def test_every_length_up_to_two_unrolled_steps(variant):
    """n = 0 .. 2*U+1 (U elements per unrolled step): every loop and tail combination."""
    runners.require(variant)
    top = 2 * runners.unroll_elements(variant) + 1
    pool = value_pool(top)
    expected = runners.vexp(variant, pool)
    assert_accurate(pool, expected, f"{variant.name} n={top}")
    slack = 2 * variant.target.lanes
    for n in range(top + 1):
        x = np.concatenate([pool[:n], canaries(slack)])
        x_before = x.copy()
        y = canaries(n + slack)
        runners.vexp_into(variant, x, y, n)
        assert same_bits(y[:n], expected[:n]), (
            f"{variant.name} n={n}: {first_mismatch(pool[:n], y[:n], expected[:n])}")
        assert same_bits(y[n:], canaries(slack)), (
            f"{variant.name} n={n}: wrote past y[n-1] at indices "
            f"{np.flatnonzero(y[n:].view(np.uint32) != CANARY) + n}")
        assert same_bits(x, x_before), f"{variant.name} n={n}: modified its input"


LARGE = [100_000 + 3, 1_000_000]


@pytest.mark.parametrize("n", LARGE)
@pytest.mark.parametrize("variant", VEXP)
def test_large_lengths_kernel(variant, n):
    how = runners.require(variant)
    if how == "emulated" and n > 200_000:
        pytest.skip(f"{variant.name} n={n}: ~15 s in the emulator; 100,003 elements through "
                    f"the emulator and every length up to 2 unrolled steps cover each loop path")
    pool = value_pool(997)  # 997 is prime: every value visits every lane and loop position
    y_pool = runners.vexp(variant, pool)
    x = np.resize(pool, n)
    y = runners.vexp(variant, x)
    assert same_bits(y, np.resize(y_pool, n)), f"{variant.name} n={n}: {first_mismatch(x, y, np.resize(y_pool, n))}"


@pytest.mark.parametrize("variant", VEXP)
def test_unaligned_input_and_output_kernel(variant):
    """Offsets of 0..15 floats from a 64-byte boundary, for x and y; in the emulator (which
    keeps every address mod 64) each offset once for x and once for y."""
    how = runners.require(variant)
    n = 2 * runners.unroll_elements(variant) + 3
    pool = value_pool(n, seed=11)
    expected = runners.vexp(variant, pool)
    offsets = [(i, (5 * i + 3) % 16) for i in range(16)]
    if how == "native":
        offsets += [(i, j) for i in range(16) for j in (0, 1, 7, 8, 15)] + [(0, j) for j in range(16)]
    for x_offset, y_offset in offsets:
        x = aligned(n, x_offset)
        x[...] = pool
        y = aligned(n, y_offset)
        runners.vexp_into(variant, x, y)
        assert same_bits(y, expected), (
            f"{variant.name} x offset {x_offset}, y offset {y_offset} floats: "
            f"{first_mismatch(pool, y, expected)}")


# ---------------------------------------------------------------------------- softjit.exp
@pytest.fixture(params=[pytest.param(isa, id=isa) for isa in cpu.ISAS])
def isa(request):
    if request.param not in softjit.host_isas():
        pytest.skip(f"softjit.exp(isa={request.param!r}) needs the host to run {request.param} "
                    f"(host ISAs: {', '.join(softjit.host_isas()) or 'none'})")
    return request.param


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 33, 65, 129, 257] + LARGE)
def test_lengths_public(isa, n):
    x = value_pool(n, seed=n) if n <= 2000 else np.resize(value_pool(997), n)
    y = softjit.exp(x, isa=isa)
    assert y.dtype == np.float32 and y.shape == (n,)
    assert_accurate(x, y, f"softjit.exp isa={isa} n={n}")


def test_auto_is_the_best_host_isa():
    x = value_pool(1000)
    assert same_bits(softjit.exp(x), softjit.exp(x, isa=softjit.host_isas()[0]))


@pytest.mark.parametrize("x_offset", range(16))
def test_unaligned_public(isa, x_offset):
    n = 1000 + x_offset
    pool = value_pool(n, seed=x_offset)
    expected = softjit.exp(pool, isa=isa)
    for y_offset in range(16):
        x = aligned(n, x_offset)
        x[...] = pool
        y = aligned(n, y_offset)
        result = softjit.exp(x, isa=isa, out=y)
        assert result is y
        assert same_bits(y, expected), (
            f"x offset {x_offset}, out offset {y_offset}: {first_mismatch(pool, y, expected)}")


@pytest.mark.parametrize("n", [1, 9, 77, 1000])
def test_in_place(isa, n):
    x = value_pool(n, seed=3)
    expected = softjit.exp(x.copy(), isa=isa)
    result = softjit.exp(x, isa=isa, out=x)
    assert result is x
    assert same_bits(x, expected)


def test_in_place_unaligned(isa):
    x = aligned(301, 5)
    x[...] = value_pool(301)
    expected = softjit.exp(x.copy(), isa=isa)
    assert softjit.exp(x, isa=isa, out=x) is x
    assert same_bits(x, expected)


def test_overlapping_shifted_out(isa):
    """out overlapping x one element off must still give exp of the original x."""
    buf = value_pool(1001, seed=5)
    x, out = buf[1:], buf[:-1]
    expected = softjit.exp(x.copy(), isa=isa)
    assert softjit.exp(x, isa=isa, out=out) is out
    assert same_bits(out, expected)


def test_strided_input(isa):
    base = value_pool(2001, seed=9)
    x = base[::2]
    assert not x.flags.c_contiguous
    y = softjit.exp(x, isa=isa)
    assert y.shape == x.shape
    assert same_bits(y, softjit.exp(np.ascontiguousarray(x), isa=isa))
    assert same_bits(base, value_pool(2001, seed=9)), "the input was modified"


def test_transposed_2d(isa):
    x = value_pool(37 * 53, seed=13).reshape(37, 53).T
    assert x.shape == (53, 37) and not x.flags.c_contiguous
    y = softjit.exp(x, isa=isa)
    assert y.shape == (53, 37) and y.dtype == np.float32
    assert same_bits(y, softjit.exp(np.ascontiguousarray(x), isa=isa))
    assert_accurate(np.ascontiguousarray(x), y, "transposed")


def test_strided_and_transposed_out(isa):
    x = value_pool(400, seed=17).reshape(20, 20)
    expected = softjit.exp(x.copy(), isa=isa)
    out_t = np.empty((20, 20), np.float32).T
    assert softjit.exp(x, isa=isa, out=out_t) is out_t
    assert same_bits(np.ascontiguousarray(out_t), expected)
    backing = canaries(800)
    out_s = backing[::2].reshape(20, 20)
    assert softjit.exp(x, isa=isa, out=out_s) is out_s
    assert same_bits(np.ascontiguousarray(out_s), expected)
    assert same_bits(backing[1::2], canaries(400)), "wrote between the strided out elements"


def test_multidimensional_shape_kept(isa):
    x = value_pool(2 * 3 * 5 * 7, seed=19).reshape(2, 3, 5, 7)
    y = softjit.exp(x, isa=isa)
    assert y.shape == (2, 3, 5, 7)
    assert same_bits(y.ravel(), softjit.exp(x.ravel(), isa=isa))


def test_zero_dimensional(isa):
    x = np.array(1.5, np.float32)
    y = softjit.exp(x, isa=isa)
    assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float32
    assert_accurate(x.reshape(1), y.reshape(1), "0-d")
    out = np.array(0.0, np.float32)
    assert softjit.exp(x, isa=isa, out=out) is out
    assert same_bits(out, y)


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4)])
def test_empty(isa, shape):
    x = np.empty(shape, np.float32)
    y = softjit.exp(x, isa=isa)
    assert y.shape == shape and y.dtype == np.float32
    out = np.empty(shape, np.float32)
    assert softjit.exp(x, isa=isa, out=out) is out


def test_numpy_float32_scalar():
    y = softjit.exp(np.float32(0.0))
    assert y.shape == () and y == np.float32(1.0)


# ---------------------------------------------------------------------------- errors
def test_out_of_wrong_shape():
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match=r"shape"):
        softjit.exp(x, out=np.empty(11, np.float32))
    with pytest.raises(ValueError, match=r"shape"):
        softjit.exp(x, out=np.empty((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"shape"):
        softjit.exp(np.ones((), np.float32), out=np.empty(1, np.float32))


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_out_of_wrong_dtype(dtype):
    with pytest.raises(TypeError, match=r"float32"):
        softjit.exp(np.ones(10, np.float32), out=np.empty(10, dtype))


def test_out_not_an_array():
    with pytest.raises(TypeError):
        softjit.exp(np.ones(3, np.float32), out=[0.0, 0.0, 0.0])


def test_read_only_out():
    out = np.empty(10, np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"read-only"):
        softjit.exp(np.ones(10, np.float32), out=out)


def test_read_only_input_is_fine():
    x = value_pool(100)
    x.flags.writeable = False
    assert_accurate(x, softjit.exp(x), "read-only input")


@pytest.mark.parametrize("make", [
    pytest.param(lambda: np.ones(10, np.float64), id="float64"),
    pytest.param(lambda: np.ones(3, np.int32), id="int32"),
    pytest.param(lambda: np.ones(3, np.float16), id="float16"),
])
def test_non_float32_input_says_how_to_convert(make):
    with pytest.raises(TypeError) as info:
        softjit.exp(make())
    assert "astype(numpy.float32)" in str(info.value), str(info.value)


@pytest.mark.parametrize("isa_name", ["sse2", "avx512", "AVX2 ", "", "neon"])
def test_unknown_isa(isa_name):
    with pytest.raises(ValueError, match=r"isa"):
        softjit.exp(np.ones(4, np.float32), isa=isa_name)


def _host_has_avx512() -> bool:
    return cpu.ISA_REQUIREMENTS["avx512f"] <= cpu.host_features()


UNSUPPORTED_PROBE = textwrap.dedent("""
    import numpy as np, softjit
    try:
        softjit.exp(np.ones(100, np.float32), isa="avx512f")
    except softjit.UnsupportedISAError as error:
        assert isinstance(error, softjit.SoftjitError)
        print("RAISED", type(error).__name__, error)
    else:
        print("NOT RAISED")
    print("ALIVE", float(softjit.exp(np.zeros(1, np.float32))[0]))
""")


def _run_probe(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", UNSUPPORTED_PROBE], capture_output=True,
                          text=True, timeout=120, env=env)


def _assert_probe_survived(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (
        f"the child exited with {done.returncode}"
        + (f" (killed by signal {-done.returncode})" if done.returncode < 0 else "")
        + f"\nstdout: {done.stdout}\nstderr: {done.stderr}")
    assert "RAISED UnsupportedISAError" in done.stdout, done.stdout + done.stderr
    assert "ALIVE 1.0" in done.stdout, done.stdout + done.stderr
    return done.stdout


def test_avx512_on_a_host_without_it_raises_and_never_sigills():
    if _host_has_avx512():
        pytest.skip("this host runs AVX-512, so isa='avx512f' is legitimately available "
                    "(the SOFTJIT_ISA=avx2 variant of this test still runs)")
    env = {k: v for k, v in os.environ.items() if k != cpu.ISA_ENV_VARIABLE}
    out = _assert_probe_survived(_run_probe(env))
    assert "avx512f" in out and "avx2" in out, out  # names the ISA and what is available
    with pytest.raises(softjit.UnsupportedISAError):
        softjit.exp(np.ones(4, np.float32), isa="avx512f")


def test_avx512_above_the_softjit_isa_cap_raises_in_a_child():
    if not cpu.ISA_REQUIREMENTS["avx2"] <= cpu.host_features():
        pytest.skip("the host does not run AVX2")
    env = dict(os.environ, **{cpu.ISA_ENV_VARIABLE: "avx2"})
    out = _assert_probe_survived(_run_probe(env))
    assert "SOFTJIT_ISA" in out, out


def test_softjit_isa_caps_host_isas(monkeypatch):
    if not cpu.ISA_REQUIREMENTS["avx2"] <= cpu.host_features():
        pytest.skip("the host does not run AVX2")
    monkeypatch.delenv(cpu.ISA_ENV_VARIABLE, raising=False)
    uncapped = softjit.host_isas()
    assert uncapped[-1] == "avx2" and uncapped == tuple(
        isa for isa in cpu.ISAS if cpu.ISA_REQUIREMENTS[isa] <= cpu.host_features())
    x = value_pool(100)
    best = softjit.exp(x)
    monkeypatch.setenv(cpu.ISA_ENV_VARIABLE, "avx2")
    assert softjit.host_isas() == ("avx2",)
    assert same_bits(softjit.exp(x), softjit.exp(x, isa="avx2"))
    with pytest.raises(softjit.UnsupportedISAError, match="SOFTJIT_ISA"):
        softjit.exp(x, isa="avx512f")
    monkeypatch.delenv(cpu.ISA_ENV_VARIABLE)
    assert softjit.host_isas() == uncapped
    assert same_bits(softjit.exp(x), best)
