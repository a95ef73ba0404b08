"""softjit.softmax and softjit.exp as generated builtins (codegen/public_entries.py) against
the Python functions they hand every other call to: for every call form and every bad
argument, the same result or the same exception, whichever runs it; which calls they run
natively; reference counts; the GIL; a fork after use."""
from __future__ import annotations

import gc
import inspect
import os
import sys
import threading
import time

import numpy as np
import pytest

import softjit
from softjit.runtime import api, entries, memo

pytestmark = pytest.mark.skipif(
    api.softmax is api._python_softmax,
    reason="softjit.softmax is the Python function in this process: "
           f"{entries.unavailable_reason() or 'the entry module was not built before import'}")

from test_call_paths import PythonFrames  # noqa: E402


def data(*shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 5).astype(np.float32)


class Marked(np.ndarray):
    pass


class Name(str):
    pass


X1, X2, X3 = data(1000), data(8, 100, seed=1), data(2, 3, 40, seed=2)
SPECIAL = data(4, 64, seed=3)
SPECIAL[1, 3], SPECIAL[2, 5], SPECIAL[3] = np.nan, 3e38, -np.inf
OVERFLOWING = data(4, 64, seed=4)  # a product 2 * 3e38 overflows float32: row 2 is the host's
OVERFLOWING[2, 7] = 3e38


def _read_only():
    y = np.empty_like(X2)
    y.flags.writeable = False
    return y


