"""Engines: one contract, three backends, and the artifact store behind them.

``Engine(feeds: dict[str, Tensor]) -> dict[str, Tensor]`` (:mod:`.base`) with backends
``torch`` (:mod:`.torch_backend`), ``onnxruntime`` (:mod:`.onnxruntime_backend`) and ``tensorrt``
(:mod:`.tensorrt_backend`); export in :mod:`.onnx_export`, plan builds in :mod:`.build` and :mod:`.precision`;
keyed, verified artifacts in :mod:`.store`; the seam methods call (:class:`EngineSet`, stages by
name) in :mod:`.stages`. See engines/README.md.
Submodules import lazily: ``import editrt.engines`` loads neither onnx nor onnxruntime.
"""

from __future__ import annotations

from .._lazy import lazy_getattr

_LAZY = {
    "Engine": "base", "BACKENDS": "base",
    "TorchEngine": "torch_backend", "OrtEngine": "onnxruntime_backend", "TrtEngine": "tensorrt_backend",
    "SharedArena": "tensorrt_backend",
    "ArtifactStore": "store", "ArtifactKey": "store",
    "build_onnx": "build", "build_plan": "build", "export_onnx": "onnx_export", "resolve_models": "build",
    "open_engine": "stages", "EngineSet": "stages", "StageCount": "stages",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = sorted(_LAZY)
