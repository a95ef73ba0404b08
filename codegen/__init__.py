"""softjit.codegen: write x86-64 AVX2 / AVX-512 kernels in Python, as explicit instruction streams.

This module is the public, stable surface; every other module of softjit.codegen is private and
may change. A kernel is a Function: a C signature, a target ISA, and instructions emitted as
method calls, each checked against the instruction table and the target when its Python line
runs. Registers are virtual (allocated later, within the target's budget); loops and tails come
from for_each_vector; Exp and the reductions are ready-made stages.

>>> from softjit.codegen import AVX2, Function, Param, Signature, for_each_vector, render
>>> sig = Signature("twice", (Param("const float*", "x"), Param("float*", "y"),
...                           Param("size_t", "n")))
>>> f = Function(sig, AVX2)
>>> x, y, n = f.args
>>> def step(tile):                       # one step of the loop: tile.count vectors
...     vs = f.vecs("v", tile.count)
...     for i, v in enumerate(vs):
...         tile.load(v, x, i)
...     for v in vs:
...         _ = f.vaddps(v, v, v)         # y = x + x
...     for i, v in enumerate(vs):
...         tile.store(y, i, v)
>>> for_each_vector(f, n, [x, y], 2, step, "twice")   # 2 vectors a step, then 1, then a tail
>>> _ = f.ret()
>>> text = render(Module("twice", AVX2, "y = 2x", (f,)))
>>> [line.strip() for line in text.splitlines() if "vaddps" in line][:1]
['vaddps ymm0, ymm0, ymm0']

Instructions the target lacks fail where they are written:

>>> f.vscalefps(f.vec("a"), f.vec("b"), f.vec("c"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
softjit.codegen.errors.TargetFeatureError: vscalefps needs avx512f, avx512vl (for an EVEX-only instruction); target avx2 lacks it
  emitted at ...: f.vscalefps(f.vec("a"), f.vec("b"), f.vec("c"))  # doctest: +ELLIPSIS

To run a kernel, hand its builder to softjit.jit (a numpy callable with .assembly() and
.emulate()); docs/kernels.md is the tutorial.
"""
import importlib

# Every name loads its module at first use (PEP 562), so that importing a module of
# softjit.codegen (as `import softjit` does for the entry layouts) runs none of the generator,
# the registry or the pipeline: name -> (module, attribute).
_AT_FIRST_USE = {
    "Param": ("softjit.codegen.abi", "Param"),
    "Signature": ("softjit.codegen.abi", "Signature"),
    "CodegenError": ("softjit.codegen.errors", "CodegenError"),
    "OperandError": ("softjit.codegen.errors", "OperandError"),
    "RegisterBudgetError": ("softjit.codegen.errors", "RegisterBudgetError"),
    "TargetFeatureError": ("softjit.codegen.errors", "TargetFeatureError"),
    "AVX2": ("softjit.codegen.isa", "AVX2"),
    "AVX512F": ("softjit.codegen.isa", "AVX512F"),
    "TARGETS": ("softjit.codegen.isa", "TARGETS"),
    "Target": ("softjit.codegen.isa", "Target"),
    "get_target": ("softjit.codegen.isa", "get_target"),
    "Module": ("softjit.codegen.module", "Module"),
    "Label": ("softjit.codegen.operands", "Label"),
    "Masked": ("softjit.codegen.operands", "Masked"),
    "Mem": ("softjit.codegen.operands", "Mem"),
    "Register": ("softjit.codegen.operands", "Register"),
    "ptr": ("softjit.codegen.operands", "ptr"),
    "Function": ("softjit.codegen.stream", "Function"),
    "REGISTRY": ("softjit.codegen.variants", "REGISTRY"),
    "UserVariant": ("softjit.codegen.variants", "UserVariant"),
    "register": ("softjit.codegen.variants", "register"),
    "Exp": ("softjit.codegen.blocks", "Exp"),
    "combine": ("softjit.codegen.blocks", "combine"),
    "reduce_lanes": ("softjit.codegen.blocks", "reduce_lanes"),
    "Tile": ("softjit.codegen.kernels.loops", "Tile"),
    "for_each_vector": ("softjit.codegen.kernels.loops", "for_each_vector"),
    "render": ("softjit.codegen.pipeline", "render_module"),
}


def __getattr__(name: str):
    found = _AT_FIRST_USE.get(name)
    if found is None:
        raise AttributeError(f"module 'softjit.codegen' has no attribute {name!r}")
    value = getattr(importlib.import_module(found[0]), found[1])
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_AT_FIRST_USE))


def load_plugins() -> tuple:
    """Register the variants of installed packages' "softjit.variants" entry points (the CLI
    does this before asm --list, generate and build); returns the names it registered."""
    from softjit.codegen.variants import REGISTRY

    return REGISTRY.load_plugins()


__all__ = [
    # targets
    "Target", "AVX2", "AVX512F", "TARGETS", "get_target",
    # functions and their operands
    "Signature", "Param", "Function", "Register", "Mem", "Masked", "Label", "ptr",
    # loops, stages
    "for_each_vector", "Tile", "Exp", "combine", "reduce_lanes",
    # modules and the pipeline
    "Module", "render",
    # the registry: user variants in asm --list, generate, build and the prebuilt manifest
    "register", "UserVariant", "load_plugins",
    # errors
    "CodegenError", "TargetFeatureError", "OperandError", "RegisterBudgetError",
]
