"""The generation pipeline, in one place:

    variant.build()            the kernel code runs: a Module of Functions (instruction streams)
    compile_function(f)        the passes: register allocation, the encodability check, the frame
    emit.render_assembly(...)  GNU assembler text through the templates

`render_module` and `variant_assembly` run the whole line; nothing happens as a side effect of
constructing a renderer. Generation is deterministic: the same variant gives the same bytes on
every machine.
"""
from __future__ import annotations

from dataclasses import dataclass

from softjit.codegen import emit
from softjit.codegen.module import Module
from softjit.codegen.passes.frame import Frame, plan_frame
from softjit.codegen.passes.regalloc import allocate
from softjit.codegen.passes.validate import check_encodable
from softjit.codegen.stream import Function


@dataclass(frozen=True)
class CompiledFunction:
    """A Function after the passes: physical registers chosen, frame planned."""

    function: Function
    assignment: dict  # virtual register uid -> physical register number
    frame: Frame


def compile_function(f: Function) -> CompiledFunction:
    """allocate -> validate -> frame, in that order (each pass needs the one before)."""
    assignment = allocate(f)
    check_encodable(f, assignment)
    return CompiledFunction(f, assignment, plan_frame(f, assignment))


def render_module(module: Module) -> str:
    """The module's assembly text: every function through the passes, then rendered."""
    return emit.render_assembly(module, [compile_function(f) for f in module.functions])


def variant_assembly(variant) -> str:
    """build -> passes -> render for one registered variant."""
    return render_module(variant.build())


def render_header(modules) -> str:
    """generated/kernels.h: the C declarations of every module."""
    return emit.render_header(modules)
