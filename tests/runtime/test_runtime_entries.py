"""The generated CPython entries, called directly: what they accept, compute and refuse, and that
they leave no trace (references, buffers, memory) and release the GIL."""
from __future__ import annotations

import gc
import sys
import threading
import time
import types

import numpy as np
import pytest

from softjit.codegen import entries as layout
from softjit.codegen import variants
from softjit.runtime import entries, native
from softjit.runtime import api

FITS_ALL = layout.FITS_ALL

pytestmark = pytest.mark.skipif(
    "avx2" not in __import__("softjit").host_isas(), reason="the entries run the host's AVX2 kernels")


def test_entries_are_used_on_this_interpreter():
    assert entries.unavailable_reason() is None


@pytest.mark.parametrize("patch, words", [
    (lambda mp: mp.setattr(sys, "implementation", types.SimpleNamespace(name="pypy")), "CPython"),
    (lambda mp: mp.setattr(sys, "abiflags", "t"), "free-threaded"),
    (lambda mp: (mp.delattr(sys, "abiflags"), mp.setattr(
        "sysconfig.get_config_var", lambda name: 1 if name == "Py_GIL_DISABLED" else None)),
     "free-threaded"),
], ids=["other-interpreter", "free-threaded", "free-threaded-by-sysconfig"])
def test_the_rule_names_why_entries_are_not_used(monkeypatch, patch, words):
    patch(monkeypatch)
    assert words in entries._probe()


def test_a_module_that_cannot_load_makes_entries_unavailable(monkeypatch):
    def refuse():
        raise OSError("undefined symbol: PyObject_GetBuffer")
    monkeypatch.setattr(entries, "_load_module", refuse)
    assert "undefined symbol" in entries._probe()


def driver(algorithm):
    variant = variants.REGISTRY.softmax(algorithm, "avx2")
    return native.function_address(variant, variant.driver_symbol)


@pytest.fixture(scope="module")
def reload_entry():
    return entries.softmax_rows([(FITS_ALL, FITS_ALL, driver("three-pass-reload"), 0)])


@pytest.fixture(scope="module")
def two_pass_entry():
    return entries.softmax_rows([(FITS_ALL, FITS_ALL, driver("two-pass"), driver("three-pass-reload"))])


@pytest.fixture(scope="module")
def exp_entry():
    return entries.elementwise(native.function_address(variants.REGISTRY.for_op("vexp", "avx2")))


def reference(x, algorithm):
    return api.softmax(x, algorithm=algorithm, isa="avx2", threads=2)


