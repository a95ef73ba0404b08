"""The facts with one owner: the ABI module, the ISA table, the registry, the pipeline, and the
message a checkout that is not installed gives."""
from __future__ import annotations

import dataclasses
import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from softjit.codegen import abi, isa, pipeline, stream, variants
from softjit.codegen.errors import TargetFeatureError, UnknownVariantError
from softjit.codegen.kernels import pass_emitter
from softjit.runtime import cpu

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- ABI
def test_pass_state_layout_is_one_structure_for_both_sides():
    dtype = abi.PASS_STATE.numpy_dtype()
    assert dtype.itemsize == abi.PASS_STATE.size == 16
    assert dtype.names == abi.PASS_STATE.names
    for field in abi.PASS_STATE.fields:
        assert dtype.fields[field.name][1] == field.offset
        assert dtype.fields[field.name][0] == np.dtype(np.float32)
    # the generators address the state through the same offsets
    assert pass_emitter.STATE_MAX_OR_EXPONENT == abi.PASS_STATE.offset("max_or_exponent") == 0
    assert pass_emitter.STATE_SCALE == abi.PASS_STATE.offset("scale") == 4
    assert pass_emitter.STATE_SUM == abi.PASS_STATE.offset("sum") == 8
    with pytest.raises(KeyError, match="no field 'total'.*max_or_exponent, scale, sum"):
        abi.PASS_STATE.offset("total")


def test_pass_state_offsets_are_what_the_emitted_passes_read():
    """The scale pass reads 1/sum at PASS_STATE's "scale" offset from the state argument."""
    v = variants.REGISTRY.softmax("three-pass-reload", "avx2")
    text = pipeline.render_module(v.build())
    scale_pass = text[text.index(f"{v.passes[2].symbol}:"):]
    offset = abi.PASS_STATE.offset("scale")
    assert re.search(rf"vbroadcastss ymm\d+, DWORD PTR \[rcx \+ {offset}\]", scale_pass)


def test_drivers_and_passes_take_their_arguments_from_the_sysv_table():
    v = variants.REGISTRY.softmax("two-pass", "avx2")
    module = v.build()
    # the passes, the row driver, then two-pass's batch drivers of the first and output pass
    assert [f.signature.params for f in module.functions] == [abi.PASS_PARAMS] * 2 + [
        abi.DRIVER_PARAMS, abi.REDUCE_DRIVER_PARAMS, abi.APPLY_DRIVER_PARAMS]
    driver = module.functions[2]
    assert driver.signature.name == v.driver_symbol
    assert [a.pin for a in driver.args] == [
        stream.GP64.index(r) for r in abi.SYSV_ARGS[:len(abi.DRIVER_PARAMS)]]
    text = pipeline.render_module(module)
    for register in abi.SYSV_ARGS[:3]:
        assert re.search(rf"mov {register}, r(bx|bp|1[2-5])", text), register
    assert f"lea {abi.SYSV_ARGS[3]}, [rsp" in text


def test_cffi_declarations_come_from_the_param_types():
    sig = abi.driver_signature("f", "doc")
    assert sig.c_declaration() == ("size_t f(const float* x, float* y, size_t n, size_t rows, "
                                   "const int64_t* row_strides, int32_t* status);")
    assert sig.cffi_declaration() == ("size_t f(void* x, void* y, size_t n, size_t rows, "
                                      "void* row_strides, void* status);")
    module = variants.REGISTRY.for_op("vexp", "avx2").build()
    assert module.cffi_cdef() == "void f32_vexp__avx2_rr2_p5_u32(void* x, void* y, size_t n);"


def test_register_pin_is_a_field_not_an_attribute_added_later():
    fields = {f.name for f in dataclasses.fields(stream.Register)}
    assert "pin" in fields
    f = stream.Function(abi.Signature("g", abi.VEXP_PARAMS), isa.AVX2)
    assert f.vec("v").pin is None and f.args[0].pin == stream.GP64.index("rdi")


# ---------------------------------------------------------------------------- ISA table
def test_capabilities_are_named_on_the_targets():
    assert not isa.AVX2.has_masks and not isa.AVX2.has_scalef
    assert not isa.AVX2.has_embedded_broadcast
    assert isa.AVX512F.has_masks and isa.AVX512F.has_scalef
    assert isa.AVX512F.has_embedded_broadcast
    assert (isa.AVX2.vector_bits, isa.AVX512F.vector_bits) == (256, 512)


def test_a_capability_drives_the_code_not_the_vector_width():
    """A made-up 256-bit target with masks, scalef and broadcasts generates the AVX-512 style of
    code at 256 bits: the generators ask for capabilities by name."""
    hybrid = dataclasses.replace(isa.AVX512F, name="avx512vl_256", vector_bits=256)
    f = stream.Function(abi.Signature("g", abi.VEXP_PARAMS), hybrid)
    assert f.constant("c", 1.0).broadcast
    f.mask("k")  # has_masks
    with pytest.raises(TargetFeatureError, match=r"needs write masks \(targets with them: avx512f\); target avx2 has none"):
        stream.Function(abi.Signature("g", abi.VEXP_PARAMS), isa.AVX2).mask("k")


def test_runtime_isa_facts_derive_from_the_isa_table():
    assert cpu.ISAS == isa.ISA_NAMES == ("avx512f", "avx2")  # best first
    assert cpu.ISA_REQUIREMENTS == {t.name: t.features for t in isa.TARGETS}
    assert cpu.KNOWN_FEATURES == isa.KNOWN_FEATURES
    with pytest.raises(ValueError, match="unknown target ISA 'sse2'; valid targets: avx512f, avx2"):
        isa.get_target("sse2")


