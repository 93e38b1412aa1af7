"""Lazy package exports: a package lists ``{name: submodule}`` and its names load on first use,
so importing the package (e.g. for ``editrt --help``) does not import torch, onnx or tritonclient."""

from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` for ``package`` resolving ``name`` from ``.<table[name]>``."""

    def __getattr__(name: str):
        if name in table:
            return getattr(importlib.import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
