"""Lazy package attributes: a package's public names imported from their modules on first use.

A package that re-exports names of heavy modules (jax, flax) would import them with the package;
``lazy_exports`` gives it a module ``__getattr__`` (PEP 562) that imports a name's module only when
the name is first read, so ``import simplefold`` and the CLI's ``--help`` stay fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, public: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose names ``public`` maps to their modules."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name in public:
            return getattr(importlib.import_module(public[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(public))

    return __getattr__, __dir__
