"""Instruction handlers by family; importing this package fills HANDLERS (handlers/table.py).

A handler(decoder, instruction) checks the operands once and returns the closure that
executes the instruction (decode.py says what a closure returns).
"""
from softjit.codegen.emulator.handlers import (  # noqa: F401 - each registers its mnemonics
    approximate, compare_mask, control, convert, float_arith, gather, general, integer, moves,
    shuffles, words)
from softjit.codegen.emulator.handlers.table import HANDLERS

SUPPORTED_MNEMONICS = frozenset(HANDLERS)

__all__ = ["HANDLERS", "SUPPORTED_MNEMONICS"]
