"""The editor base shared by global directions, FEU and DeltaEdit: generator, CLIP,
relevance matrix, channel statistics, inversion and batched synthesis.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ... import weights as W
from ...engines.stages import EngineSet
from ...errors import InputError, WeightsError
from .identity import generator_fingerprint, generator_name
from .relevance_matrix import check_fs3, compute_relevance, load_fs3
from .result import check_images_finite, default_batch
from .stats import ChannelStats, channel_stats_for

if TYPE_CHECKING:  # pragma: no cover
    from ...models.stylegan2 import StyleCode, StyleGAN2

log = logging.getLogger(__name__)


def relevance_store_path(generator: "StyleGAN2", clip_name: str) -> Path:
    """Where ``editrt relevance`` writes a computed matrix by default (EDITRT_HOME store)."""
    return W.editrt_home() / "styleclip" / "relevance" / (
        f"{generator_name(generator)}-{generator_fingerprint(generator)[:12]}-{clip_name}.safetensors")


class StyleEditor:
    """Generator + CLIP + relevance matrix + channel statistics, shared by the three methods.

    generator: a :class:`StyleGAN2` or a config name (default ``config.generator``);
    clip: a ClipNet or a CLIP name (default ``config.clip_model``); weights: a store folder or
    ``{key: path}`` mapping (``weights.resolve``); random_init: seeded random weights for every
    network (offline smoke runs); fs3 / stats: explicit relevance matrix (path or tensor) and
    channel statistics (path or :class:`ChannelStats`).

    backend: "auto" | "torch" | "onnxruntime" | "tensorrt" or an :class:`~editrt.engines.EngineSet`,
    where the forward-only stages run: CLIP text and image towers, StyleGAN2 synthesis, e4e, Delta
    Mapper (``engines.run(stage, ...)`` at each call site). "auto" (default): onnxruntime on CPU
    for generators of 512 px and up (exported once into the engine store on first use; a stage
    whose engine fails runs in torch), torch otherwise (:func:`editrt.engines.stages.auto_backend`).
    precision: "fp32" | "fp16" | "bf16" of those stages (default fp32, or the EngineSet's). The
    precomputations (channel statistics, relevance matrix, FEU corpus) run in torch.
    """

    method = "style"
    config_class: type  # the method's config dataclass (its defaults name the networks)

    def __init__(self, generator=None, clip=None, config=None, *, weights: W.WeightsArg = None,
                 random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                 fs3: torch.Tensor | str | os.PathLike | None = None, stats=None, download: bool = False,
                 allow_pickle: bool = False, backend: "str | EngineSet" = "auto", precision: str | None = None):
        from ...models.clip import ClipImageTower, ClipNet, ClipTextTower, load_clip
        from ...models.stylegan2 import StyleGAN2

        self.config = config
        self.device = torch.device(device)
        self.weights, self.random_init, self.seed = weights, random_init, seed
        self._download, self._allow_pickle = download, allow_pickle
        if isinstance(generator, StyleGAN2):
            self.generator = generator
        else:
            self.generator = StyleGAN2.load(generator or config.generator, weights=weights, random_init=random_init,
                                            seed=seed, device=self.device, allow_pickle=allow_pickle,
                                            download=download)
        if isinstance(clip, ClipNet):
            self.clip = clip
        else:
            self.clip = load_clip(clip or config.clip_model, weights=weights, random_init=random_init, seed=seed,
                                  device=self.device, download=download, allow_pickle=allow_pickle)
        self._fs3_arg = fs3
        self._fs3: torch.Tensor | None = None
        self._stats_arg = stats
        self._stats: ChannelStats | None = None
        self._encoder = None
        self.engines = EngineSet.of(backend, precision=precision, device=self.device, synthesis_px=self.generator.size)
        self._loaded_here = {"generator": not isinstance(generator, StyleGAN2), "clip": not isinstance(clip, ClipNet)}
        if self._loaded_here["clip"]:
            self._register(self.clip)
        # the forward-only stages, run by name through the engine seam
        self.text_tower, self.image_tower = ClipTextTower(self.clip), ClipImageTower(self.clip)
        self._synthesis = None
        self._last_source: tuple | None = None  # (styles, their versions, images): one synthesis per code

    def _register(self, network: torch.nn.Module) -> None:
        """A network loaded here: its artifacts are keyed by the checkpoint files or the seed."""
        self.engines.register(network, weights=self.weights, random_init=self.random_init, seed=self.seed)

    @property
    def backend(self) -> str:
        return self.engines.backend

    @property
    def synthesis(self) -> torch.nn.Module:
        """The synthesis stage (built on first use: the export form is a frozen copy)."""
        if self._synthesis is None:
            from ...models.stylegan2 import SynthesisExport

            self._synthesis = SynthesisExport(self.generator, freeze=self.engines.backend != "torch")
            if self._loaded_here["generator"]:
                self._register(self._synthesis)
        return self._synthesis

    @classmethod
    def specs(cls, config=None, *, photos: bool = False) -> list[str]:
        """The engine specs an edit runs (``photos``: with the e4e inversion of real images)."""
        from ...models.clip import canonical_name

        cfg = config or cls.config_class()
        names = [f"clip/{canonical_name(cfg.clip_model)}/text", f"stylegan2/{cfg.generator}/synthesis"]
        if photos:
            names.append(f"e4e/{cfg.generator.split('-')[0]}/encoder")
        return names

    @property
    def stats(self) -> ChannelStats:
        """Channel statistics (``code_mean``/``code_std``): given, cached in the store, or computed once."""
        if self._stats is None:
            if isinstance(self._stats_arg, ChannelStats):
                self._stats = self._stats_arg
            else:
                cfg = self.config
                self._stats = channel_stats_for(
                    self.generator, n=getattr(cfg, "stats_samples", 512 if self.random_init else 100_000),
                    psi=getattr(cfg, "stats_psi", 0.7), cutoff=getattr(cfg, "stats_cutoff", 8),
                    seed=getattr(cfg, "stats_seed", 5), path=self._stats_arg, cache=not self.random_init)
        return self._stats

    # -- relevance matrix ---------------------------------------------------------------------
    @property
    def fs3(self) -> torch.Tensor:
        """The relevance matrix [C_conv, D] (loaded or computed on first use)."""
        if self._fs3 is None:
            self._fs3 = self._resolve_fs3().to(self.device)
        return self._fs3

    def _resolve_fs3(self) -> torch.Tensor:
        conv_dim, dim = self.generator.layout.conv_total, self.clip.embed_dim
        arg = self._fs3_arg
        if isinstance(arg, torch.Tensor):
            return check_fs3(arg.float().cpu(), conv_dim, dim)
        if arg is not None:
            return load_fs3(arg, conv_dim, dim)
        name = generator_name(self.generator)
        key = f"styleclip/{name}/fs3"
        if key in W.known_files() and not self.random_init:
            try:
                return load_fs3(W.resolve(key, weights=self.weights, download=self._download), conv_dim, dim)
            except WeightsError:
                if not relevance_store_path(self.generator, self.clip.name).is_file():
                    raise
        computed = relevance_store_path(self.generator, self.clip.name)
        if computed.is_file():
            return load_fs3(computed, conv_dim, dim)
        if self.random_init:
            # Random networks: compute a small matrix in memory (seconds for the tiny generator).
            n_images = getattr(self.config, "relevance_images", 1)
            log.info("computing a relevance matrix for the random %s generator (%d images)", name, n_images)
            return compute_relevance(self.generator, self.clip, self.stats, n_images=n_images,
                                     batch_size=default_batch(self.generator), progress=False)
        raise WeightsError(
            f"no relevance matrix (fs3) for generator {name} with CLIP {self.clip.name}: expected "
            f"{computed}. Compute one with `editrt relevance --generator {name}` or pass fs3=PATH.")

    # -- inputs -------------------------------------------------------------------------------
    @torch.no_grad()
    def codes_from_seeds(self, seeds: Sequence[int] | int, *, psi: float = 0.7, cutoff: int | None = 8) -> "StyleCode":
        """StyleCodes of generator samples: z = ``RandomState(seed).randn(1, D)`` per seed."""
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        if not seeds:
            raise InputError("give at least one seed")
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, (int, np.integer))
               or not 0 <= int(s) < 2**32]
        if bad:  # RandomState takes seeds in [0, 2**32)
            raise InputError(f"seeds must be integers in 0..{2**32 - 1}, got {bad[:5]}")
        z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, self.generator.style_dim)
                                             for s in seeds])).float().to(self.device)
        return self.generator.styles_from_w(self.generator.mapping(z, psi=psi, cutoff=cutoff))

    def _load_encoder(self):
        if self._encoder is None:
            from ...models.e4e import E4E_CONFIGS, Encoder4Editing

            name = generator_name(self.generator).split("-")[0]  # ffhq-1024 -> ffhq
            if name not in E4E_CONFIGS:
                raise InputError(f"no e4e encoder exists for generator {generator_name(self.generator)}; "
                                 f"real photos can be edited with {sorted(E4E_CONFIGS)} generators only. "
                                 "Pass a StyleCode or W+ latents instead.")
            encoder = Encoder4Editing.load(name, weights=self.weights, random_init=self.random_init,
                                           seed=self.seed, device=self.device, download=self._download,
                                           allow_pickle=self._allow_pickle)
            if encoder.config.n_styles != self.generator.n_latent:
                raise WeightsError(f"e4e {name} outputs {encoder.config.n_styles} W+ entries; the generator "
                                   f"needs {self.generator.n_latent}")
            self._register(encoder)
            self._encoder = encoder
        return self._encoder

    @torch.no_grad()
    def encode(self, code_or_image) -> tuple["StyleCode", torch.Tensor | None]:
        """StyleCode | W [B, D] | W+ [B, n_latent, D] | image (path, PIL, uint8 HxWx3 array,
        float [3, H, W] in [0, 1], or a list of those) -> (StyleCode on the device, the e4e input
        images [B, 3, 256, 256] in [-1, 1], or None for codes). Images are inverted with e4e
        (aligned square face crops, as the reference)."""
        from ...models.stylegan2 import StyleCode

        if isinstance(code_or_image, StyleCode):
            if code_or_image.layout != self.generator.layout:
                raise InputError("the StyleCode belongs to another generator (different S-space layout)")
            return code_or_image.to(self.device), None
        g = self.generator
        if isinstance(code_or_image, torch.Tensor) and (
                code_or_image.ndim == 2 or tuple(code_or_image.shape[1:]) == (g.n_latent, g.style_dim)):
            return g.styles_from_w(code_or_image.float().to(self.device)), None  # W or W+ (checked there)
        from ...imageio import as_image_tensor
        from ...models.e4e import preprocess

        items = code_or_image if isinstance(code_or_image, (list, tuple)) else [code_or_image]
        if not items:
            raise InputError("no input given: pass a StyleCode, W/W+ latents or an image")
        imgs = [as_image_tensor(x, what="input image") for x in items]  # validate before loading e4e
        encoder = self._load_encoder()
        size = encoder.config.input_size
        x = torch.cat([preprocess(im[None], size=size) for im in imgs]).to(self.device)
        return self.generator.styles_from_w(self.engines.run(encoder, x)), x

    # -- synthesis ----------------------------------------------------------------------------
    @torch.no_grad()
    def synthesize(self, code: "StyleCode") -> torch.Tensor:
        """The synthesis stage in chunks (memory bound at 1024 px). [B, 3, H, W] fp32 in ~[-1, 1]."""
        if code.layout != self.generator.layout:
            raise InputError("the StyleCode belongs to another generator (different S-space layout)")
        step = default_batch(self.generator)
        outs = [self.engines.run(self.synthesis, *code[i:i + step].styles) for i in range(0, code.batch_size, step)]
        return torch.cat(outs)

    def _cached_source(self, code: "StyleCode") -> torch.Tensor | None:
        last = self._last_source
        if last is None or len(last[0]) != len(code.styles):
            return None
        same = all(a is b and a._version == v for a, b, v in zip(last[0], code.styles, last[1]))
        return last[2] if same else None

    @torch.no_grad()
    def source_images(self, code: "StyleCode", given: torch.Tensor | None = None) -> torch.Tensor | None:
        """The unedited synthesis of ``code`` when it is known without synthesising: ``given``
        (checked against the generator's output shape), or the one made by the previous edit of
        this same code (same tensors, unmodified). None: the edit synthesises it."""
        if given is not None:
            want = (code.batch_size, 3, self.generator.size, self.generator.size)
            if not isinstance(given, torch.Tensor) or tuple(given.shape) != want:
                raise InputError(f"source_image must be the unedited synthesis, a tensor of shape {want} in "
                                 f"[-1, 1]; got {tuple(given.shape) if isinstance(given, torch.Tensor) else type(given).__name__}")
            return check_images_finite(given.to(self.device, torch.float32), "source_image")
        return self._cached_source(code)

    def _remember_source(self, code: "StyleCode", images: torch.Tensor) -> None:
        self._last_source = (tuple(code.styles), tuple(t._version for t in code.styles), images)

    @torch.no_grad()
    def _apply(self, code: "StyleCode", delta, strengths: tuple[float, ...], source: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, list["StyleCode"], torch.Tensor]:
        """s' = s + strength * delta for each strength, synthesised in one batch together with
        the unedited ``code`` unless its images are given (``source``): one synthesis per image.
        ``delta`` is a StyleCode (batch 1 or B) or a conv-view tensor [B or 1, C_conv].
        Returns (images [B, K, 3, H, W], edited codes, source [B, 3, H, W])."""
        from ...models.stylegan2 import StyleCode

        b = code.batch_size
        edited = [code + k * delta if isinstance(delta, StyleCode) else code.add_conv_delta(delta, k)
                  for k in strengths]
        if source is None:
            images = check_images_finite(self.synthesize(StyleCode.cat([code] + edited)), f"{self.method} edit")
            source, images = images[:b].clone(), images[b:]
            self._remember_source(code, source)
        else:
            images = check_images_finite(self.synthesize(StyleCode.cat(edited)), f"{self.method} edit")
        out = images.view(len(strengths), b, *images.shape[1:]).transpose(0, 1)
        return out, edited, source
