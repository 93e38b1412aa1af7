"""Pipeline glue: open engines for specs, and run the forward-only stages of the methods in them.

- :func:`open_engine` — one spec, any backend, artifacts built into the store when missing.
- :class:`EngineSet` — the engines of one pipeline (one backend, store, precision, device; a
  shared TensorRT activation arena), opened lazily per spec, with the weights identity taken
  from how the method loaded its networks (checkpoint files, random seed, or the module's
  state_dict for networks handed in as objects).
- :class:`FlexITStages` — FlexIT's one-time encoders (VQGAN encoder, CLIP text, CLIP image
  embedding of the input) and its final decode. The optimisation loop stays in torch: it needs
  gradients through the decoder and CLIP (TensorRT has no autograd, ANCHORS.md §0).
- :class:`StyleStages` — the direction edits' stages (CLIP text, CLIP image, StyleGAN2
  synthesis, e4e, Delta Mapper) as drop-in functions.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..models.registry import ModelSpec, get_spec
from .base import BACKENDS, Engine
from .store import ArtifactStore, module_identity, weights_identity

log = logging.getLogger(__name__)


def default_provider(device: torch.device) -> str:
    """The best onnxruntime provider for ``device``: TensorRT EP > CUDA EP > CPU."""
    from .onnxruntime_backend import available_providers

    if device.type != "cuda":
        return "cpu"
    have = available_providers()
    return next((p for p in ("tensorrt", "cuda") if p in have), "cpu")


def open_engine(spec: ModelSpec | str, backend: str = "onnxruntime", *, store: ArtifactStore | str | None = None,
                precision: str = "fp32", weights=None, random_init: bool = False, seed: int = 0,
                module: torch.nn.Module | None = None, weights_id: str | None = None,
                device: str | torch.device = "cpu", rebuild: bool = True, provider: str | None = None,
                cuda_graph: bool = False, arena=None, compile: str | None = None) -> Engine:
    """An :class:`Engine` for ``spec`` on ``backend``.

    torch: the module (given, or built from the weights). onnxruntime / tensorrt: the store's
    artifact, exported/built first when missing and ``rebuild`` is True (else EngineError).
    ``module`` is used to export (no second load) and, without ``weights_id``, hashed as the
    weights identity.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
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
                         cuda_graph=cuda_graph)
    from .build import build_plan
    from .tensorrt_backend import TrtEngine

    art = build_plan(spec, device=device, **kw)
    return TrtEngine(spec, art.path, device=device, cuda_graph=cuda_graph, arena=arena)


class EngineSet:
    """The engines of one pipeline, opened on first use.

    Args:
        backend: "torch", "onnxruntime" or "tensorrt".
        store: artifact folder (default ``$EDITRT_ENGINES`` or ``./engines``).
        weights / random_init / seed: how the method loaded networks it built itself (their
            weights identity is then the checkpoint files' hash or the seed, no hashing of tensors).
        rebuild: build missing or stale artifacts (else EngineError naming what differs).
        shared_arena: TensorRT engines share one activation buffer (they run one after another).
    """

    def __init__(self, backend: str, *, store: ArtifactStore | str | os.PathLike | None = None,
                 precision: str = "fp32", device: str | torch.device = "cpu", weights=None,
                 random_init: bool = False, seed: int = 0, rebuild: bool = True, provider: str | None = None,
                 cuda_graph: bool = False, shared_arena: bool = True):
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.backend, self.precision, self.device = backend, precision, torch.device(device)
        self.store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)
        self.weights, self.random_init, self.seed = weights, random_init, seed
        self.rebuild, self.provider, self.cuda_graph = rebuild, provider, cuda_graph
        self.arena = None
        if backend == "tensorrt" and shared_arena:
            from .tensorrt_backend import SharedArena

            self.arena = SharedArena(self.device)
        self._engines: dict[str, Engine] = {}

    def engine(self, spec_name: str, module: torch.nn.Module | Callable[[], torch.nn.Module],
               *, injected: bool = False) -> Engine:
        """The engine of ``spec_name``. ``module`` is the spec's wrapper around the network the
        method holds (or a function making it); ``injected`` says the network was handed in as an
        object, so its state_dict identifies the weights instead of the checkpoint files."""
        if spec_name not in self._engines:
            mod = module() if callable(module) and not isinstance(module, torch.nn.Module) else module
            if injected:
                wid = module_identity(mod)
            else:
                wid = weights_identity(spec_name, weights=self.weights, random_init=self.random_init, seed=self.seed)
            self._engines[spec_name] = open_engine(
                spec_name, self.backend, store=self.store, precision=self.precision, module=mod, weights_id=wid,
                device=self.device, rebuild=self.rebuild, provider=self.provider, cuda_graph=self.cuda_graph,
                arena=self.arena)
        return self._engines[spec_name]

    def run(self, spec_name: str, module, *args: torch.Tensor, injected: bool = False):
        """Positional call like the torch module: one tensor, or a tuple for several outputs."""
        eng = self.engine(spec_name, module, injected=injected)
        feeds = dict(zip(eng.input_names, args))
        # batches above the profile's maximum run in chunks (TensorRT rejects them otherwise)
        limit = eng.spec.profile.get("B", (1, 1, 0))[2]
        batched = all(t.shape and t.shape[0] == "B" for t in eng.spec.inputs)
        n = args[0].shape[0] if args else 0
        if batched and limit and n > limit:
            parts = [eng({k: v[i:i + limit] for k, v in feeds.items()}) for i in range(0, n, limit)]
            out = {k: torch.cat([p[k] for p in parts]) for k in eng.output_names}
        else:
            out = eng(feeds)
        vals = tuple(out[k] for k in eng.output_names)
        return vals[0] if len(vals) == 1 else vals

    def close(self) -> None:
        for e in self._engines.values():
            e.close()
        self._engines.clear()


