"""The engine seam: open engines for specs, and run a method's forward-only stages by name.

- :func:`open_engine` — one spec, any backend, artifacts built into the store when missing.
- :class:`EngineSet` — the engines of one pipeline (backend, precision, provider, store,
  cuda_graph, device; a shared TensorRT activation arena), opened on first use.
  ``engines.run(wrapper, *tensors)`` runs one stage: the wrapper is the export module the loader
  built around a network, and carries the spec name it runs under (``wrapper.spec_name``).
  Every call is counted per stage (:attr:`EngineSet.counters`: calls and batch items).

Methods call each stage where it happens, as the TensorRT demo/Diffusion pipelines call
``runEngine('vae', ...)``, and declare the specs they use (``specs()``) so that
``editrt export --for METHOD`` builds exactly those. This module imports nothing from
``editrt.methods``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import threading
from typing import Iterable

import torch

from ..errors import BackendUnavailable, EngineError, InputError
from ..models.registry import ModelSpec, get_spec
from .base import BACKENDS, Engine
from .store import PRECISIONS, ArtifactStore, module_identity, weights_identity

log = logging.getLogger(__name__)

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def default_provider(device: torch.device) -> str:
    """The best onnxruntime provider for ``device``: TensorRT EP > CUDA EP > CPU."""
    from .onnxruntime_backend import available_providers

    if device.type != "cuda":
        return "cpu"
    have = available_providers()
    return next((p for p in ("tensorrt", "cuda") if p in have), "cpu")


# backend="auto" (the direction editors' default) on CPU: onnxruntime for fp32 StyleGAN2 synthesis
# from this size up, torch below it. Batch-1 synthesis, one thread, interleaved rounds
# (benchmarks/cpu_paper.py synthesis, CPU arena on): onnxruntime 1.38x torch at 256 px, 1.82x at
# 512, 1.90x at 1024 (2.5x at 32 px, but 4 ms saved per image). Its cost: the first use exports
# and checks the graph once per store (24 s at 256 px, 37 s at 512, 46 s at 1024), and each
# process opens the stored graph (3.6 s at 1024, file hash included).
AUTO_ONNXRUNTIME_FROM_PX = 512


def auto_backend(device: str | torch.device, synthesis_px: int | None, precision: str = "fp32") -> str:
    """The backend ``backend="auto"`` runs: on CPU, onnxruntime (when installed) for fp32
    pipelines whose StyleGAN2 synthesis is ``AUTO_ONNXRUNTIME_FROM_PX`` or larger; torch
    otherwise: below that size the engine saves less than it costs, ``synthesis_px=None`` (FlexIT:
    its forward-only stages are a small share of an edit) has nothing to gain, onnxruntime CPU
    has no fast fp16/bf16 path, and on CUDA TensorRT is a choice the caller makes (plans are
    built per GPU and TensorRT is not installed everywhere)."""
    if (torch.device(device).type != "cpu" or synthesis_px is None or synthesis_px < AUTO_ONNXRUNTIME_FROM_PX
            or precision != "fp32" or importlib.util.find_spec("onnxruntime") is None):
        return "torch"
    return "onnxruntime"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


def open_engine(spec: ModelSpec | str, backend: str = "onnxruntime", *, store: ArtifactStore | str | None = None,
                precision: str = "fp32", weights=None, random_init: bool = False, seed: int = 0,
                module: torch.nn.Module | None = None, weights_id: str | None = None,
                device: str | torch.device = "cpu", rebuild: bool = True, provider: str | None = None,
                cuda_graph: bool = False, arena=None, compile: str | None = None, cpu_arena: bool | None = None) -> Engine:
    """An :class:`Engine` for ``spec`` on ``backend``.

    torch: the module (given, or built from the weights). onnxruntime / tensorrt: the store's
    artifact, exported/built first when missing and ``rebuild`` is True (else EngineError).
    ``module`` is used to export (no second load) and, without ``weights_id``, hashed as the
    weights identity. ``cpu_arena``: onnxruntime's CPU memory arena (see :class:`OrtEngine`).
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    check_precision(precision)
    device = torch.device(device)
    if backend == "torch":
        from .torch_backend import TorchEngine

        if module is None:
            module = spec.build(weights=weights, random_init=random_init, seed=seed)
        return TorchEngine(spec, module, device=device, compile=compile, cuda_graph=cuda_graph)
    store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)
    kw = dict(store=store, precision=precision, weights=weights, random_init=random_init, seed=seed,
              module=module, weights_id=weights_id, rebuild=rebuild)
    if backend == "onnxruntime":
        from .build import build_onnx
        from .onnxruntime_backend import OrtEngine

        art = build_onnx(spec, **kw)
        provider = provider or default_provider(device)
        return OrtEngine(spec, art.path, provider=provider, device=device if provider != "cpu" else None,
                         precision=precision, trt_cache_dir=store.ort_trt_cache_dir(art.key, device),
                         cuda_graph=cuda_graph, cpu_arena=cpu_arena)
    from .build import build_plan
    from .tensorrt_backend import TrtEngine

    art = build_plan(spec, device=device, **kw)
    return TrtEngine(spec, art.path, device=device, cuda_graph=cuda_graph, arena=arena)