# name: (arguments, keywords, runs natively). Arrays given as out are fresh for each run (the
# callable makes them); "x" in keywords is the input itself.
CALLS = {
    "x": ((X1,), {}, True),
    "x out": ((X1,), {"out": lambda: np.empty_like(X1)}, True),
    "x out=None": ((X1,), {"out": None}, True),
    "batch out": ((X2,), {"out": lambda: np.empty_like(X2)}, True),
    "3-D": ((X3,), {}, True),
    "axis -1 positional": ((X3, -1), {}, True),
    "axis ndim-1 positional": ((X3, 2), {}, True),
    "axis keyword": ((X1,), {"axis": 0}, True),
    "threads=1": ((X2,), {"threads": 1}, True),
    "named algorithm": ((X2,), {"algorithm": "two-pass"}, True),
    "recompute": ((X2,), {"algorithm": "three-pass-recompute"}, True),
    "isa avx2": ((X2,), {"isa": "avx2"}, True),
    "marked rows": ((SPECIAL,), {"algorithm": "two-pass"}, True),
    "every keyword": ((X2,), {"axis": -1, "algorithm": "three-pass-reload", "isa": "auto",
                              "threads": 1, "out": lambda: np.empty_like(X2)}, True),
    "scale float": ((X2,), {"scale": 2.0}, True),
    "scale int, out": ((X2,), {"scale": 3, "out": lambda: np.empty_like(X2)}, True),
    "scale 1.0 (the unscaled kernels)": ((X1,), {"scale": 1.0}, True),
    "scale rounding to float32 1": ((X1,), {"scale": 1.0 + 2.0 ** -30}, True),
    "scale None": ((X1,), {"scale": None}, True),
    "scale 0": ((X2,), {"scale": 0.0}, True),
    "scale, named algorithm": ((X2,), {"scale": -0.5, "algorithm": "three-pass-recompute"}, True),
    "scale, two-pass, large values": ((data(4, 64, seed=5) * 1e3,),
                                       {"scale": 0.5, "algorithm": "two-pass"}, True),
    "dtype float32": ((X2,), {"dtype": np.float32}, True),
    "dtype descriptor": ((X2,), {"dtype": np.dtype(np.float32)}, True),
    "dtype None": ((X2,), {"dtype": None}, True),
    "scale and dtype, every keyword": ((X2,), {"axis": -1, "algorithm": "two-pass", "isa": "auto",
                                              "threads": 1, "out": lambda: np.empty_like(X2),
                                              "scale": 0.25, "dtype": np.float32}, True),
    # valid, but the Python function's to run
    "axis 0 of 2-D": ((X2, 0), {}, False),
    "axis -2": ((X2,), {"axis": -2}, False),
    "axis numpy int": ((X2,), {"axis": np.int64(1)}, False),
    "axis None": ((X2,), {"axis": None}, False),
    "axis tuple": ((X3,), {"axis": (1, 2)}, False),
    "threads=2": ((X2,), {"threads": 2}, False),
    "x as keyword": ((), {"x": X2}, False),
    "list x": (([1.0, 2.0, 3.0],), {}, False),
    "strided x": ((X2[:, ::2],), {}, False),
    "subclass x": ((X2.view(Marked),), {}, False),
    "big-endian x": ((X2.astype(">f4"),), {}, False),
    "strided out": ((X2[:, :50],), {"out": lambda: np.empty((8, 100), np.float32)[:, ::2]},
                    False),
    "algorithm str subclass": ((X2,), {"algorithm": Name("two-pass")}, False),
    "0-size": ((np.empty((0, 4), np.float32),), {}, False),
    "scale, a product overflows": ((OVERFLOWING,), {"scale": 2.0}, False),
    "scale, special rows": ((SPECIAL,), {"scale": 2.0, "algorithm": "two-pass"}, False),
    "scale in place": ((X2.copy(),), {"scale": 2.0, "out": "x"}, False),
    "scale numpy float": ((X2,), {"scale": np.float32(2.0)}, False),
    "scale float16 x": ((X2.astype(np.float16),), {"scale": 2.0}, False),
    "float64 x, dtype float32": ((X2.astype(np.float64),), {"dtype": np.float32}, False),
    "float64 x, dtype float32, scale, out": ((X2.astype(np.float64),),
                                            {"dtype": np.float32, "scale": 2.0,
                                             "out": lambda: np.empty_like(X2)}, False),
    "int x, dtype float32": ((np.arange(12).reshape(3, 4),), {"dtype": np.float32}, False),
    "dtype name": ((X2,), {"dtype": "float32"}, False),
    # bad arguments: the Python function raises
    "no arguments": ((), {}, False),
    "three positional": ((X2, -1, "auto"), {}, False),
    "axis twice": ((X2, -1), {"axis": -1}, False),
    "unknown keyword": ((X2,), {"temperature": 2.0}, False),
    "axis=-1.0": ((X2,), {"axis": -1.0}, False),
    "axis=True": ((X2,), {"axis": True}, False),
    "axis=2 of 2-D": ((X2,), {"axis": 2}, False),
    "axis 2**70": ((X2,), {"axis": 2 ** 70}, False),
    "threads=0": ((X2,), {"threads": 0}, False),
    "threads=True": ((X2,), {"threads": True}, False),
    "threads=1.0": ((X2,), {"threads": 1.0}, False),
    "unknown algorithm": ((X2,), {"algorithm": "online"}, False),
    "unhashable algorithm": ((X2,), {"algorithm": ["auto"]}, False),
    "algorithm None": ((X2,), {"algorithm": None}, False),
    "unknown isa": ((X2,), {"isa": "sse2"}, False),
    "unhashable isa": ((X2,), {"isa": {}}, False),
    "float64 x": ((X2.astype(np.float64),), {}, False),
    "float64 out": ((X2,), {"out": lambda: np.empty(X2.shape)}, False),
    "int out": ((X2,), {"out": 3}, False),
    "read-only out": ((X2,), {"out": _read_only}, False),
    "shape mismatch": ((X2,), {"out": lambda: np.empty((100, 8), np.float32)}, False),
    "0-d": ((np.asarray(np.float32(1)),), {}, False),
    "masked array": ((np.ma.masked_array(X2),), {}, False),
    "string x": (("abc",), {}, False),
    "scale=True": ((X2,), {"scale": True}, False),
    "scale nan": ((X2,), {"scale": float("nan")}, False),
    "scale inf": ((X2,), {"scale": float("inf")}, False),
    "scale beyond float32": ((X2,), {"scale": 1e39}, False),
    "scale huge int": ((X2,), {"scale": 10 ** 400}, False),
    "scale string": ((X2,), {"scale": "2"}, False),
    "scale list": ((X2,), {"scale": [2.0]}, False),
    "dtype float64": ((X2,), {"dtype": np.float64}, False),
    "dtype nonsense": ((X2,), {"dtype": "nonsense"}, False),
    "float64 x, dtype float64": ((X2.astype(np.float64),), {"dtype": np.float64}, False),
    "float64 x, dtype float32, bad algorithm": ((X2.astype(np.float64),),
                                               {"dtype": np.float32, "algorithm": "online"},
                                               False),
    "float64 x, dtype float32, float64 out": ((X2.astype(np.float64),),
                                             {"dtype": np.float32,
                                              "out": lambda: np.empty(X2.shape)}, False),
}


