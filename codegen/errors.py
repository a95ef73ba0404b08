"""Errors raised while generating code. Each names what was wrong and where it was emitted."""
from __future__ import annotations

import os
import sys

_CODEGEN_DIR = os.path.dirname(os.path.abspath(__file__))
_BUILDER_FILES = {os.path.join(_CODEGEN_DIR, f) for f in ("stream.py", "operands.py", "errors.py")}


class CodegenError(Exception):
    """Base class of every generation-time error."""


class TargetFeatureError(CodegenError):
    """An instruction or register that the target ISA does not have."""


class OperandError(CodegenError):
    """Operands that match no form of the instruction."""


class RegisterBudgetError(CodegenError):
    """More live registers than the target has."""


class UnknownVariantError(ValueError):
    """A kernel name, op, or (algorithm, ISA, store kind) the registry does not hold; the message
    lists what it does hold."""


def emission_site() -> str:
    """The first Python frame outside the builder: the line of kernel code that emitted an instruction."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename) in _BUILDER_FILES:
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    import linecache

    source = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}: {source}"
