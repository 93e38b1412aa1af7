"""StyleCLIP global directions (StyleCLIP global_torch/StyleCLIP.py): text -> CLIP direction -> S-space delta.

    gd = GlobalDirection("ffhq-1024")                       # fs3 + statistics from the store
    res = gd.edit(gd.codes_from_seeds([1, 2]), "smiling face", "face", alpha=[2, 4.1])
    res.images  # [2, 2, 3, 1024, 1024] in [-1, 1]

Per edit: Δt = GetDt(target, neutral) (79 templates, unit length); r = fs3 · Δt; channels with
|r| < β are dropped, r is divided by max|r|, split per conv layer and multiplied by that
layer's ``code_std``, tRGB layers get zeros (SplitS); s' = s + α·Δs. β may be automatic
(``GetDt2``: the largest β in 0.10..0.29 keeping more than ``auto_beta_min_channels`` channels).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ...config import STYLE_ALPHA_LIMIT, GlobalDirectionConfig
from ...errors import InputError
from .directions import auto_beta, boundary, split_delta
from .editor import StyleEditor
from .result import StyleEditResult, as_strengths, check_beta
from .stats import ChannelStats
from .text import text_direction

log = logging.getLogger(__name__)


class DirectionMapper:
    """CLIP direction -> S-space delta with a relevance matrix and channel statistics
    (``GetBoundary`` + ``SplitS``); shared by GlobalDirection and FEU."""

    def __init__(self, fs3: torch.Tensor, stats: ChannelStats):
        self.fs3, self.stats = fs3, stats

    def resolve_beta(self, dt: torch.Tensor, beta, config) -> float:
        """``beta`` (float), ``"auto"`` or None (config value; None there means automatic)."""
        if beta is None:
            beta = config.beta if config.beta is not None else "auto"
        if isinstance(beta, str):
            if beta != "auto":
                raise InputError(f"beta must be a number in [0, 1) or 'auto', got {beta!r}")
            return auto_beta(self.fs3, dt, beta_range=config.auto_beta_range,
                             min_channels=config.auto_beta_min_channels, fallback=config.auto_beta_fallback)
        return check_beta(beta)

    def delta(self, dt: torch.Tensor, beta: float):
        """(Δs as a batch-1 StyleCode, channels kept)."""
        r, num_c = boundary(self.fs3, dt.to(self.fs3.device), beta)
        return split_delta(r, self.stats.std), num_c


class GlobalDirection(StyleEditor):
    """StyleCLIP global-direction editor.

    Args: generator (StyleGAN2 or name), clip (ClipNet or name), config (GlobalDirectionConfig),
    weights (store folder / mapping), random_init, seed, device, fs3 (path or tensor; default
    the store's ``styleclip/<generator>/fs3`` or a matrix computed by ``editrt relevance``),
    stats (ChannelStats or path; default computed once and cached in the store).
    """

    method = "global"
    config_class = GlobalDirectionConfig

    def __init__(self, generator=None, clip=None, config: GlobalDirectionConfig | None = None, *,
                 weights=None, random_init: bool = False, seed: int = 0, device="cpu", fs3=None, stats=None,
                 download: bool = False, allow_pickle: bool = False, backend="auto", precision: str | None = None):
        config = config or (GlobalDirectionConfig.preset("tiny") if random_init and generator is None
                            else GlobalDirectionConfig())
        super().__init__(generator, clip, config, weights=weights, random_init=random_init, seed=seed,
                         device=device, fs3=fs3, stats=stats, download=download, allow_pickle=allow_pickle,
                         backend=backend, precision=precision)

    @property
    def mapper(self) -> DirectionMapper:
        return DirectionMapper(self.fs3, self.stats)

    def direction(self, target: str, neutral: str | None = None) -> torch.Tensor:
        """Unit CLIP text direction Δt [D] (``GetDt``; CLIP text stage, 79 templates per prompt)."""
        return text_direction(self.clip, target, neutral if neutral is not None else self.config.neutral,
                              engines=self.engines)

    def style_delta(self, target: str, neutral: str | None = None, *, beta=None):
        """(Δs StyleCode [1], channels kept, beta used, Δt) for a text pair."""
        dt = self.direction(target, neutral)
        mapper = self.mapper
        b = mapper.resolve_beta(dt, beta, self.config)
        ds, num_c = mapper.delta(dt, b)
        return ds, num_c, b, dt

    @torch.no_grad()
    def edit(self, code_or_image, target: str, neutral: str | None = None, *,
             alpha: float | Sequence[float] | None = None, beta: float | str | None = None,
             source_image: torch.Tensor | None = None) -> StyleEditResult:
        """Edit a batch (StyleCode, W/W+, or image(s) through e4e) towards ``target``.

        alpha: one strength or several (each gives an output per input); default config.alpha.
        beta: threshold, "auto" (GetDt2), or None for config.beta.
        source_image: the unedited synthesis [B, 3, H, W] when the caller has it (e.g. a previous
        result's ``source``); the previous edit's is reused for the same code. Otherwise
        it is synthesised once, in the batch of the edits.
        """
        alphas = as_strengths(alpha, self.config.alpha, limit=STYLE_ALPHA_LIMIT, what="alpha")
        ds, num_c, b, dt = self.style_delta(target, neutral, beta=beta)  # stage: CLIP text
        code, _ = self.encode(code_or_image)  # stage: e4e (photos only)
        source = self.source_images(code, source_image)
        images, codes, source = self._apply(code, ds, alphas, source)  # stage: synthesis
        log.info("global direction %r: beta %.3f, %d channels, alpha %s", target, b, num_c, alphas)
        return StyleEditResult(images, codes, source, alphas, num_c, dt.cpu(), self.method, self.config.to_dict(),
                               {"beta": b, "target": target,
                                "neutral": neutral if neutral is not None else self.config.neutral})


__all__ = ["GlobalDirection", "DirectionMapper"]