EXP_CALLS = {
    "x": ((X1,), {}, True),
    "x out": ((X2,), {"out": lambda: np.empty_like(X2)}, True),
    "x out=None": ((X3,), {"out": None}, True),
    "0-d": ((np.asarray(np.float32(2)),), {}, True),
    "isa avx2": ((X2,), {"isa": "avx2"}, True),
    "isa and out": ((X2,), {"isa": "auto", "out": lambda: np.empty_like(X2)}, True),
    "in place": ((X1.copy(),), {"out": "x"}, True),
    "special values": ((SPECIAL,), {}, True),
    "dtype float32": ((X2,), {"dtype": np.float32}, True),
    "dtype None": ((X2,), {"dtype": None, "out": lambda: np.empty_like(X2)}, True),
    # valid, but the Python function's to run
    "float64 x, dtype float32": ((X2.astype(np.float64),), {"dtype": np.float32}, False),
    "list x": (([0.0, 1.0],), {}, False),
    "strided x": ((X2[:, ::2],), {}, False),
    "subclass x": ((X2.view(Marked),), {}, False),
    "0-size": ((np.empty((0, 3), np.float32),), {}, False),
    "isa str subclass": ((X2,), {"isa": Name("auto")}, False),
    "strided out": ((X2[:, :50],), {"out": lambda: np.empty((8, 100), np.float32)[:, ::2]},
                    False),
    # bad arguments
    "no arguments": ((), {}, False),
    "two positional": ((X2, "auto"), {}, False),
    "unknown keyword": ((X2,), {"axis": -1}, False),
    "float64 x": ((X2.astype(np.float64),), {}, False),
    "read-only out": ((X2,), {"out": _read_only}, False),
    "shape mismatch": ((X2,), {"out": lambda: np.empty(800, np.float32)}, False),
    "int out": ((X2,), {"out": 3}, False),
    "unknown isa": ((X2,), {"isa": "sse2"}, False),
    "unhashable isa": ((X2,), {"isa": {}}, False),
    "dtype float64": ((X2,), {"dtype": np.float64}, False),
}


def _run(function, name, calls=CALLS):
    arguments, keywords, _ = calls[name]
    if isinstance(keywords.get("out"), str) and keywords["out"] == "x":
        arguments = (arguments[0].copy(),)
        keywords = {**keywords, "out": arguments[0]}
    keywords = {k: (v() if callable(v) and not isinstance(v, type) else v)
                for k, v in keywords.items()}
    try:
        result = function(*arguments, **keywords)
    except Exception as error:  # noqa: BLE001 - the point is to compare whatever is raised
        return ("raised", type(error), str(error))
    if "out" in keywords and keywords["out"] is not None:
        assert result is keywords["out"]
    return ("returned", np.asarray(result).dtype, np.asarray(result).copy())


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_builtin_and_the_python_function_agree(name):
    softjit.softmax(X2), softjit.softmax(X2, algorithm="two-pass")  # routes registered
    softjit.softmax(X2, algorithm="three-pass-recompute"), softjit.softmax(X2, isa="avx2")
    softjit.softmax(X2, algorithm="three-pass-reload")
    expected = _run(api._python_softmax, name)
    with PythonFrames() as frames:
        got = _run(softjit.softmax, name)
    assert got[:2] == expected[:2]
    if got[0] == "raised":
        assert got[2] == expected[2]
    else:
        np.testing.assert_array_equal(got[2], expected[2])
    if got[0] == "returned":  # (a call Python cannot bind raises before the function's frame)
        native = not frames.entered(api._python_softmax)
        assert native == CALLS[name][2], ("ran natively" if native
                                          else "went to the Python function")


@pytest.mark.parametrize("name", sorted(EXP_CALLS))
def test_the_exp_builtin_and_the_python_function_agree(name):
    if api.exp is api._python_exp:
        pytest.skip("softjit.exp is the Python function in this process")
    softjit.exp(X2), softjit.exp(X2, isa="avx2")  # kernels registered
    expected = _run(api._python_exp, name, EXP_CALLS)
    with PythonFrames() as frames:
        got = _run(softjit.exp, name, EXP_CALLS)
    assert got[:2] == expected[:2]
    if got[0] == "raised":
        assert got[2] == expected[2]
    else:
        np.testing.assert_array_equal(got[2], expected[2])
        native = not frames.entered(api._python_exp)
        assert native == EXP_CALLS[name][2], ("ran natively" if native
                                              else "went to the Python function")