@dataclasses.dataclass
class StageCount:
    """How often a stage ran: ``calls`` (engine invocations, chunks included) and ``items``
    (batch rows fed, i.e. images synthesised, prompts encoded...)."""

    calls: int = 0
    items: int = 0


@dataclasses.dataclass(frozen=True)
class _Origin:
    """How a network was loaded: its artifacts are keyed by these weights, not by hashing it."""

    weights: object
    random_init: bool
    seed: int


def spec_name_of(wrapper: torch.nn.Module) -> str | None:
    """The spec a wrapper runs under (set where the loader built it); None for custom networks."""
    return getattr(wrapper, "spec_name", None)


class EngineSet:
    """The engines of one pipeline, opened on first use.

    Args:
        backend: "torch" (the wrappers run as they are; fp16/bf16 under autocast),
            "onnxruntime" or "tensorrt" (the store's artifacts of that precision, built when missing).
        precision: "fp32", "fp16" or "bf16": the graphs opened (onnxruntime/TensorRT) or the
            autocast dtype (torch). Inputs and outputs stay fp32 whatever the precision.
        store: artifact folder (default :func:`~editrt.engines.store.default_root`).
        rebuild: build missing or stale artifacts (else EngineError naming what differs).
        provider: onnxruntime execution provider (default: the best for ``device``).
        shared_arena: TensorRT engines share one activation buffer (they run one after another).
        cpu_arena: onnxruntime's CPU memory arena (None: ``$EDITRT_ORT_CPU_ARENA``, default on:
            faster, keeps its peak; see :class:`~editrt.engines.onnxruntime_backend.OrtEngine`).

    Weights identity: a network registered with :meth:`register` (the method loaded it from
    ``weights`` / ``random_init`` / ``seed``) is keyed by its checkpoint files' hash or seed;
    any other network (handed in as an object) is keyed by a hash of its state_dict.
    """

    def __init__(self, backend: str = "torch", *, precision: str = "fp32", device: str | torch.device = "cpu",
                 store: ArtifactStore | str | os.PathLike | None = None, rebuild: bool = True,
                 provider: str | None = None, cuda_graph: bool = False, shared_arena: bool = True,
                 fallback: bool = False, cpu_arena: bool | None = None):
        if backend == "auto":
            raise InputError("backend 'auto' depends on the pipeline's synthesis size: pass backend='auto' to an "
                             "editor, or use EngineSet.of('auto', synthesis_px=...)")
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.backend, self.precision, self.device = backend, check_precision(precision), torch.device(device)
        self.store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)
        self.rebuild, self.provider, self.cuda_graph, self.cpu_arena = rebuild, provider, cuda_graph, cpu_arena
        self.fallback = fallback  # a stage whose engine cannot be built or opened runs in torch
        self._torch_only: set[str] = set()
        self.arena = None
        if backend == "tensorrt" and shared_arena:
            from .tensorrt_backend import SharedArena

            self.arena = SharedArena(self.device)
        self._engines: dict[str, Engine] = {}
        self._opening = threading.Lock()  # threads on one set open each engine once
        self._origins: dict[int, tuple[torch.nn.Module, _Origin]] = {}
        self.counters: dict[str, StageCount] = {}

    @classmethod
    def of(cls, backend: "str | EngineSet", *, precision: str | None = None,
           device: str | torch.device = "cpu", synthesis_px: int | None = None) -> "EngineSet":
        """``backend`` itself when it is an EngineSet (a ``precision`` that contradicts it is an
        error), else a new set for that backend name at ``precision`` (default fp32). ``"auto"``:
        :func:`auto_backend` for ``synthesis_px`` (the generator's size; None: no synthesis),
        with ``fallback`` on: a stage whose engine fails to build or open runs in torch."""
        if isinstance(backend, EngineSet):
            if precision is not None and precision != backend.precision:
                raise InputError(f"precision={precision!r} contradicts the EngineSet's {backend.precision!r}; "
                                 "give one of the two")
            return backend
        if not isinstance(backend, str):
            raise InputError(f"backend must be 'auto', 'torch', 'onnxruntime', 'tensorrt' or an EngineSet, "
                             f"got {type(backend).__name__}")
        if backend == "auto":
            chosen = auto_backend(device, synthesis_px, check_precision(precision or "fp32"))
            log.info("backend='auto' -> %s (synthesis %s px, %s)", chosen, synthesis_px, torch.device(device))
            return cls(chosen, precision=precision or "fp32", device=device, fallback=chosen != "torch")
        return cls(backend, precision=precision or "fp32", device=device)

    def register(self, network: torch.nn.Module, *, weights=None, random_init: bool = False, seed: int = 0) -> None:
        """Say how ``network`` was loaded, so its artifacts are keyed by files/seed (no hashing)."""
        self._origins[id(network)] = (network, _Origin(weights, bool(random_init), int(seed)))

    def _origin(self, wrapper: torch.nn.Module) -> _Origin | None:
        for m in wrapper.modules():
            entry = self._origins.get(id(m))
            if entry is not None and entry[0] is m:
                return entry[1]
        return None

    def engine(self, wrapper: torch.nn.Module) -> Engine:
        """The engine of the wrapper's spec (opened, and its artifact built, on first use)."""
        name = spec_name_of(wrapper)
        if name is None:
            raise InputError(f"{type(wrapper).__name__} wraps a network with no registered spec (custom "
                             f"architecture); it cannot run on backend={self.backend!r}: use backend='torch'")
        opened = self._engines.get(name)
        if opened is not None:
            return opened
        with self._opening:
            if name not in self._engines:
                origin = self._origin(wrapper)
                if origin is None:
                    wid = module_identity(wrapper)
                else:
                    wid = weights_identity(name, weights=origin.weights, random_init=origin.random_init, seed=origin.seed)
                self._engines[name] = open_engine(
                    name, self.backend, store=self.store, precision=self.precision, module=wrapper, weights_id=wid,
                    device=self.device, rebuild=self.rebuild, provider=self.provider, cuda_graph=self.cuda_graph,
                    arena=self.arena, cpu_arena=self.cpu_arena)
        return self._engines[name]

    def _count(self, stage: str, items: int) -> None:
        c = self.counters.setdefault(stage, StageCount())
        c.calls += 1
        c.items += items

    def count(self, suffix: str) -> StageCount:
        """Totals over the stages whose name ends with ``suffix`` (e.g. ``"/synthesis"``)."""
        out = StageCount()
        for name, c in self.counters.items():
            if name.endswith(suffix):
                out.calls += c.calls
                out.items += c.items
        return out

    def reset_counters(self) -> None:
        self.counters.clear()

    @torch.no_grad()
    def run(self, wrapper: torch.nn.Module, *tensors: torch.Tensor):
        """Run one stage: the wrapper's forward (torch) or its spec's engine, positional inputs in
        spec order. Returns one fp32 tensor, or a tuple for several outputs."""
        stage = spec_name_of(wrapper) or f"custom/{type(wrapper).__name__}"
        if self.backend == "torch" or stage in self._torch_only:
            self._count(stage, int(tensors[0].shape[0]) if tensors and tensors[0].ndim else 0)
            return self._run_torch(wrapper, tensors)
        try:
            eng = self.engine(wrapper)
        except (EngineError, BackendUnavailable, InputError) as exc:  # InputError: a network with no spec
            if not self.fallback:
                raise
            log.warning("backend='auto': %s runs in torch, its %s engine failed: %s", stage, self.backend, exc)
            self._torch_only.add(stage)
            return self.run(wrapper, *tensors)
        feeds = dict(zip(eng.input_names, tensors))
        # batches above the profile's maximum run in chunks (TensorRT rejects them otherwise)
        limit = eng.spec.profile.get("B", (1, 1, 0))[2]
        batched = all(t.shape and t.shape[0] == "B" for t in eng.spec.inputs)
        n = int(tensors[0].shape[0]) if tensors else 0
        if batched and limit and n > limit:
            parts = []
            for i in range(0, n, limit):
                self._count(stage, min(limit, n - i))
                parts.append(eng({k: v[i:i + limit] for k, v in feeds.items()}))
            out = {k: torch.cat([p[k] for p in parts]) for k in eng.output_names}
        else:
            self._count(stage, n)
            out = eng(feeds)
        vals = tuple(out[k].float() for k in eng.output_names)
        return vals[0] if len(vals) == 1 else vals

    def _run_torch(self, wrapper: torch.nn.Module, tensors):
        dtype = _AUTOCAST.get(self.precision)
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            out = wrapper(*tensors)
        if dtype is None:
            return out
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    def open(self, wrappers: Iterable[torch.nn.Module]) -> list[Engine]:
        """Open (and build when missing) the engines of several stages ahead of use."""
        return [self.engine(w) for w in wrappers]

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        self._engines.clear()

    def __repr__(self) -> str:
        return f"EngineSet(backend={self.backend!r}, precision={self.precision!r}, device={str(self.device)!r})"


__all__ = ["open_engine", "EngineSet", "StageCount", "spec_name_of", "default_provider", "check_precision"]
