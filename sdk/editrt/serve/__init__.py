"""editrt behind NVIDIA Triton Inference Server (PyTriton): :class:`EditServer`, the wire
format (:mod:`editrt.serve.protocol`) and ``editrt export --triton-repo`` (:mod:`.triton_repo`).

Needs the ``serve`` extra: ``pip install 'editrt[serve]'`` (nvidia-pytriton, tritonclient).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

# Loaded on first use, so `editrt --help` (which imports editrt.serve.cli) does not import torch.
_LAZY = {"ModelSource": "loading", "EditServer": "server", "ServeOptions": "server", "DEFAULT_HOST": "server"}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = ["EditServer", "ServeOptions", "ModelSource", "DEFAULT_HOST"]