def clip_spec_name(net, tower: str) -> str:
    return f"clip/{net.name}/{tower}"


class FlexITStages:
    """FlexIT's forward-only stages through engines (see the module docstring).

    ``editor`` is a :class:`editrt.methods.flexit.FlexIT`; ``injected`` names the networks that
    were handed in as objects (``models=``), hashed instead of identified by their files.
    """

    def __init__(self, editor, backend: str, *, weights=None, random_init: bool = False, seed: int = 0,
                 injected: Sequence[str] = (), store=None, precision: str = "fp32", rebuild: bool = True):
        self.editor = editor
        self.engines = EngineSet(backend, store=store, precision=precision, device=editor.device, weights=weights,
                                 random_init=random_init, seed=seed, rebuild=rebuild)
        self.injected = set(injected)

    def _vq(self, part: str, x: torch.Tensor) -> torch.Tensor:
        from ..models.vqgan import VQGANDecoder, VQGANEncoder

        vq = self.editor.vqgan
        wrapper = VQGANEncoder if part == "encoder" else VQGANDecoder
        return self.engines.run(f"vqgan/{self.editor.config.vqgan}/{part}", lambda: wrapper(vq), x,
                                injected="vqgan" in self.injected)

    @torch.no_grad()
    def encode(self, image01: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] in [0, 1] -> the VQGAN latent z0 [B, C, h, w] (fp32)."""
        return self._vq("encoder", image01).float()

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> soft-clamped image in [0, 1] (fp32, clamped as ``FlexIT.decode``)."""
        return self._vq("decoder", z).float().clamp(0, 1)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Per CLIP net: normalised text embeddings [N, D] (as ``ClipEnsemble.embed_text``)."""
        from ..models.clip import ClipTextTower

        out = []
        for net in self.editor.clip:
            tokens = net.tokenize(texts).to(self.editor.device)
            emb = self.engines.run(clip_spec_name(net, "text"), lambda n=net: ClipTextTower(n), tokens,
                                   injected="clip" in self.injected)
            out.append(F.normalize(emb.float(), dim=-1))
        return out

    @torch.no_grad()
    def embed_image(self, image01: torch.Tensor) -> list[torch.Tensor]:
        """Per CLIP net: normalised embeddings of [0, 1] images (resize/crop/normalise in torch)."""
        from ..models.clip import ClipImageTower

        out = []
        for net in self.editor.clip:
            x = net.preprocess(image01)
            emb = self.engines.run(clip_spec_name(net, "image"), lambda n=net: ClipImageTower(n), x,
                                   injected="clip" in self.injected)
            out.append(F.normalize(emb.float(), dim=-1))
        return out


class StyleStages:
    """The direction edits' forward-only stages through engines, as drop-in functions.

    Each method mirrors the torch call it replaces: ``encode_text(clip, tokens)`` for
    ``clip.encode_text(tokens)``, ``encode_image(clip, x)``, ``synthesize(generator, code)``
    for ``generator.synthesize(code)`` (const noise, as the exported graph), ``e4e(encoder, x)``
    for ``encoder(x)``, ``mapper(mapper, s, cond)`` for ``mapper(s, cond)``. The spec is derived
    from the network's config name; ``injected`` lists the networks handed in as objects.
    """

    def __init__(self, engines: EngineSet, *, injected: Sequence[str] = ()):
        self.engines = engines
        self.injected = set(injected)

    @classmethod
    def for_editor(cls, editor, backend: str, *, injected: Sequence[str] = (), **kw) -> "StyleStages":
        """From a :class:`StyleEditor` (reads its device, weights, random_init and seed)."""
        engines = EngineSet(backend, device=editor.device, weights=editor.weights, random_init=editor.random_init,
                            seed=editor.seed, **kw)
        return cls(engines, injected=injected)

    def encode_text(self, clip, tokens: torch.Tensor) -> torch.Tensor:
        from ..models.clip import ClipTextTower

        return self.engines.run(clip_spec_name(clip, "text"), lambda: ClipTextTower(clip), tokens,
                                injected="clip" in self.injected)

    def encode_image(self, clip, x: torch.Tensor) -> torch.Tensor:
        from ..models.clip import ClipImageTower

        return self.engines.run(clip_spec_name(clip, "image"), lambda: ClipImageTower(clip), x,
                                injected="clip" in self.injected)

    def synthesize(self, generator, code) -> torch.Tensor:
        from ..methods.stylespace import generator_name
        from ..models.stylegan2 import SynthesisExport

        name = f"stylegan2/{generator_name(generator)}/synthesis"
        return self.engines.run(name, lambda: SynthesisExport(generator), *code.styles,
                                injected="generator" in self.injected)

    def e4e(self, encoder, x: torch.Tensor) -> torch.Tensor:
        name = f"e4e/{encoder_name(encoder)}/encoder"
        return self.engines.run(name, encoder, x, injected="encoder" in self.injected)

    def mapper(self, mapper, s: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        from ..models.delta_mapper import CONFIGS

        name = next((f"deltaedit/{n}/mapper" for n, c in CONFIGS.items() if c == mapper.config), None)
        if name is None:
            raise InputError("this Delta Mapper has a custom config with no registered spec; use backend='torch'")
        return self.engines.run(name, mapper, s, cond, injected="mapper" in self.injected)


    # -- drop-in proxies: the method keeps calling the same attributes ------------------------
    def wrap_clip(self, clip) -> "EngineClip":
        return clip if isinstance(clip, EngineClip) else EngineClip(clip, self)

    def wrap_generator(self, generator) -> "EngineGenerator":
        return generator if isinstance(generator, EngineGenerator) else EngineGenerator(generator, self)

    def wrap_e4e(self, encoder) -> "EngineCallable":
        return encoder if isinstance(encoder, EngineCallable) else EngineCallable(encoder, self.e4e)

    def wrap_mapper(self, mapper) -> "EngineCallable":
        return mapper if isinstance(mapper, EngineCallable) else EngineCallable(mapper, self.mapper)


class _Proxy:
    """Delegates every attribute to the wrapped network; subclasses override the engine calls."""

    def __init__(self, wrapped, stages):
        object.__setattr__(self, "wrapped", wrapped)
        object.__setattr__(self, "stages", stages)

    def __getattr__(self, name):
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.wrapped).__name__}, backend={self.stages.engines.backend})"


class EngineClip(_Proxy):
    """A ClipNet whose ``encode_text`` / ``encode_image`` (and the embed_* helpers) run in engines."""

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        ctx = self.wrapped.context_length
        if tokens.shape[1] < ctx:  # trimmed ids (clip.trim_padding): the graph takes ctx columns
            tokens = F.pad(tokens, (0, ctx - tokens.shape[1]))
        return self.stages.encode_text(self.wrapped, tokens.to(self.wrapped.mean.device))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages.encode_image(self.wrapped, x)

    @torch.no_grad()
    def embed_text(self, texts) -> torch.Tensor:
        return F.normalize(self.encode_text(self.wrapped.tokenize(texts)).float(), dim=-1)

    @torch.no_grad()
    def embed_image(self, x01: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.encode_image(self.wrapped.preprocess(x01)).float(), dim=-1)


class EngineGenerator(_Proxy):
    """A StyleGAN2 whose ``synthesize`` runs in the synthesis engine for the exported form (const
    noise, activation-side modulation); other noise modes fall back to the torch module."""

    def synthesize(self, code, noise="const", modconv: str = "activation") -> torch.Tensor:
        if isinstance(noise, str) and noise == "const":
            if code.layout != self.wrapped.layout:
                raise InputError("the StyleCode belongs to another generator (different S-space layout)")
            return self.stages.synthesize(self.wrapped, code)
        return self.wrapped.synthesize(code, noise=noise, modconv=modconv)


class EngineCallable(_Proxy):
    """A module (e4e encoder, Delta Mapper) whose call runs in its engine."""

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        return self.stages(self.wrapped, *args)  # here ``stages`` is the StyleStages method to call

    def __repr__(self) -> str:
        return f"EngineCallable({type(self.wrapped).__name__})"


def encoder_name(encoder) -> str:
    """Registry name of an e4e encoder from its config (``ffhq``, ``tiny``)."""
    from ..models.e4e import E4E_CONFIGS

    for name, cfg in E4E_CONFIGS.items():
        if cfg == encoder.config:
            return name
    raise InputError("this e4e encoder has a custom config with no registered spec; use backend='torch'")


__all__ = ["open_engine", "EngineSet", "FlexITStages", "StyleStages", "EngineClip", "EngineGenerator",
           "EngineCallable", "default_provider"]
