"""editrt behind NVIDIA Triton Inference Server (PyTriton): :class:`EditServer`, the wire
format (:mod:`editrt.serve.protocol`) and ``editrt export --triton-repo`` (:mod:`.triton_repo`).

Needs the ``serve`` extra: ``pip install 'editrt[serve]'`` (nvidia-pytriton, tritonclient).
"""

from .loading import ModelSource
from .server import DEFAULT_HOST, EditServer, ServeOptions

__all__ = ["EditServer", "ServeOptions", "ModelSource", "DEFAULT_HOST"]
