"""The softmax kernels through the emulator (softjit.codegen.emulator), on any host: the row
drivers on every row length, alignment and row stride (any byte touched outside the buffers
faults), the rows they mark, and softjit.softmax's Python layer itself (fallback, threads,
split rows) with every kernel call emulated. On a host that runs the ISA, the emulated and
native bits are equal.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import softjit
from softjit.codegen import variants
from softjit.runtime import bindings

from softmax_checks import DISTRIBUTIONS, check_softmax, needs_three_pass, uniform
from softmax_cases import (ALGORITHMS, ALL_ALGORITHMS, HOST_ISAS, unroll_elements, concrete,
                           registers_nontemporal, skip_unregistered_nontemporal, row_lengths,
                           rng_for, special_rows, mixed_fallback_batch, call_native_driver,
                           emulated_driver, emulated_softmax)


EMULATED_ISAS = ("avx512f", "avx2")


@pytest.mark.parametrize("nontemporal", [False, True], ids=["", "nt"])
@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_emulated_every_row_length(algorithm, isa, nontemporal, emulator):
    """n = 0 .. 2*U+1 through the emulator (any out-of-bounds access raises there).

    For n == 0 the two-pass driver marks every row (the empty sum has no exponent); harmless,
    softjit.softmax never calls a kernel on empty rows, so marks are only checked for n > 0."""
    skip_unregistered_nontemporal(algorithm, isa, nontemporal)
    rng = rng_for("emulated", algorithm, isa, nontemporal)
    for n in row_lengths(algorithm, isa):
        x = np.stack([uniform(rng, n, 1.0), uniform(rng, n, 100.0),
                      DISTRIBUTIONS["loguniform_small"](rng, n)]).reshape(3, n)
        marked, status, y = emulated_softmax(emulator, algorithm, isa, x, nontemporal)
        if n:
            assert marked == 0 and not status.any(), (n, status)
        check_softmax(y, x, label=(algorithm, isa, "emulated"))
        if isa in HOST_ISAS:  # the emulator and the CPU agree bit for bit
            _, _, y_native = call_native_driver(algorithm, isa, x, nontemporal=nontemporal)
            assert np.array_equal(y, y_native)


@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_emulated_values_and_marks(algorithm, isa, emulator):
    """Special values, -inf masks, wide ranges and fallback rows in ~1000-element and short rows:
    marked rows are exactly those needing three passes; every row right after the fallback."""
    rng = rng_for("emulated-values", algorithm, isa)
    for n in (1000, 1003, 5, 37):
        batches = [mixed_fallback_batch(rng, n)] if n >= 2 else []
        if n >= 4:
            batches.append(special_rows(rng, n))
        wide = np.stack([DISTRIBUTIONS[d](rng, n) for d in
                         ("u1e-3", "u1e4", "u1e20", "u1e38", "loguniform", "neg_inf_mask",
                          "neg_inf_mask_wide", "normal")])
        wide[5:7, 0] = 1.0  # one finite survivor in the masked rows
        batches.append((wide, ["wide"] * len(wide)))
        for x, names in batches:
            marked, status, y = emulated_softmax(emulator, algorithm, isa, x)
            expected = [needs_three_pass(r) if algorithm == "two-pass" else False for r in x]
            assert [bool(s) for s in status] == expected, (
                n, [nm for nm, s in zip(names, status) if s])
            assert marked == sum(expected)
            for row_x, row_y, name in zip(x, y, names):
                try:
                    check_softmax(row_y, row_x, label=(algorithm, isa, "emulated"))
                except AssertionError as e:
                    raise AssertionError(f"emulated {algorithm}/{isa} n={n} row '{name}': {e}") \
                        from None
            if isa in HOST_ISAS:  # the emulator and the CPU agree bit for bit
                assert np.array_equal(y, softjit.softmax(x, algorithm=algorithm, isa=isa),
                                      equal_nan=True)


@pytest.mark.parametrize("nontemporal", [False, True], ids=["", "nt"])
@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_emulated_alignments_and_row_strides(algorithm, isa, nontemporal, emulator):
    """x and y at every float offset mod 64 bytes, rows a padded stride apart, the mapped regions
    ending exactly at the last row's end (the emulator keeps addresses mod 64 and faults on any
    byte outside a region): results right, padding untouched."""
    skip_unregistered_nontemporal(algorithm, isa, nontemporal)
    v = variants.REGISTRY.softmax(algorithm, isa, nontemporal)
    rng = rng_for("emulated-align", algorithm, isa, nontemporal)
    lanes = v.target.lanes
    rows, pad = 2, 3
    for n in (1, lanes - 1, lanes, lanes + 1, 4 * lanes + 3, 2 * unroll_elements(algorithm, isa) + 1):
        stride = n + pad
        for offset in range(16):
            size = (rows - 1) * stride + n
            x_base = np.empty(size + 32, np.float32)
            y_base = np.full(size + 32, 7.0, np.float32)
            xs = (-x_base.ctypes.data // 4) % 16 + offset
            ys = (-y_base.ctypes.data // 4) % 16 + (offset * 5 + 3) % 16
            x_region, y_region = x_base[xs:xs + size], y_base[ys:ys + size]
            x_region[...] = uniform(rng, size, 50.0)
            y_before = y_region.copy()
            strides = np.array([4 * stride, 4 * stride], np.int64)
            status = np.full(rows, -5, np.int32)
            marked = emulator.call(v, ("ro", x_region), y_region, n, rows, ("ro", strides),
                                   status, symbol=v.driver_symbol)
            assert marked == 0 and (status == 0).all()
            index = np.arange(size)
            in_rows = (index % stride) < n
            assert np.array_equal(y_region[~in_rows], y_before[~in_rows]), (n, offset)
            x2 = np.stack([x_region[r * stride:r * stride + n] for r in range(rows)])
            y2 = np.stack([y_region[r * stride:r * stride + n] for r in range(rows)])
            check_softmax(y2, x2, label=(algorithm, isa, "emulated"))


class _EmulatedDriver:
    """Stands in for runtime.bindings.RowDriver: same call, emulated kernels
    (one call at a time: the threads share the variant's Machine)."""

    lock = threading.Lock()

    def __init__(self, emulator, algorithm, isa, nontemporal=False, element="f32"):
        self.emulator = emulator
        self.variant = variants.REGISTRY.softmax(algorithm, isa, nontemporal, element)

    def __call__(self, x2d, y2d, status, strides):
        rows, n = x2d.shape
        assert x2d.flags.c_contiguous and y2d.flags.c_contiguous  # as the emulator maps them
        with _EmulatedDriver.lock:
            return self.emulator.call(self.variant, ("ro", x2d), y2d, n, rows, ("ro", strides),
                                      status, symbol=self.variant.driver_symbol)

    def single_row(self, n):
        return lambda x, y: self.contiguous(x, y, 1, n)[0]

    def contiguous(self, x, y, rows, n):
        status = np.empty(rows, np.int32)
        strides = np.array([x.itemsize * n, x.itemsize * n], np.int64)
        return self(x.reshape(rows, n), y.reshape(rows, n), status, strides), status


class _EmulatedPasses(_EmulatedDriver):
    """Stands in for the pass kernels a long row runs chunk by chunk and piece by piece."""

    def run(self, index, x, y, state):
        with _EmulatedDriver.lock:
            return self.emulator.call(self.variant, ("ro", x), y, x.shape[0], state,
                                      symbol=self.variant.passes[index][0])

    def run_pieces(self, index, x, y, states, bounds):
        return [self.run(index, x[a:b], y[a:b], states[i:i + 1])
                for i, (a, b) in enumerate(bounds)]


def _split_small_rows(monkeypatch, rows) -> None:
    """Rows of >= 1000 elements reduced in chunks of 512 (so that the emulator sees the
    chunked path on short rows)."""
    monkeypatch.setattr(rows, "SPLIT_ROW_MIN", 1000)
    monkeypatch.setattr(rows, "CHUNK_MIN", 512)
    monkeypatch.setattr(rows, "CHUNK_ALIGN", 64)


@pytest.fixture
def emulated_runtime(monkeypatch, emulator):
    """softjit.softmax with every kernel call going to the emulator (any ISA allowed), and rows
    of >= 1000 elements reduced in chunks. The runtime finds its native functions through
    bindings.driver and bindings.passes: those are replaced; the memoised calls are forgotten
    before and after."""
    from softjit.runtime import api, bindings, memo, rows

    memo.forget_calls()
    monkeypatch.setattr(api, "resolve_isa", lambda isa: isa)
    monkeypatch.setattr(bindings, "driver",
                        lambda algorithm, isa, nontemporal=False, element="f32":
                        _EmulatedDriver(emulator, algorithm, isa,
                                        nontemporal and registers_nontemporal(algorithm, isa),
                                        element))
    monkeypatch.setattr(bindings, "passes",
                        lambda algorithm, isa, nontemporal=False, element="f32": _EmulatedPasses(
                            emulator, algorithm, isa,
                            nontemporal and registers_nontemporal(algorithm, isa), element))
    # the generated entries call native kernels: keep every call on the (patched) general path
    monkeypatch.setattr(api.entry_tables, "softmax_entry", lambda algorithm, isa: None)
    _split_small_rows(monkeypatch, rows)
    monkeypatch.rows = rows
    monkeypatch.forget_calls = memo.forget_calls
    yield monkeypatch
    memo.forget_calls()


@pytest.mark.parametrize("isa", EMULATED_ISAS)
@pytest.mark.parametrize("algorithm", ALL_ALGORITHMS)
def test_emulated_through_the_python_layer(algorithm, isa, emulated_runtime):
    """softjit.softmax itself (fallback of marked rows, threads over rows, one row split over
    threads with its partial sums combined) on emulated kernels; on a host that runs the ISA,
    the same bits as the native run."""
    rng = rng_for("emulated-runtime", algorithm, isa)
    batch, names = mixed_fallback_batch(rng, 100)
    split_rows = {
        "uniform": uniform(rng, 3001, 100.0),
        "huge (two-pass fallback)": uniform(rng, 3001, 1e30),
        "first half -inf": np.concatenate([np.full(1500, -np.inf, np.float32),
                                           uniform(rng, 1501, 10.0)]),
        "one NaN": np.where(np.arange(3001) == 2999, np.nan, uniform(rng, 3001, 10.0)),
        "max in the last piece": np.concatenate([uniform(rng, 2990, 10.0),
                                                 np.float32([40.0] * 11)]),
    }
    results = []
    for threads in (1, 2):
        y = softjit.softmax(batch, algorithm=algorithm, isa=isa, threads=threads,
                            out=np.empty_like(batch))
        for row_x, row_y, name in zip(batch, y, names):
            try:
                check_softmax(row_y, row_x, label=(concrete(algorithm, isa), isa, "emulated"))
            except AssertionError as e:
                raise AssertionError(f"emulated {algorithm}/{isa} threads={threads} row "
                                     f"'{name}': {e}") from None
        results.append(("batch", threads, batch, y))
    for name, x in split_rows.items():
        x = x.astype(np.float32)
        y = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=3)
        try:
            check_softmax(y, x, label=(concrete(algorithm, isa), isa, "emulated"))
        except AssertionError as e:
            raise AssertionError(f"emulated {algorithm}/{isa} split row '{name}': {e}") from None
        results.append((name, 3, x, y))
    if isa in HOST_ISAS:  # the same calls on the CPU give the same bits
        rows = emulated_runtime.rows
        emulated_runtime.undo()
        emulated_runtime.forget_calls()
        _split_small_rows(emulated_runtime, rows)
        for name, threads, x, y in results:
            native_y = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads,
                                       out=np.empty_like(x))
            assert np.array_equal(native_y, y, equal_nan=True), name


