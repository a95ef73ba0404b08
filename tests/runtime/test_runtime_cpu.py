"""Host ISA detection: /proc/cpuinfo parsing, the SOFTJIT_ISA cap and resolve_isa's errors.

Features are substituted through monkeypatch so every case runs on AVX2-only and AVX-512 hosts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from softjit.runtime import cpu
from softjit.runtime.errors import SoftjitError, UnsupportedISAError, UnsupportedPlatformError

AVX512_HOST = frozenset({"avx", "avx2", "fma", "avx512f", "avx512vl", "avx512dq", "avx512bw"})
AVX2_HOST = frozenset({"avx", "avx2", "fma"})


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch):
    def pretend(features: frozenset[str]) -> None:
        monkeypatch.setattr(cpu, "host_features", lambda: features)

    return pretend


@pytest.fixture
def fake_cpuinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point the /proc/cpuinfo reader at a file with the given flags line."""

    def write(flags: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(
            "processor\t: 0\nvendor_id\t: GenuineIntel\n"
            f"flags\t\t: {flags}\nbugs\t\t: spectre_v1\n\n"
            f"processor\t: 1\nflags\t\t: {flags}\n"
        )
        monkeypatch.setattr(cpu, "_CPUINFO_PATH", str(path))
        cpu._cpuinfo_flags.cache_clear()

    yield write
    cpu._cpuinfo_flags.cache_clear()


def test_real_host_features_are_known_names_and_read_once() -> None:
    cpu._cpuinfo_flags.cache_clear()
    first = cpu.host_features()
    second = cpu.host_features()
    assert first == second
    assert first <= cpu.KNOWN_FEATURES
    assert cpu._cpuinfo_flags.cache_info().misses == 1
    assert set(cpu.host_isas()) <= set(cpu.ISAS)


def test_cpuinfo_flags_are_parsed(fake_cpuinfo) -> None:
    fake_cpuinfo("fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni")
    assert cpu.host_features() == AVX512_HOST
    assert cpu.host_isas() == ("avx512f", "avx2")


def test_cpuinfo_without_avx2_offers_nothing(fake_cpuinfo) -> None:
    fake_cpuinfo("fpu sse sse2 sse4_2 avx")
    assert cpu.host_features() == {"avx"}
    assert cpu.host_isas() == ()
    with pytest.raises(UnsupportedISAError, match="none of softjit's ISAs"):
        cpu.resolve_isa("auto")


def test_avx512_host_offers_both_best_first(host) -> None:
    host(AVX512_HOST)
    assert cpu.host_isas() == ("avx512f", "avx2")
    assert cpu.resolve_isa("auto") == "avx512f"
    assert cpu.resolve_isa("avx2") == "avx2"


def test_avx512_needs_every_subset(host) -> None:
    host(AVX512_HOST - {"avx512bw"})
    assert cpu.host_isas() == ("avx2",)


def test_avx2_needs_fma(host) -> None:
    host(frozenset({"avx", "avx2"}))
    assert cpu.host_isas() == ()


def test_isa_cap_limits_an_avx512_host(host, monkeypatch: pytest.MonkeyPatch) -> None:
    host(AVX512_HOST)
    monkeypatch.setenv("SOFTJIT_ISA", "avx2")
    assert cpu.host_isas() == ("avx2",)
    assert cpu.resolve_isa("auto") == "avx2"
    with pytest.raises(UnsupportedISAError) as raised:
        cpu.resolve_isa("avx512f")
    message = str(raised.value)
    assert "'avx512f'" in message and "avx2" in message and "SOFTJIT_ISA=avx2" in message


@pytest.mark.parametrize("value", ["AVX512F", " avx512f ", "auto", ""])
def test_isa_cap_spellings_that_leave_avx512(host, monkeypatch: pytest.MonkeyPatch, value) -> None:
    host(AVX512_HOST)
    monkeypatch.setenv("SOFTJIT_ISA", value)
    assert cpu.host_isas() == ("avx512f", "avx2")


def test_unknown_isa_cap_is_a_value_error(host, monkeypatch: pytest.MonkeyPatch) -> None:
    host(AVX2_HOST)
    monkeypatch.setenv("SOFTJIT_ISA", "sse4")
    with pytest.raises(ValueError, match="SOFTJIT_ISA='sse4'.*avx512f, avx2"):
        cpu.host_isas()


def test_avx2_host_lacks_avx512(host) -> None:
    host(AVX2_HOST)
    assert cpu.host_isas() == ("avx2",)
    with pytest.raises(UnsupportedISAError) as raised:
        cpu.resolve_isa("avx512f")
    assert isinstance(raised.value, SoftjitError)
    assert "'avx512f'" in str(raised.value) and "available: avx2" in str(raised.value)
    assert "SOFTJIT_ISA" not in str(raised.value)


def test_unknown_isa_name_lists_valid_ones(host) -> None:
    host(AVX2_HOST)
    with pytest.raises(ValueError, match="'avx3' is not one of auto, avx512f, avx2"):
        cpu.resolve_isa("avx3")


def test_resolve_auto_on_this_host() -> None:
    isas = cpu.host_isas()
    if not isas:
        pytest.skip("this host has no AVX2+FMA")
    assert cpu.resolve_isa() == isas[0]


@pytest.mark.parametrize(("system", "machine"), [("Darwin", "x86_64"), ("Linux", "aarch64")])
def test_other_platforms_are_refused(monkeypatch: pytest.MonkeyPatch, system, machine) -> None:
    monkeypatch.setattr(cpu.platform, "system", lambda: system)
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    with pytest.raises(UnsupportedPlatformError, match=f"{system} {machine}"):
        cpu.check_platform()
    with pytest.raises(UnsupportedPlatformError):
        cpu.host_features()


def test_this_platform_is_accepted() -> None:
    cpu.check_platform()