def rng_array(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 4


@pytest.mark.parametrize("shape", [(1,), (7,), (1000,), (3, 33), (600, 37), (2, 3, 50), (257, 1)])
def test_softmax_entry_matches_the_kernels_bit_for_bit(reload_entry, shape):
    x = rng_array(*shape)
    y = np.full_like(x, np.nan)
    assert reload_entry(x, y) == 0
    np.testing.assert_array_equal(y, reference(x, "three-pass-reload"))


def test_in_place(reload_entry):
    x = rng_array(300, 20)
    expected = reference(x, "three-pass-reload")
    assert reload_entry(x, x) == 0
    np.testing.assert_array_equal(x, expected)


def test_table_rows_choose_the_driver_by_row_length_and_size():
    # rows of at most 8 elements run two-pass, longer ones three-pass-reload: told apart by their
    # (different) rounding on the same input
    entry = entries.softmax_rows([(8, FITS_ALL, driver("two-pass"), driver("three-pass-reload")),
                                  (FITS_ALL, FITS_ALL, driver("three-pass-reload"), 0)])
    for n, algorithm in ((8, "two-pass"), (9, "three-pass-reload"), (500, "three-pass-reload")):
        x = rng_array(40, n, seed=n)
        y = np.empty_like(x)
        entry(x, y)
        np.testing.assert_array_equal(y, reference(x, algorithm))
    bytes_entry = entries.softmax_rows([(FITS_ALL, 400, driver("two-pass"), 0),
                                        (FITS_ALL, FITS_ALL, driver("three-pass-reload"), 0)])
    for rows, algorithm in ((10, "two-pass"), (11, "three-pass-reload")):
        x = rng_array(rows, 10, seed=rows)
        y = np.empty_like(x)
        bytes_entry(x, y)
        np.testing.assert_array_equal(y, reference(x, algorithm))


def test_a_table_must_end_with_a_row_that_fits_all():
    with pytest.raises(ValueError, match="fit every call"):
        entries.softmax_rows([(8, FITS_ALL, driver("two-pass"), 0)])


@pytest.mark.parametrize("in_place", [False, True], ids=["out", "in-place"])
def test_marked_rows_are_recomputed_by_the_fallback(two_pass_entry, in_place):
    x = rng_array(700, 30)
    marked = {3: np.nan, 300: 3e38, 301: np.inf, 699: np.nan}
    for row, value in marked.items():
        x[row, 7] = value
    x[500] = -np.inf  # only -inf: marked too
    expected = reference(x, "two-pass")
    y = x if in_place else np.empty_like(x)
    assert two_pass_entry(x, y) == len(marked) + 1
    np.testing.assert_array_equal(y, expected)


def test_exp_entry(exp_entry):
    for shape in [(), (1,), (1001,), (4, 33)]:
        x = np.asarray(rng_array(*shape) if shape else np.float32(1.5))
        y = np.empty_like(x)
        assert exp_entry(x, y) == 0
        np.testing.assert_array_equal(y, __import__("softjit").exp(x, isa="avx2"))
    x = rng_array(100)
    expected = np.exp(x.astype(np.float64))
    assert exp_entry(x, x) == 0
    np.testing.assert_allclose(x, expected, rtol=3e-7)


def _refusals():
    x = rng_array(4, 16)
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    base = np.zeros(128, np.float32)
    unaligned = np.frombuffer(bytearray(4 * 64 + 1), np.float32, 64, offset=1).reshape(4, 16)
    return {
        "float64 x": (x.astype(np.float64), np.empty_like(x)),
        "int32 out": (x, np.empty(x.shape, np.int32)),
        "float64 out": (x, np.empty(x.shape, np.float64)),
        "big-endian": (x.astype(">f4"), np.empty_like(x)),
        "read-only out": (x, read_only),
        "shape mismatch": (x, np.empty((16, 4), np.float32)),
        "size mismatch": (x, np.empty((4, 17), np.float32)),
        "ndim mismatch": (x, np.empty(64, np.float32)),
        "none": (None, np.empty_like(x)),
        "list": (x.tolist(), np.empty_like(x)),
        "int out": (x, 3),
        "bytes": (b"\0" * 256, np.empty_like(x)),
        "memoryview": (memoryview(x), np.empty_like(x)),
        "strided x": (rng_array(4, 32)[:, ::2], np.empty_like(x)),
        "strided out": (x, np.empty((4, 32), np.float32)[:, ::2]),
        "masked array": (np.ma.masked_array(x), np.empty_like(x)),
        "subclass out": (x, np.empty_like(x).view(np.matrix)),
        "overlap": (base[:64].reshape(4, 16), base[8:72].reshape(4, 16)),
        "overlap behind": (base[8:72].reshape(4, 16), base[:64].reshape(4, 16)),
        "unaligned": (unaligned, np.empty_like(x)),
        "empty": (np.empty((4, 0), np.float32), np.empty((4, 0), np.float32)),
        "no rows": (np.empty((0, 16), np.float32), np.empty((0, 16), np.float32)),
    }


@pytest.mark.parametrize("case", sorted(_refusals()))
def test_refusals_return_not_implemented_and_touch_nothing(reload_entry, exp_entry, case):
    x, out = _refusals()[case]
    before = out.copy() if isinstance(out, np.ndarray) else None
    arrays = [a for a in (x, out) if isinstance(a, np.ndarray)]  # (None's count moves anyway)
    refs = [sys.getrefcount(a) for a in arrays]
    for entry in (reload_entry, exp_entry):
        assert entry(x, out) is NotImplemented
        assert sys.exc_info() == (None, None, None)
    if before is not None:
        np.testing.assert_array_equal(out, before)
    assert [sys.getrefcount(a) for a in arrays] == refs
    if isinstance(x, np.ndarray) and x.base is None:
        x.resize(x.size, refcheck=False)  # a buffer left exported would refuse the resize


def test_the_softmax_entry_refuses_a_0d_array(reload_entry):
    x = np.asarray(np.float32(1))
    assert reload_entry(x, np.empty_like(x)) is NotImplemented


@pytest.mark.parametrize("args", [(), (1,), (1, 2, 3)], ids=["0", "1", "3"])
def test_wrong_argument_count(reload_entry, exp_entry, args):
    assert reload_entry(*args) is NotImplemented
    assert exp_entry(*args) is NotImplemented


def test_keywords_are_not_taken(reload_entry):
    x = rng_array(8)
    with pytest.raises(TypeError):
        reload_entry(x, out=x)


def test_reference_counts_are_unchanged(reload_entry, exp_entry):
    x, y, bad = rng_array(8, 100), np.empty((8, 100), np.float32), np.empty(3)
    counts = [sys.getrefcount(o) for o in (x, y, bad, NotImplemented, 0)]
    for _ in range(10_000):
        reload_entry(x, y)
        exp_entry(x, y)
        reload_entry(x, bad)
        exp_entry(bad, y)
    assert [sys.getrefcount(o) for o in (x, y, bad, NotImplemented, 0)] == counts


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _memory_growth(entry, calls: int) -> int:
    gc.collect()
    start = _resident_bytes()
    for i in range(calls):
        x = np.empty(256, np.float32)  # a fresh array each time: a leaked buffer keeps it alive
        x[:] = 0
        entry(x, np.empty(256, np.float32))
        entry(x, np.empty(256, np.float64))  # refused after acquiring x's buffer
    gc.collect()
    return _resident_bytes() - start


def test_memory_is_flat_over_100k_calls(reload_entry):
    _memory_growth(reload_entry, 1000)  # warm up allocator pools
    assert _memory_growth(reload_entry, 100_000) < 8 << 20  # a leak would hold 200 MB


@pytest.mark.slow
def test_memory_is_flat_over_a_million_calls(reload_entry, exp_entry):
    _memory_growth(reload_entry, 1000)
    assert _memory_growth(reload_entry, 1_000_000) < 16 << 20
    assert _memory_growth(exp_entry, 1_000_000) < 16 << 20


def test_the_gil_is_released_while_a_64m_element_call_runs(reload_entry):
    x = np.zeros(64 << 20, np.float32)
    y = np.empty_like(x)
    stamps = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            stamps.append(time.perf_counter())
            if len(stamps) > 1_000_000:
                del stamps[:500_000]

    thread = threading.Thread(target=count)
    thread.start()
    try:
        time.sleep(0.05)
        start = time.perf_counter()
        reload_entry(x, y)
        end = time.perf_counter()
    finally:
        stop.set()
        thread.join()
    assert y[0] == y[-1] == np.float32(1 / (64 << 20))
    # With the GIL held the other thread could run only before the call started (one switch
    # interval, 5 ms); its stamps in the call's second half show it ran during the kernel.
    middle = start + (end - start) / 2
    assert end - start > 0.02, "the call was too short to tell"
    assert any(middle < t < end for t in stamps), "no progress during the call"