def test_keywords_not_interned_go_to_the_python_function_with_the_same_result():
    softjit.softmax(X2)
    keywords = {"".join(["o", "u", "t"]): np.empty_like(X2)}  # a str equal to "out", not it
    with PythonFrames() as frames:
        result = softjit.softmax(X2, **keywords)
    assert result is keywords["out"]
    np.testing.assert_array_equal(result, api._python_softmax(X2))
    assert frames.entered(api._python_softmax)


def test_routes_have_exact_str_keys_only():
    class Noisy(str):  # a key whose __eq__ would run Python code inside the builtin's lookups
        def __eq__(self, other):
            return str.__eq__(self, other)

        __hash__ = str.__hash__

    x = data(4, 16)
    softjit.softmax(x, algorithm=Noisy("two-pass"), isa=Noisy("auto"))
    softjit.exp(x, isa=Noisy("avx2"))
    for key, isas in memo.SOFTMAX_ROUTES.items():
        assert type(key) is str and all(type(isa) is str for isa in isas)
    assert all(type(isa) is str for isa in memo.EXP_ROUTES)
    np.testing.assert_array_equal(softjit.softmax(x, algorithm="two-pass"),
                                  api._python_softmax(x, algorithm="two-pass"))


def test_signature_name_and_doc_are_the_python_functions():
    assert softjit.softmax.__name__ == "softmax"
    assert softjit.softmax.__doc__ == api._python_softmax.__doc__
    python = inspect.signature(api._python_softmax)
    builtin = inspect.signature(softjit.softmax)
    assert list(builtin.parameters) == list(python.parameters)
    for name, parameter in builtin.parameters.items():
        assert parameter.kind == python.parameters[name].kind
        assert parameter.default == python.parameters[name].default


@pytest.mark.parametrize("function", ["softmax", "exp"])
def test_the_builtins_pickle_copy_and_print_as_module_level_functions(function):
    import copy
    import pickle

    builtin = getattr(softjit, function)
    if builtin is getattr(api, f"_python_{function}"):
        pytest.skip(f"softjit.{function} is the Python function in this process")
    assert pickle.loads(pickle.dumps(builtin)) is builtin  # how multiprocessing and Dask send it
    assert copy.deepcopy(builtin) is builtin
    assert builtin.__qualname__ == function and builtin.__module__ == "softjit.runtime.api"
    assert repr(builtin) == f"<built-in function {function}>"


def test_routes_emptied_in_place_send_calls_to_the_python_function_until_registered():
    softjit.softmax(X2)
    memo.isa_changed()  # what a change of SOFTJIT_ISA does
    assert memo.SOFTMAX_ROUTES == {}
    with PythonFrames() as frames:
        softjit.softmax(X2)
    assert frames.entered(api._python_softmax)
    with PythonFrames() as frames:
        softjit.softmax(X2)
    assert not frames.entered(api._python_softmax)


def test_an_overlapping_out_goes_to_the_python_function():
    base = data(2000)
    x, out = base[:1000], base[500:1500]
    expected = api._python_softmax(x.copy())
    with PythonFrames() as frames:
        assert softjit.softmax(x, out=out) is out
    assert frames.entered(api._python_softmax)
    np.testing.assert_array_equal(out, expected)