# ---------------------------------------------------------------------------- registry
def test_every_variant_follows_the_protocol():
    for v in variants.REGISTRY:
        assert isinstance(v, variants.Variant)
        module = v.build() if v.op in ("vexp", "rmax") else None
        assert v.target is isa.get_target(v.isa) and v.description
        if module is not None:
            assert module.name == v.name and module.description == v.description
    assert len(set(variants.REGISTRY.names)) == len(variants.REGISTRY) == len(variants.VARIANTS)


def test_lookup_by_name_op_and_algorithm():
    r = variants.REGISTRY
    v = r.for_op("vexp", "avx512f")
    assert r.named(v.name) is v and r.pick(v.name, "auto") is v and r.pick("vexp", "avx512f") is v
    s = r.softmax("two-pass", "avx2", nontemporal=True)
    assert s.nontemporal and s.algorithm == "two-pass" and s.name.endswith("_nt")
    assert r.softmax_or_plain("three-pass-reload", "avx2", True) is r.softmax(
        "three-pass-reload", "avx2")
    assert [p.name for p in variants.probes("avx2")] == [
        v.name for v in r if v.op.startswith("stream_") and v.isa == "avx2"]


@pytest.mark.parametrize("lookup, message", [
    (lambda r: r.named("f32_nope"), r"unknown kernel 'f32_nope'; registered kernels: bf16_.*f32_"),
    (lambda r: r.for_op("vlog", "avx2"), r"unknown kernel op 'vlog'; valid ops: log_softmax, rmax, softmax"),
    (lambda r: r.for_op("vexp", "sse2"), r"no vexp kernel registered for 'sse2'; ISAs with one: "
                                         r"avx512f, avx2"),
    (lambda r: r.softmax("one-pass", "avx2"), r"unknown softmax algorithm 'one-pass'; valid: "
                                              r"two-pass, three-pass-reload"),
    (lambda r: r.softmax("three-pass-reload", "avx2", True),
     r"no three-pass-reload softmax registered for 'avx2' with non-temporal stores"),
    (lambda r: r.pick("f32_vexp__avx2_rr2_p5_u32", "avx512f"), r"is an avx2 kernel, not avx512f"),
    (lambda r: r.pick("nope", "avx2"), r"give an op name \(log_softmax, rmax, softmax, stream_copy"),
])
def test_lookup_errors_say_what_is_registered(lookup, message):
    with pytest.raises(UnknownVariantError, match=message) as raised:
        lookup(variants.REGISTRY)
    assert isinstance(raised.value, ValueError)


def test_softmax_name_is_built_from_its_parameters():
    s = variants.Softmax("two-pass", "avx2", 4, 1, 4)
    assert s.name == "f32_softmax_twopass__avx2_raddextexp_u32_acc1_b2048_vscaleextexp_u32"
    assert [p.symbol for p in s.passes] == ["f32_raddextexp__avx2_rr2_p5_u32_acc1_b2048",
                                            "f32_vscaleextexp__avx2_rr2_p5_u32"]
    r = variants.Softmax("three-pass-recompute", "avx512f", 8, 2, 4, interleave=2,
                         nontemporal=True)
    assert r.name == ("f32_softmax_threepassrecompute__avx512f_rmax_u64_acc2_"
                      "raddexpminusmax_u128_acc2_b2048_i2_vscaleexpminusmax_u64_i2_nt")
    assert r.passes[0].symbol == "f32_rmax_pass__avx512f_u64_acc2"


def test_registry_refuses_duplicates_and_strangers():
    v = variants.VExp("avx2", 4)
    with pytest.raises(ValueError, match="two registered variants are named"):
        variants.Registry((v, variants.VExp("avx2", 4)))
    with pytest.raises(TypeError, match="does not follow the Variant protocol"):
        variants.Registry((v, object()))


# ---------------------------------------------------------------------------- pipeline, docs
def test_pipeline_runs_the_passes_in_one_visible_function():
    f = variants.REGISTRY.for_op("rmax", "avx2").build().functions[0]
    compiled = pipeline.compile_function(f)
    assert compiled.function is f and compiled.frame.vzeroupper
    assert all(uid in compiled.assignment for uid in {
        view.reg.uid for item in f.items if isinstance(item, stream.Instr)
        for view in item.operand_views() if view.reg.fixed is None})


def test_stream_docstring_example_runs():
    result = doctest.testmod(stream, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


def test_code_points_inside_the_repository():
    """No file of the package cites the design notes outside the repository."""
    offenders = [str(p.relative_to(REPO)) for folder in ("codegen", "runtime", "bench", "softjit")
                 for p in (REPO / folder).rglob("*.py") if "ALGORITHMS.md" in p.read_text()]
    assert offenders == []
    assert (REPO / "docs" / "algorithms.md").is_file()
    assert (REPO / "docs" / "architecture.md").is_file()


def test_no_relative_imports():
    pattern = re.compile(r"^\s*from \.+\w* import", re.M)
    offenders = [str(p.relative_to(REPO)) for folder in ("codegen", "runtime", "bench", "softjit")
                 for p in (REPO / folder).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_an_uninstalled_checkout_says_to_install():
    """From the repository root, without the install's finder (python -S drops site-packages
    and with them the editable install), `import softjit` ends in an ImportError that says what
    to run."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-S", "-c", "import softjit"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: softjit is not installed"), result.stderr
    assert "python -m pip install -e ." in last
