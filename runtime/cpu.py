"""The host CPU's instruction sets, read from Linux's /proc/cpuinfo (no C compiler needed).

The kernel lists a feature in /proc/cpuinfo only when the OS has also enabled its register state in
XCR0, so a flag seen here is one user code can actually execute.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

from softjit.codegen.isa import ISA_NAMES, KNOWN_FEATURES, TARGETS
from softjit.runtime.errors import UnsupportedISAError, UnsupportedPlatformError

ISA_ENV_VARIABLE = "SOFTJIT_ISA"

#: The ISAs softjit generates code for, best first (codegen/isa.py owns the list).
ISAS: tuple[str, ...] = ISA_NAMES

#: The CPU features each ISA's kernels may use; all must be present (the targets' features).
ISA_REQUIREMENTS: dict[str, frozenset[str]] = {t.name: t.features for t in TARGETS}

_CPUINFO_PATH = "/proc/cpuinfo"


def check_platform() -> None:
    """Raise UnsupportedPlatformError unless this is 64-bit Python on Linux x86-64."""
    system, machine = platform.system(), platform.machine()
    if system != "Linux" or machine.lower() not in ("x86_64", "amd64"):
        raise UnsupportedPlatformError(system, machine)
    # A 32-bit interpreter on a 64-bit kernel still reports machine x86_64.
    if sys.maxsize <= 2**32:
        raise UnsupportedPlatformError(system, machine, "this Python is 32-bit")


def _cpuinfo_value(key: str) -> str:
    """The value of the first `key` line of /proc/cpuinfo ("" when there is none)."""
    with open(_CPUINFO_PATH, encoding="ascii", errors="replace") as cpuinfo:
        for line in cpuinfo:
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    return ""


@functools.lru_cache(maxsize=1)
def _cpuinfo_flags() -> frozenset[str]:
    """The first "flags" line of /proc/cpuinfo (every core of a host reports the same set)."""
    return frozenset(_cpuinfo_value("flags").split())


def cpu_model() -> str:
    """The CPU's "model name" from /proc/cpuinfo, e.g. "AMD EPYC 7B13" ("" when not listed)."""
    check_platform()
    return _cpuinfo_value("model name")


def host_features() -> frozenset[str]:
    """The features softjit cares about that this host supports, e.g. {"avx", "avx2", "fma"}."""
    check_platform()
    return _cpuinfo_flags() & KNOWN_FEATURES


def isa_cap() -> str | None:
    """The ISA named by SOFTJIT_ISA (None when unset or "auto"); ValueError for an unknown name."""
    value = os.environ.get(ISA_ENV_VARIABLE, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value not in ISAS:
        raise ValueError(
            f"{ISA_ENV_VARIABLE}={value!r} is not an ISA softjit knows; "
            f"use one of {', '.join(ISAS)} (or auto / unset for no cap)"
        )
    return value


def host_isas() -> tuple[str, ...]:
    """The ISAs this host runs, best first, with those above SOFTJIT_ISA left out."""
    features = host_features()
    supported = [isa for isa in ISAS if ISA_REQUIREMENTS[isa] <= features]
    cap = isa_cap()
    if cap is not None:
        # ISAS is ordered best first, so everything before the cap is above it.
        supported = [isa for isa in supported if ISAS.index(isa) >= ISAS.index(cap)]
    return tuple(supported)


def resolve_isa(isa: str = "auto") -> str:
    """Turn a user's isa argument into a concrete ISA this host runs.

    "auto" gives the best host ISA. A known ISA is returned when the host supports it (after the
    SOFTJIT_ISA cap); otherwise UnsupportedISAError. An unknown name raises ValueError, anything
    but a string TypeError.
    """
    valid = ("auto", *ISAS)
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a string, one of {', '.join(valid)}; got {isa!r}")
    if isa not in valid:
        raise ValueError(f"isa={isa!r} is not one of {', '.join(valid)}")
    available = host_isas()
    if isa == "auto":
        if not available:
            raise UnsupportedISAError(isa, available, isa_cap())
        return available[0]
    if isa not in available:
        raise UnsupportedISAError(isa, available, isa_cap())
    return isa
