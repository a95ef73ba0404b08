"""LazyModule: a module imported at its first attribute access."""
from __future__ import annotations

import importlib


class LazyModule:
    """Stands for the module `name` and imports it when one of its attributes is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def __getattr__(self, attribute: str):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}>"
