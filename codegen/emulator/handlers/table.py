"""The handler table: mnemonic -> handler(decoder, instruction) -> closure.

Each family module registers its mnemonics with @handles on import; handlers/__init__.py
imports them all. The text parser accepts exactly the table's mnemonics.
"""
from __future__ import annotations

HANDLERS: dict = {}


def handles(*mnemonics):
    def register(handler):
        for m in mnemonics:
            if m in HANDLERS:
                raise AssertionError(f"{m} has two handlers")
            HANDLERS[m] = handler
        return handler
    return register