def test_reference_counts_and_memory_stay_flat():
    x, y = data(8, 100), np.empty((8, 100), np.float32)
    over = OVERFLOWING
    calls = (lambda: softjit.softmax(x, out=y), lambda: softjit.softmax(x),
             lambda: softjit.softmax(x, -1, algorithm="two-pass", out=y),
             lambda: softjit.softmax(x, threads=2),  # the Python function
             lambda: softjit.softmax(x, out=y, scale=2.0), lambda: softjit.softmax(x, scale=3),
             lambda: softjit.softmax(x, out=y, dtype=np.float32),
             lambda: softjit.softmax(over, scale=2.0),  # natively, then the Python function
             lambda: _raises(lambda: softjit.softmax(x, scale=True)),
             lambda: softjit.exp(x, out=y, dtype=np.float32),
             lambda: softjit.exp(x, out=y), lambda: softjit.exp(x),
             lambda: _raises(lambda: softjit.exp(x, out=np.empty(3, np.float32))),
             lambda: _raises(lambda: softjit.softmax(x, axis=1.5)),
             lambda: _raises(lambda: softjit.softmax(x, out=np.empty(3, np.float32))),
             lambda: _raises(lambda: softjit.softmax(x, bogus=1)))
    for call in calls:
        call()
    gc.collect()
    counts = (sys.getrefcount(x), sys.getrefcount(y), sys.getrefcount(None), sys.getrefcount(1),
              sys.getrefcount(over))
    objects = len(gc.get_objects())
    for _ in range(3000):
        for call in calls:
            call()
    gc.collect()
    assert (sys.getrefcount(x), sys.getrefcount(y)) == counts[:2]
    assert sys.getrefcount(over) == counts[4]
    assert abs(sys.getrefcount(None) - counts[2]) < 50 and abs(sys.getrefcount(1) - counts[3]) < 50
    assert len(gc.get_objects()) - objects < 100


def _raises(call):
    with pytest.raises((TypeError, ValueError)):
        call()


@pytest.mark.parametrize("function", ["softmax", "exp"])
def test_a_new_output_is_a_fresh_c_contiguous_float32_array(function):
    results = [getattr(softjit, function)(X3) for _ in range(3)]
    for result in results:
        assert type(result) is np.ndarray and result.dtype == np.float32
        assert result.shape == X3.shape and result.flags.c_contiguous and result.flags.owndata
        assert not np.shares_memory(result, X3)
    assert not np.shares_memory(results[0], results[1])


@pytest.mark.parametrize("function", ["softmax", "exp", "log_softmax"])
def test_other_threads_run_while_a_large_call_holds_no_gil(function):
    """A thread woken just before a 64 MiB call runs Python code before that call returns.

    With a switch interval of one second, a thread that wants a GIL another thread holds waits
    about a second for it, far longer than the call: it can run during the call only if the
    call released the GIL. (Tries a few calls: the thread may be slow to wake.)"""
    from softjit.runtime import log_softmax as log_softmax_module

    owner = log_softmax_module if function == "log_softmax" else api
    call, python = getattr(softjit, function), getattr(owner, f"_python_{function}")
    if call is python:
        pytest.skip(f"softjit.{function} is the Python function in this process")
    # 64 MiB, far above GIL_MIN_BYTES: a call of a few milliseconds (16 MiB log_softmax took
    # ~3 ms) can end before a woken thread gets a CPU on a loaded host
    x = data(1 << 24)
    y = np.empty_like(x)
    call(x, out=y)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    overlapped = False
    try:
        for _ in range(20):
            go, seen = threading.Event(), []
            thread = threading.Thread(target=lambda: go.wait() and seen.append(time.perf_counter()))
            thread.start()
            time.sleep(0.005)  # the thread now waits on `go`, without the GIL
            go.set()
            start = time.perf_counter()
            call(x, out=y)
            end = time.perf_counter()
            thread.join()
            if seen and start < seen[0] < end:
                overlapped = True
                break
    finally:
        sys.setswitchinterval(previous)
    assert overlapped, "no other thread ran during any of the calls: the GIL was not released"
    np.testing.assert_array_equal(y, python(x))


def test_threads_calling_the_builtin_at_once_get_correct_results():
    inputs = [data(64, 300, seed=s) for s in range(4)] + [data(1 << 15, seed=9)]
    expected = [api._python_softmax(x) for x in inputs]
    failures = []

    def work(index):
        for _ in range(50):
            if not np.array_equal(softjit.softmax(inputs[index]), expected[index]):
                failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_use_calls_the_builtin():
    x = data(8, 100)
    expected = softjit.softmax(x)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        ok = 0
        try:
            ok = int(np.array_equal(softjit.softmax(x), expected)
                     and np.array_equal(softjit.softmax(x, algorithm="two-pass"),
                                        api._python_softmax(x, algorithm="two-pass")))
        finally:
            os.write(write, bytes([ok]))
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"\x01"


