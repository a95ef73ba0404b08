"""load_library: a cffi view of a kernel module, loaded once per process even under threads."""

from __future__ import annotations

import threading

import pytest

from softjit.runtime import bindings, cpu
from softjit.runtime.errors import UnsupportedPlatformError

ADD_CDEF = "int softjit_test_add(int a, int b);"


def test_load_and_call(make_add_asm) -> None:
    ffi, lib = bindings.load_library("adder", make_add_asm(100), ADD_CDEF)
    assert lib.softjit_test_add(2, 3) == 105
    assert lib.softjit_test_add(-7, 0) == 93
    assert ffi.typeof(lib.softjit_test_add).cname == "int(*)(int, int)"


def test_second_load_is_memoised(make_add_asm) -> None:
    asm = make_add_asm()
    first = bindings.load_library("adder", asm, ADD_CDEF)
    assert bindings.load_library("adder", asm, ADD_CDEF) is first
    other = bindings.load_library("adder", make_add_asm(), ADD_CDEF)
    assert other is not first


def test_concurrent_first_loads_load_once(make_add_asm, monkeypatch) -> None:
    calls = []
    real_verified_object = bindings.verified_object

    def counting_verified_object(name, asm_text):
        calls.append(name)
        return real_verified_object(name, asm_text)

    monkeypatch.setattr(bindings, "verified_object", counting_verified_object)
    asm = make_add_asm(1)
    barrier = threading.Barrier(16)
    results = [None] * 16

    def load(index: int) -> None:
        barrier.wait()
        results[index] = bindings.load_library("adder", asm, ADD_CDEF)

    threads = [threading.Thread(target=load, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["adder"]
    assert all(result is results[0] for result in results)
    assert results[0][1].softjit_test_add(1, 1) == 3


def test_other_platforms_are_refused_before_loading(make_add_asm, monkeypatch) -> None:
    monkeypatch.setattr(cpu.platform, "machine", lambda: "aarch64")
    with pytest.raises(UnsupportedPlatformError):
        bindings.load_library("adder", make_add_asm(), ADD_CDEF)
