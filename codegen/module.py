"""Module: what one registered variant builds, assembles into one .S file and one shared object:
its functions, and (for the CPython entry points) the method-definition records it exports."""
from __future__ import annotations

from dataclasses import dataclass

from softjit.codegen.isa import Target


@dataclass(frozen=True)
class MethodRecord:
    """A CPython method-definition record (PyMethodDef) in the module's data: `symbol` is the
    exported record, `function` the module's function it points at, `python_name` and `doc` the
    callable's __name__ and __doc__."""

    symbol: str
    function: str
    python_name: str
    flags: int
    doc: str

    def c_declaration(self) -> str:
        from softjit.codegen.cpython_abi import METHOD_DEF_SIZE

        return f"extern char {self.symbol}[{METHOD_DEF_SIZE}];"


@dataclass(frozen=True)
class Module:
    """What assembles into one .S file and one shared object: named Functions for one Target.
    render(module) gives its GNU assembler text; softjit.jit(module, args=...) loads it."""

    name: str
    target: Target
    description: str
    functions: tuple  # of stream.Function, built
    records: tuple = ()  # of MethodRecord

    @property
    def imports(self) -> tuple:
        """The symbols of the host process the module needs resolved at load time."""
        used = set()
        for f in self.functions:
            used |= f.imports
        return tuple(sorted(used))

    @property
    def signatures(self) -> tuple:
        return tuple(f.signature for f in self.functions)

    @property
    def features(self) -> tuple:
        used = set()
        for f in self.functions:
            used |= f.features_used
        return tuple(sorted(used))

    def cdef(self) -> str:
        """The C declarations with their real types (as in generated/kernels.h)."""
        return "\n".join([s.c_declaration() for s in self.signatures]
                         + [r.c_declaration() for r in self.records])

    def cffi_cdef(self) -> str:
        """The declarations the runtime gives cffi (pointers as void*, see abi.Signature)."""
        return "\n".join([s.cffi_declaration() for s in self.signatures]
                         + [r.c_declaration() for r in self.records])
