"""The public functions' two paths: the generated entry (first) and the general path (cffi).

Every documented call form gives the same bits on both, actually runs through the entry where
entries are used (the public builtins run them natively, without entering the Python
functions; where those are not used, the Python functions' first path accepts them), and every
bad argument raises
the same error whichever path saw it first; the argument checks are the same for both (threads
a positive int, axis an int, never bool/float).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

import softjit
from softjit.runtime import api, bindings, entries, memo

pytestmark = pytest.mark.skipif(entries.unavailable_reason() is not None,
                                reason=f"entries are not used here: {entries.unavailable_reason()}")


class Spy:
    """Counts the entry calls that were accepted (did not return NotImplemented)."""

    def __init__(self, monkeypatch):
        self.accepted = 0
        for name in ("SOFTMAX_ENTRY_CALLS", "EXP_ENTRY_CALLS"):
            wrapped = {key: self.wrap(entry) for key, entry in getattr(api, name).items()}
            monkeypatch.setattr(api, name, _Wrapping(wrapped, self))

    def wrap(self, entry):
        def counted(*args):
            result = entry(*args)
            self.accepted += result is not NotImplemented
            return result
        return counted


class _Wrapping(dict):
    """A registry whose new entries are counted too."""

    def __init__(self, items, spy):
        super().__init__(items)
        self.spy = spy

    def __setitem__(self, key, entry):
        super().__setitem__(key, self.spy.wrap(entry))


class PythonFrames:
    """The code objects of the Python functions entered, and the builtins called, while it is
    active (sys.setprofile)."""

    def __enter__(self):
        self.codes, self.builtins = [], []
        self.previous = sys.getprofile()

        def profile(frame, event, arg):
            if event == "call":
                self.codes.append(frame.f_code)
            elif event == "c_call":
                self.builtins.append(arg)

        sys.setprofile(profile)
        return self

    def __exit__(self, *exc):
        sys.setprofile(self.previous)

    def entered(self, function) -> bool:
        return function.__code__ in self.codes


def ran_natively(call) -> tuple:
    """(result, True when a public builtin, softjit.softmax's or softjit.exp's, ran the call
    without its Python function)."""
    with PythonFrames() as frames:
        result = call()
    return result, any(
        builtin is not python and any(f is builtin for f in frames.builtins)
        and not frames.entered(python)
        for builtin, python in ((api.softmax, api._python_softmax), (api.exp, api._python_exp)))


def disable_entries(monkeypatch):
    """The process as one where entries are not used: the general path for every call."""
    for name in ("softmax", "exp"):
        monkeypatch.setattr(api, name, getattr(api, f"_python_{name}"))
        monkeypatch.setattr(softjit, name, getattr(api, f"_python_{name}"))
    monkeypatch.setattr(api, "SOFTMAX_ENTRY_CALLS", {})
    monkeypatch.setattr(api, "EXP_ENTRY_CALLS", {})
    monkeypatch.setitem(entries._state, "reason", "disabled by the test")
    monkeypatch.setattr(memo, "SOFTMAX_ENTRIES", {})
    monkeypatch.setattr(memo, "EXP_ENTRIES", {})


@pytest.fixture
def general_only(monkeypatch):
    disable_entries(monkeypatch)


def data(*shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 5).astype(np.float32)


def _forms():
    x1, x2, x3 = data(1000), data(8, 1000, seed=1), data(2, 3, 50, seed=2)
    special = data(4, 64, seed=3)
    special[1, 3], special[2, 5], special[3] = np.nan, 3e38, -np.inf
    return {
        "out=": lambda: softjit.softmax(x1, out=np.empty_like(x1)),
        "new output": lambda: softjit.softmax(x1),
        "three-pass-reload": lambda: softjit.softmax(x1, algorithm="three-pass-reload"),
        "two-pass": lambda: softjit.softmax(x2, algorithm="two-pass"),
        "three-pass-recompute": lambda: softjit.softmax(x2, algorithm="three-pass-recompute"),
        "isa avx2": lambda: softjit.softmax(x1, isa="avx2"),
        "axis=0 of 1-D": lambda: softjit.softmax(x1, 0),
        "axis=-1 of N-D": lambda: softjit.softmax(x3, axis=-1),
        "axis=ndim-1": lambda: softjit.softmax(x3, axis=2),
        "in place": lambda: _in_place(x2),
        "batch": lambda: softjit.softmax(x2, out=np.empty_like(x2)),
        "marked rows (two-pass)": lambda: softjit.softmax(special, algorithm="two-pass"),
        "marked rows in place": lambda: _in_place(special, algorithm="two-pass"),
        "exp out=": lambda: softjit.exp(x2, out=np.empty_like(x2)),
        "exp new": lambda: softjit.exp(x3),
        "exp in place": lambda: _exp_in_place(x1),
        "exp 0-d": lambda: softjit.exp(np.asarray(np.float32(2))),
        "scale=": lambda: softjit.softmax(x2, scale=2.0),
        "scale= out=": lambda: softjit.softmax(x1, out=np.empty_like(x1), scale=0.5),
        "scale=1.0": lambda: softjit.softmax(x1, scale=1.0),
        "scale= named algorithm": lambda: softjit.softmax(x2, algorithm="three-pass-recompute",
                                                          scale=-3),
        "dtype=float32": lambda: softjit.softmax(x1, out=np.empty_like(x1), dtype=np.float32),
        "exp dtype=float32": lambda: softjit.exp(x2, dtype=np.float32),
    }


def _in_place(x, **options):
    y = x.copy()
    result = softjit.softmax(y, out=y, **options)
    assert result is y
    return y


def _exp_in_place(x):
    y = x.copy()
    assert softjit.exp(y, out=y) is y
    return y


@pytest.mark.parametrize("form", sorted(_forms()))
def test_every_call_form_runs_through_the_entry_with_the_general_paths_bits(form, monkeypatch):
    call = _forms()[form]
    expected = _general_result(call, monkeypatch)
    call()  # registers the entry for these arguments
    spy = Spy(monkeypatch)
    got, native = ran_natively(call)
    assert spy.accepted + native == 1, "the call did not run through its entry"
    np.testing.assert_array_equal(got, expected)


def _general_result(call, monkeypatch):
    with monkeypatch.context() as patch:
        disable_entries(patch)
        return call()


def _bad_calls():
    x = data(4, 16)
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    return {
        "float64 x": lambda: softjit.softmax(x.astype(np.float64)),
        "float64 out": lambda: softjit.softmax(x, out=np.empty(x.shape)),
        "list out": lambda: softjit.softmax(x, out=x.tolist()),
        "read-only out": lambda: softjit.softmax(x, out=read_only),
        "shape mismatch": lambda: softjit.softmax(x, out=np.empty((16, 4), np.float32)),
        "masked array": lambda: softjit.softmax(np.ma.masked_array(x)),
        "0-d": lambda: softjit.softmax(np.asarray(np.float32(1))),
        "threads=1.0": lambda: softjit.softmax(x, threads=1.0),
        "threads=True": lambda: softjit.softmax(x, threads=True),
        "threads=0": lambda: softjit.softmax(x, threads=0),
        "axis=-1.0": lambda: softjit.softmax(x, axis=-1.0),
        "axis=True": lambda: softjit.softmax(x, axis=True),
        "axis=2": lambda: softjit.softmax(x, axis=2),
        "unknown algorithm": lambda: softjit.softmax(x, algorithm="online"),
        "unhashable algorithm": lambda: softjit.softmax(x, algorithm=["auto"]),
        "unknown isa": lambda: softjit.softmax(x, isa="sse2"),
        "scale=True": lambda: softjit.softmax(x, scale=True),
        "scale=nan": lambda: softjit.softmax(x, scale=float("nan")),
        "scale=1e39": lambda: softjit.softmax(x, scale=1e39),
        "scale='2'": lambda: softjit.softmax(x, scale="2"),
        "dtype=float64": lambda: softjit.softmax(x, dtype=np.float64),
        "float64 x, dtype=float32, bad out": lambda: softjit.softmax(
            x.astype(np.float64), dtype=np.float32, out=np.empty(x.shape)),
        "exp dtype=float64": lambda: softjit.exp(x, dtype=np.float64),
        "exp float64": lambda: softjit.exp(x.astype(np.float64)),
        "exp read-only out": lambda: softjit.exp(x, out=read_only),
        "exp shape mismatch": lambda: softjit.exp(x, out=np.empty(64, np.float32)),
        "exp int out": lambda: softjit.exp(x, out=3),
        "exp unknown isa": lambda: softjit.exp(x, isa="sse2"),
        "exp unhashable isa": lambda: softjit.exp(x, isa={}),
    }


def _raised(call):
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the point is to compare whatever is raised
        return type(error), str(error)
    return None


@pytest.mark.parametrize("case", sorted(_bad_calls()))
def test_bad_arguments_raise_the_same_error_on_both_paths(case, monkeypatch):
    call = _bad_calls()[case]
    softjit.softmax(data(4, 16))  # entries registered for the default arguments
    softjit.exp(data(4, 16))
    first = _raised(call)
    assert first is not None, "a bad argument was accepted"
    with monkeypatch.context() as patch:
        disable_entries(patch)
        assert _raised(call) == first


@pytest.mark.parametrize("threads", [1.0, True, np.True_])
def test_threads_must_be_an_int_not_a_bool_or_float(threads):
    with pytest.raises(TypeError, match="threads must be a positive integer"):
        softjit.softmax(data(8), threads=threads)


@pytest.mark.parametrize("axis", [-1.0, True, np.float32(0)])
def test_axis_must_be_an_int_not_a_bool_or_float(axis):
    with pytest.raises(TypeError, match="axis must be an integer"):
        softjit.softmax(data(8), axis=axis)


def test_numpy_integer_arguments_are_accepted():
    x = data(3, 10)
    np.testing.assert_array_equal(softjit.softmax(x, axis=np.int64(1), threads=np.int32(1)),
                                  softjit.softmax(x))


def test_overlapping_out_is_computed_through_the_general_path():
    base = data(2000)
    x, out = base[:1000], base[500:1500]
    expected = softjit.softmax(x.copy())
    assert softjit.softmax(x, out=out) is out
    np.testing.assert_array_equal(out, expected)


def test_without_entries_every_form_still_works(general_only):
    for form, call in _forms().items():
        assert np.all(np.isfinite(call()) | np.isnan(call())), form
    assert api.SOFTMAX_ENTRY_CALLS == {} and api.EXP_ENTRY_CALLS == {}


def test_reference_counts_of_inputs_are_unchanged():
    x, y = data(8, 100), np.empty((8, 100), np.float32)
    softjit.softmax(x, out=y)
    softjit.exp(x, out=y)
    counts = sys.getrefcount(x), sys.getrefcount(y)
    for _ in range(20_000):
        softjit.softmax(x, out=y)
        softjit.softmax(x)
        softjit.exp(x, out=y)
    assert (sys.getrefcount(x), sys.getrefcount(y)) == counts


def test_per_length_state_is_bounded():
    memo.SOFTMAX_ENTRY_CALLS.clear()  # what other tests' calls registered is not this test's
    memo.EXP_ENTRY_CALLS.clear()
    for n in range(1, 400):
        softjit.softmax(data(n, seed=n))
        softjit.softmax(data(n, seed=n), threads=2)
    assert len(memo.ROW_STRIDES) <= bindings._STRIDES_KEPT
    assert len(memo.SOFTMAX_ENTRY_CALLS) <= 8 and len(memo.EXP_ENTRY_CALLS) <= 8
