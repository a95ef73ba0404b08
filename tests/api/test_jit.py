"""softjit.jit: a builder becomes a numpy callable; arguments are checked; .assembly() and
.emulate() work on any host; the public softjit.codegen surface and its doctests."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import softjit
import softjit.codegen as codegen
from softjit import In, InOut, Out, Size
from softjit.codegen import AVX2, AVX512F, Exp, Function, Module, Signature, for_each_vector, render
from softjit.codegen.abi import VEXP_PARAMS
from softjit.codegen.variants import VExp
from softjit.runtime.errors import UnsupportedISAError

ARGS = [In("x", "float32", "n"), Out("y", "float32", "n"), Size("n")]


def scale_by(f, factor=2.0, unroll=2):
    x, y, n = f.args
    c = f.constant_register("factor", factor)

    def step(tile):
        vs = f.vecs("v", tile.count)
        for i, v in enumerate(vs):
            tile.load(v, x, i)
            f.vmulps(v, v, c)
            tile.store(y, i, v)
    for_each_vector(f, n, [x, y], unroll, step, "scale")
    f.ret()


def test_the_public_surface_documents_itself_with_running_examples():
    result = doctest.testmod(codegen)
    assert result.attempted >= 8 and result.failed == 0
    for name in codegen.__all__:
        assert getattr(codegen, name).__doc__ or name in ("TARGETS",), name


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 64, 1001])
def test_a_jit_kernel_runs_natively_and_in_the_emulator(n):
    k = softjit.jit(scale_by, args=ARGS, factor=3.0)
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    expected = x * np.float32(3.0)
    if softjit.host_isas():
        assert np.array_equal(k(x), expected)
    for isa in ("avx2", "avx512f"):
        assert np.array_equal(k.emulate(x, isa=isa), expected)


def test_outputs_can_be_passed_and_named_and_the_decorator_form_works():
    @softjit.jit(args=[InOut("x", "float32", "n"), Size("n")])
    def negate(f):
        x, n = f.args

        def step(tile):
            v = f.vec("v")
            tile.load(v, x, 0)
            f.vxorps(v, v, f.constant("sign", -0.0))
            tile.store(x, 0, v)
        for_each_vector(f, n, [x], 1, step, "neg")
        f.ret()
    x = np.arange(10, dtype=np.float32)
    assert negate.emulate(x=x, isa="avx2") is x and np.array_equal(x, -np.arange(10))
    k = softjit.jit(scale_by, args=ARGS)
    y = np.full(5, 7, np.float32)
    assert k.emulate(np.ones(5, np.float32), y=y, isa="avx512f") is y and (y == 2).all()


def test_bad_arguments_are_named():
    k = softjit.jit(scale_by, args=ARGS)
    x = np.ones(8, np.float32)
    with pytest.raises(TypeError, match="x has dtype float64.*float32"):
        k.emulate(x.astype(np.float64), isa="avx2")
    with pytest.raises(ValueError, match="not C-contiguous"):
        k.emulate(np.ones(16, np.float32)[::2], isa="avx2")
    with pytest.raises(ValueError, match="n = 4, but n = 8"):
        k.emulate(x, y=np.ones(4, np.float32), isa="avx2")
    ro = np.ones(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="y is read-only"):
        k.emulate(x, y=ro, isa="avx2")
    with pytest.raises(TypeError, match="missing array 'x'"):
        k.emulate(isa="avx2")
    with pytest.raises(TypeError, match="takes 2 arrays"):
        k.emulate(x, x, x, isa="avx2")
    with pytest.raises(ValueError, match="2 dimensions"):
        k.emulate(np.ones((2, 4), np.float32), isa="avx2")
    with pytest.raises(ValueError, match="unknown target ISA"):
        k.emulate(x, isa="sse2")


def test_bad_declarations_and_builders_are_refused():
    with pytest.raises(ValueError, match="not in any array's shape"):
        softjit.jit(scale_by, args=[In("x", "float32", "n"), Size("m")])
    with pytest.raises(ValueError, match="dtype complex64 is not supported"):
        In("x", "complex64")
    with pytest.raises(ValueError, match="must end with f.ret"):
        softjit.jit(lambda f: None, name="empty", args=ARGS).assembly("avx2")
    with pytest.raises(TypeError, match="kernel builder"):
        softjit.jit(42, args=ARGS)


def test_assembly_is_per_isa_and_parameters_specialise():
    k2, k3 = softjit.jit(scale_by, args=ARGS), softjit.jit(scale_by, args=ARGS, factor=3.0)
    assert "zmm" in k2.assembly("avx512f") and "zmm" not in k2.assembly("avx2")
    assert "0x40000000" in k2.assembly("avx2") and "0x40400000" in k3.assembly("avx2")
    assert k2.assembly("avx2") == softjit.jit(scale_by, args=ARGS).assembly("avx2")


def test_a_built_module_can_be_jitted():
    f = Function(Signature("scale_module", VEXP_PARAMS), AVX2)
    scale_by(f, 5.0)
    k = softjit.jit(Module("scale_module", AVX2, "y = 5x", (f,)), args=ARGS)
    x = np.arange(9, dtype=np.float32)
    assert np.array_equal(k.emulate(x), 5 * x)
    with pytest.raises(ValueError, match="cannot be rebuilt for avx512f"):
        k.emulate(x, isa="avx512f")


def test_an_isa_the_host_lacks_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("SOFTJIT_ISA", "avx2")
    k = softjit.jit(scale_by, args=ARGS, name="capped_scale")
    with pytest.raises(UnsupportedISAError, match="avx512f"):
        k(np.ones(3, np.float32), isa="avx512f")


@pytest.mark.parametrize("target", [AVX2, AVX512F], ids=lambda t: t.name)
def test_the_exp_block_is_the_vexp_kernel(target):
    """Exp emits the vexp kernel's arithmetic: on the same inputs the two agree bit for bit."""
    def exp_kernel(f):
        x, y, n = f.args
        exp = Exp(f)

        def step(tile):
            xs = f.vecs("x", tile.count)
            for i, v in enumerate(xs):
                tile.load(v, x, i)
            for i, v in enumerate(exp(xs)):
                tile.store(y, i, v)
        for_each_vector(f, n, [x, y], 2, step, "exp")
        f.ret()

    from softjit.codegen.emulator import Machine
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-110, 95, 3000), [np.nan, np.inf, -np.inf, 0.0, -0.0,
                                                       88.72, 88.73, -103.97, -87.5]])
    x = x.astype(np.float32)
    mine = softjit.jit(exp_kernel, args=ARGS).emulate(x, isa=target.name)
    variant = VExp(target.name, 2)
    machine = Machine(render(variant.build()))
    y = np.empty_like(x)
    a, b = machine.map(x, writable=False), machine.map(y)
    machine.call(variant.name, a, b, x.size)
    assert np.array_equal(mine.view(np.uint32), y.view(np.uint32))


