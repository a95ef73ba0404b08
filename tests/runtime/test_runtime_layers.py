"""The runtime's layers: bindings declare and call the kernels through the ABI module, dispatch
follows SOFTJIT_ISA without reading the environment per call, every memo lives in memo.py."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import softjit
from softjit.codegen import abi, variants
from softjit.runtime import bindings, cpu, dispatch, memo, rows

RUNTIME = Path(bindings.__file__).resolve().parent
HOST_ISAS = cpu.host_isas() if cpu.host_features() else ()


def needs_host():
    if not HOST_ISAS:
        pytest.skip("this host runs none of softjit's ISAs")
    return HOST_ISAS[0]


def test_bindings_use_the_abi_layouts():
    assert bindings.PASS_STATE_DTYPE == abi.PASS_STATE.numpy_dtype()
    assert bindings.PASS_STATE_DTYPE.itemsize == abi.PASS_STATE.size
    assert bindings.ROW_STRIDES_DTYPE == np.dtype(np.int64)
    assert bindings.STATUS_DTYPE == np.dtype(np.int32)
    assert int(bindings.SINGLE_ROW_MARKED[0]) == abi.ROW_MARKED


def test_the_loaded_driver_is_declared_from_its_signature():
    isa = needs_host()
    v = variants.REGISTRY.softmax("two-pass", isa)
    ffi, _ = bindings.load_library(v.name, bindings.assembly(v), bindings.module(v).cffi_cdef())
    driver_type = ffi.typeof(bindings.function(v, v.driver_symbol))
    assert driver_type.result.cname == abi.DRIVER_RETURNS
    assert [a.cname for a in driver_type.args] == [
        "void *" if p.is_pointer else p.ctype for p in abi.DRIVER_PARAMS]


def test_passes_leave_the_state_the_abi_describes():
    """Both sides read one structure: run the three-pass-reload passes on a row and read the
    state by field name."""
    isa = needs_host()
    x = np.linspace(-3, 5, 1001, dtype=np.float32)
    y = np.empty_like(x)
    state = np.zeros(1, bindings.PASS_STATE_DTYPE)
    passes = bindings.passes("three-pass-reload", isa)
    assert passes.run(0, x, y, state) == abi.PASS_OK
    assert state["max_or_exponent"][0] == np.float32(5.0)
    assert passes.run(1, x, y, state) == abi.PASS_OK
    total = float(np.exp(x.astype(np.float64) - 5.0).sum())
    assert math.isclose(float(state["sum"][0]), total, rel_tol=1e-6)
    assert math.isclose(float(state["scale"][0]), 1.0 / total, rel_tol=1e-6)


def test_two_pass_first_pass_asks_for_recomputation_by_its_abi_code():
    isa = needs_host()
    x = np.float32([1.0, np.nan, 2.0])
    state = np.zeros(1, bindings.PASS_STATE_DTYPE)
    assert bindings.passes("two-pass", isa).run(0, x, np.empty_like(x), state) == \
        abi.PASS_RECOMPUTE


def test_auto_table_has_one_entry_per_isa_of_the_isa_table():
    assert set(dispatch.AUTO_TABLE) == set(cpu.ISAS)
    for table in dispatch.AUTO_TABLE.values():
        assert table[-1][0] == math.inf


def test_softjit_isa_changes_take_effect_without_reading_the_environment(monkeypatch):
    """Setting or unsetting SOFTJIT_ISA empties the ISA memos (an audit hook on os.putenv and
    os.unsetenv), so the fast paths never read os.environ."""
    needs_host()
    monkeypatch.delenv(cpu.ISA_ENV_VARIABLE, raising=False)
    best = dispatch.resolve_isa("auto")
    assert memo.RESOLVED_ISA["auto"] == best
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    softjit.softmax(x)
    softjit.exp(x)
    assert dispatch.isa_setting() is None
    monkeypatch.setenv(cpu.ISA_ENV_VARIABLE, "avx2")
    assert dispatch.isa_setting() == "avx2"
    assert memo.RESOLVED_ISA == {} and memo.EXP_ENTRY_CALLS == {}
    assert memo.SOFTMAX_ENTRY_CALLS == {}
    assert dispatch.resolve_isa("auto") == "avx2"
    assert np.array_equal(softjit.softmax(x), softjit.softmax(x, isa="avx2"))
    assert np.array_equal(softjit.exp(x), softjit.exp(x, isa="avx2"))
    monkeypatch.delenv(cpu.ISA_ENV_VARIABLE)
    assert memo.RESOLVED_ISA == {} and dispatch.isa_setting() is None
    assert dispatch.resolve_isa("auto") == best


def test_the_runtime_reads_no_private_environment():
    for path in RUNTIME.glob("*.py"):
        assert '"_data"' not in path.read_text() and "environ._data" not in path.read_text(), \
            path.name


def test_forget_calls_empties_the_call_memos():
    isa = needs_host()
    strided = np.zeros(14, np.float32)[::2]  # not contiguous: the general path's row driver
    softjit.softmax(strided, isa=isa)
    assert memo.DRIVERS and memo.RESOLVED_ISA
    memo.forget_calls()
    assert not memo.DRIVERS and not memo.RESOLVED_ISA and not memo.SOFTMAX_ENTRY_CALLS
    y = softjit.softmax(strided, isa=isa)
    assert np.allclose(y, 1 / 7) and memo.DRIVERS


def test_pieces_cover_a_row_on_aligned_bounds():
    bounds = rows.pieces(1000, 3, align=64)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(a % 64 == 0 for a, _ in bounds)
    assert all(b == c for (_, b), (c, _) in zip(bounds, bounds[1:]))


def test_import_softjit_loads_neither_cffi_nor_the_generator():
    """bindings imports cffi and the code generator (jinja2) at first use: the generated entries
    serve the common calls without them."""
    import subprocess
    import sys

    code = ("import sys, softjit; "
            "print(sorted(m for m in ('cffi', 'jinja2', 'numpy.ma') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=str(Path(__file__).resolve().parent))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
