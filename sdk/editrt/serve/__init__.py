"""editrt behind NVIDIA Triton Inference Server (PyTriton): :class:`EditServer`, the wire
format (:mod:`editrt.serve.protocol`) and ``editrt export --triton-repo`` (:mod:`.triton_repo`).

Needs the ``serve`` extra: ``pip install 'editrt[serve]'`` (nvidia-pytriton, tritonclient).
"""

from __future__ import annotations

import importlib

# Loaded on first use, so `editrt --help` (which imports editrt.serve.cli) does not import torch.
_LAZY = {"ModelSource": "loading", "EditServer": "server", "ServeOptions": "server", "DEFAULT_HOST": "server"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EditServer", "ServeOptions", "ModelSource", "DEFAULT_HOST"]