@pytest.mark.parametrize("isa", ["avx512f", "avx2"])
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
def test_half_precision_emulated_through_the_python_layer(half, isa, emulated_runtime):
    """softjit.softmax on float16 / bfloat16 arrays with emulated kernels (a batch with rows the
    two-pass kernels leave for three-pass-recompute, threads, rows split in chunks): each
    result is the float32 result of the same emulated kernels on the widened input, rounded to
    nearest even."""
    if half == "float16":
        dtype = np.dtype(np.float16)
    else:
        dtype = np.dtype(pytest.importorskip(
            "ml_dtypes", reason="bfloat16 needs ml_dtypes (pip install softjit[bfloat16])"
        ).bfloat16)
    rng = rng_for("emulated-half", half, isa)
    batch = uniform(rng, (6, 257), 8.0).astype(dtype)
    batch[1, 5] = np.nan
    batch[2, :100] = -np.inf
    if half == "bfloat16":
        batch[3, 7] = 1e30  # beyond the two-pass clamp: recomputed with three passes
    long_row = uniform(rng, 3001, 8.0).astype(dtype)  # chunks of 512 (_split_small_rows)
    for algorithm in ("two-pass", "three-pass-recompute"):
        for x, threads in ((batch, 2), (long_row, 3)):
            y = softjit.softmax(x, algorithm=algorithm, isa=isa, threads=threads)
            wide = x.astype(np.float32)
            expected = softjit.softmax(wide, algorithm=algorithm, isa=isa, threads=threads)
            if algorithm == "two-pass" and x.ndim == 2:  # rows recomputed with three passes
                for r in (1, 2, 3):
                    expected[r] = softjit.softmax(wide[r], algorithm="three-pass-recompute",
                                                  isa=isa)
            rounded = expected.astype(dtype)
            nan = np.isnan(rounded.astype(np.float32))
            assert np.array_equal(nan, np.isnan(y.astype(np.float32)))
            assert np.array_equal(y.view(np.uint16)[~nan], rounded.view(np.uint16)[~nan]), \
                (half, isa, algorithm, x.shape)