def test_an_elementwise_kernel_is_called_through_the_generated_entry():
    """(In x float32 [n], Out y float32 [n], Size n) runs through the CPython entry softjit.exp
    uses; what the entry declines still reaches the kernel (or the error) through cffi."""
    from softjit.runtime import entries

    if not softjit.host_isas():
        pytest.skip("no ISA of softjit's runs natively here")
    k = softjit.jit(scale_by, args=ARGS, name="entry_scale", factor=4.0)
    x = np.arange(20, dtype=np.float32)
    assert np.array_equal(k(x), 4 * x)
    if entries.unavailable_reason() is None:
        assert k._entry(None) is not None
        y = np.empty(20, np.float32)
        assert k._entry(None)(x, y) == 0 and np.array_equal(y, 4 * x)
    else:
        assert k._entry(None) is None
    assert k(np.ones(0, np.float32)).shape == (0,)  # empty: declined by the entry, cffi runs it
    assert np.array_equal(k(x[::2].copy()), 4 * x[::2])
    with pytest.raises(TypeError, match="dtype float64"):
        k(x.astype(np.float64))
    with pytest.raises(ValueError, match="not C-contiguous"):
        k(x[::2])
    not_elementwise = softjit.jit(scale_by, name="named_scale",
                                  args=[In("x", "float32", "m"), Out("y", "float32", "m"),
                                        Size("m")])
    assert not_elementwise._elementwise  # the size's name does not matter
    inout = softjit.jit(scale_by, name="io", args=[In("x", "float32", "n"),
                                                   InOut("y", "float32", "n"), Size("n")])
    assert not inout._elementwise