@pytest.mark.slow
def test_a_million_calls_keep_reference_counts_and_memory_flat():
    import resource

    x, y = data(8, 100), np.empty((8, 100), np.float32)
    calls = (lambda: softjit.softmax(x, out=y), lambda: softjit.softmax(x),
             lambda: softjit.exp(x, out=y), lambda: softjit.exp(x))
    for call in calls:
        for _ in range(10_000):  # warm: every allocation size seen, numpy's caches filled
            call()
    counts = sys.getrefcount(x), sys.getrefcount(y)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for call in calls:
        for _ in range(1_000_000):
            call()
    assert (sys.getrefcount(x), sys.getrefcount(y)) == counts
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 8 * 1024, f"peak memory grew by {grown} KiB over 4 x 10^6 calls"


def test_a_new_scale_goes_to_the_python_function_once():
    softjit.softmax(X1, scale=2.0)
    for expected_python in (True, False):
        with PythonFrames() as frames:
            softjit.softmax(X1, scale=7.0 + 2.0 ** -20)
        assert frames.entered(api._python_softmax) == expected_python


def test_scales_are_bounded_and_emptied_in_place():
    softjit.softmax(X1, scale=2.0)
    scales = memo.SOFTMAX_SCALES
    for k in range(memo.SCALES_KEPT + 5):
        softjit.softmax(X1[:8], scale=1.0 + k / 1024)
    assert memo.SOFTMAX_SCALES is scales and 0 < len(scales) <= memo.SCALES_KEPT
    with PythonFrames() as frames:  # a scale still kept: natively
        softjit.softmax(X1, scale=1.0 + (memo.SCALES_KEPT + 4) / 1024)
    assert not frames.entered(api._python_softmax)


def test_a_scaled_call_is_the_kernels_law():
    """The builtin's scaled rows: the bits of softmax(float32(scale) * x) where the products are
    finite, for every algorithm (the law of runtime/scaled.py)."""
    x = data(6, 257, seed=7)
    for algorithm in ("auto", "two-pass", "three-pass-reload", "three-pass-recompute"):
        api._python_softmax(x, algorithm=algorithm, scale=1.5)  # registered
        with PythonFrames() as frames:
            got = softjit.softmax(x, algorithm=algorithm, scale=1.5)
        assert not frames.entered(api._python_softmax)
        np.testing.assert_array_equal(got, softjit.softmax(np.float32(1.5) * x,
                                                           algorithm=algorithm))


# ---------------------------------------------------------------------------- log_softmax
LOG_SOFTMAX_CALLS = {
    "x": ((X1,), {}, True),
    "x out": ((X1,), {"out": lambda: np.empty_like(X1)}, True),
    "batch out": ((X2,), {"out": lambda: np.empty_like(X2)}, True),
    "3-D": ((X3,), {}, True),
    "axis positional": ((X3, 2), {}, True),
    "axis keyword": ((X1,), {"axis": 0}, True),
    "in place": ((X2.copy(),), {"out": "x"}, True),
    "two-pass": ((X2,), {"algorithm": "two-pass"}, True),
    "three-pass": ((X2,), {"algorithm": "three-pass"}, True),
    "isa avx2": ((X2,), {"isa": "avx2"}, True),
    "special rows": ((SPECIAL,), {}, True),
    "special rows, two-pass": ((SPECIAL,), {"algorithm": "two-pass"}, True),
    "many rows": ((data(700, 33, seed=8),), {}, True),  # several chunks of the entry's states
    "every keyword": ((X2,), {"axis": -1, "algorithm": "two-pass", "isa": "auto", "threads": 1,
                              "out": lambda: np.empty_like(X2), "scale": None,
                              "dtype": np.float32}, True),
    # valid, but the Python function's to run
    "scale": ((X2,), {"scale": 2.0}, False),
    "axis 0 of 2-D": ((X2, 0), {}, False),
    "axis None": ((X2,), {"axis": None}, False),
    "threads=2": ((X2,), {"threads": 2}, False),
    "strided x": ((X2[:, ::2],), {}, False),
    "float16 x": ((X2.astype(np.float16),), {}, False),
    "float64 x, dtype float32": ((X2.astype(np.float64),), {"dtype": np.float32}, False),
    "0-size": ((np.empty((0, 4), np.float32),), {}, False),
    # bad arguments
    "no arguments": ((), {}, False),
    "unknown keyword": ((X2,), {"temperature": 2.0}, False),
    "axis=-1.0": ((X2,), {"axis": -1.0}, False),
    "threads=True": ((X2,), {"threads": True}, False),
    "unknown algorithm": ((X2,), {"algorithm": "three-pass-reload"}, False),
    "unknown isa": ((X2,), {"isa": "sse2"}, False),
    "float64 x": ((X2.astype(np.float64),), {}, False),
    "read-only out": ((X2,), {"out": _read_only}, False),
    "shape mismatch": ((X2,), {"out": lambda: np.empty((100, 8), np.float32)}, False),
    "scale=True": ((X2,), {"scale": True}, False),
    "0-d": ((np.asarray(np.float32(1)),), {}, False),
}


