"""What `import softjit` loads: the public functions and, where the entry module is built, the
builtins and the variant registry their first call reads; never the kernel generators, the
pipeline, cffi, the emulator or softjit.jit, which load when a call first needs them. (Import
time itself is measured, not asserted: README, "Per call".)"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Modules `import softjit` must not load (each is imported where it is first needed).
HEAVY = (
    "cffi",  # the general path's calls (runtime/bindings.py)
    "jinja2",  # rendering assembly (codegen/pipeline.py)
    "subprocess",  # the assembler and linker (runtime/toolchain.py)
    "concurrent.futures",  # threads= (runtime/rows.py)
    "softjit.runtime.bindings",
    "softjit.runtime.rows",
    "softjit.runtime.cache_build",
    "softjit.runtime.toolchain",
    "softjit.runtime.jit",
    "softjit.codegen.abi",
    "softjit.codegen.stream",
    "softjit.codegen.operands",
    "softjit.codegen.instructions",
    "softjit.codegen.pipeline",
    "softjit.codegen.entries",
    "softjit.codegen.public_entries",
    "softjit.codegen.kernels",
    "softjit.codegen.emulator",
)

_PROBE = """
import json, sys
import numpy
before = set(sys.modules)
import softjit
loaded = sorted(set(sys.modules) - before)
print(json.dumps({"loaded": loaded, "builtin": type(softjit.softmax).__name__}))
"""


def _import_in_child() -> dict:
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                            timeout=300, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def test_import_loads_no_generator_cffi_or_emulator():
    found = _import_in_child()
    # conftest.py built the entry module: the builtins are made at import, the fullest import
    assert found["builtin"] == "builtin_function_or_method", found["builtin"]
    heavy = [name for name in found["loaded"]
             if any(name == h or name.startswith(h + ".") for h in HEAVY)]
    assert heavy == [], f"import softjit loaded {heavy}"


def test_the_lazy_names_resolve():
    """softjit's and softjit.codegen's names that load at first use are all there."""
    import softjit
    import softjit.codegen as codegen

    for name in softjit.__all__:
        assert getattr(softjit, name) is not None, name
    assert callable(softjit.jit) and softjit.In is not None
    for name in codegen.__all__:
        assert getattr(codegen, name) is not None, name
    assert set(softjit.__all__) <= set(dir(softjit))
    assert set(codegen.__all__) <= set(dir(codegen))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = softjit.nonexistent
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = codegen.nonexistent