@pytest.mark.parametrize("name", sorted(LOG_SOFTMAX_CALLS))
def test_the_log_softmax_builtin_and_the_python_function_agree(name):
    from softjit.runtime import log_softmax as runtime

    if runtime.log_softmax is runtime._python_log_softmax:
        pytest.skip("softjit.log_softmax is the Python function in this process")
    for keywords in ({}, {"algorithm": "two-pass"}, {"algorithm": "three-pass"}, {"isa": "avx2"}):
        softjit.log_softmax(X2, **keywords)  # routes registered
    expected = _run(runtime._python_log_softmax, name, LOG_SOFTMAX_CALLS)
    with PythonFrames() as frames:
        got = _run(softjit.log_softmax, name, LOG_SOFTMAX_CALLS)
    assert got[:2] == expected[:2]
    if got[0] == "raised":
        assert got[2] == expected[2]
    else:
        np.testing.assert_array_equal(got[2], expected[2])
        native = not frames.entered(runtime._python_log_softmax)
        assert native == LOG_SOFTMAX_CALLS[name][2], ("ran natively" if native
                                                      else "went to the Python function")


@pytest.mark.parametrize("algorithm", ["auto", "two-pass", "three-pass"])
def test_the_log_softmax_table_picks_the_python_functions_module(algorithm):
    """Each (row length, output size) runs the driver of the module the Python function would
    (log_softmax._rows_module): the table's rows, read as the entry reads them."""
    from softjit.runtime import entry_tables, native
    from softjit.runtime import log_softmax as runtime

    isa = softjit.host_isas()[0]
    rows = entry_tables.log_softmax_rows(algorithm, isa)
    long_rows = runtime.NONTEMPORAL_MIN_ROW_BYTES // 4
    for n in (1, 1000, long_rows - 1, long_rows, runtime.THREE_PASS_MAX_ROW,
              runtime.THREE_PASS_MAX_ROW + 1, 1 << 24):
        for total in (n, runtime.NONTEMPORAL_MIN_BYTES // 4 - 1, runtime.NONTEMPORAL_MIN_BYTES // 4,
                      1 << 26):
            if total < n:
                continue
            driver = next(d for max_n, max_bytes, d, _ in rows
                          if n <= max_n and 4 * total <= max_bytes)
            module = runtime._rows_module(runtime._choose(algorithm, n, isa), isa, 4 * total,
                                          4 * n)
            variant = module.variant
            assert driver == native.function_address(variant, variant.log_softmax_symbol), \
                (n, total)


def test_log_softmax_reference_counts_stay_flat():
    from softjit.runtime import log_softmax as runtime

    x, y = data(8, 100), np.empty((8, 100), np.float32)
    calls = (lambda: softjit.log_softmax(x, out=y), lambda: softjit.log_softmax(x),
             lambda: softjit.log_softmax(x, scale=2.0),
             lambda: _raises(lambda: softjit.log_softmax(x, out=np.empty(3, np.float32))),
             lambda: _raises(lambda: softjit.log_softmax(x, bogus=1)))
    for call in calls:
        call()
    gc.collect()
    counts = sys.getrefcount(x), sys.getrefcount(y)
    objects = len(gc.get_objects())
    for _ in range(3000):
        for call in calls:
            call()
    gc.collect()
    assert (sys.getrefcount(x), sys.getrefcount(y)) == counts
    assert len(gc.get_objects()) - objects < 100
    assert runtime.log_softmax.__name__ == "log_softmax"


def test_a_log_softmax_into_an_overlapping_out_goes_to_the_python_function():
    from softjit.runtime import log_softmax as runtime

    base = data(2000)
    x, out = base[:1000], base[500:1500]
    expected = runtime._python_log_softmax(x.copy())
    with PythonFrames() as frames:
        assert softjit.log_softmax(x, out=out) is out
    assert frames.entered(runtime._python_log_softmax)
    np.testing.assert_array_equal(out, expected)
