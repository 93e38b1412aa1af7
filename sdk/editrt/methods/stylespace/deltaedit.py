"""DeltaEdit text inference (DeltaEdit scripts/inference.py): a Delta Mapper predicts Δs from the source's
S code and [CLIP image embedding, CLIP text delta].

Per target text t (neutral ``face`` by default, as the reference):
1. dt = t_target - t_neutral, template-averaged, **unnormalised** (``map_tool.GetDt``);
2. mask = |fs3 · dt| < threshold (0.03): those conv channels are not edited;
3. dt / max(|dt|, 1e-5) is the network's text input;
4. c = [normalised CLIP image embedding of the source, dt]; Δs = mapper(s, c), masked;
5. s' = s + strength · Δs on the 17 conv styles; tRGB styles stay those of W+ (decoder_validate).

The CLIP image embedding uses DeltaEdit's preprocessing: nearest upsampling ×7 then average
pooling down to CLIP's input size on the [-1, 1] image, with no CLIP mean/std normalisation.
We compute that exactly as an area-average resampling (two small matrix products) instead of
materialising the 7× image (616 MB per 1024 px image). Source images: the synthesised image
for codes (``generate_codes.py``), the 256 px e4e input for photos (``inference_real.py``).
``strength`` (default 1) scales Δs; 1 is the reference behaviour.

Empty mask: when no channel reaches the threshold, the reference's ``improved_ds`` sets every
entry of Δs to 0 and ``decoder_validate`` renders the source unchanged (nothing divides by the
masked relevance, so nothing becomes NaN). We return that same unchanged image and emit an
:class:`~editrt.errors.EmptyEditWarning`, so a batch continues and the result says
``channels_changed == 0``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

import torch
import torch.nn.functional as F

from ...config import STYLE_ALPHA_LIMIT, DeltaEditConfig
from ...errors import EmptyEditWarning, InputError, WeightsError
from ...models.delta_mapper import DeltaMapper, load_delta_mapper
from .directions import relevance
from .editor import StyleEditor
from .result import StyleEditResult, as_strengths
from .text import text_direction

log = logging.getLogger(__name__)

UPSAMPLE = 7  # DeltaEdit: nn.Upsample(scale_factor=7) before AvgPool2d(size // 32)


def _area_matrix(src: int, dst: int, dtype=torch.float64) -> torch.Tensor:
    """[dst, src] weights: output pixel i averages the source interval [i·src/dst, (i+1)·src/dst).

    Equal to nearest-upsampling by 7 then average pooling by 7·src/dst when that is an integer
    (the reference case): each pooled block covers whole 1/7-pixel cells of the source.
    """
    edges = torch.arange(dst + 1, dtype=dtype) * (src / dst)
    lo, hi = edges[:-1, None], edges[1:, None]
    s = torch.arange(src, dtype=dtype)[None]
    overlap = (torch.minimum(hi, s + 1) - torch.maximum(lo, s)).clamp_min(0)
    return overlap / (src / dst)


def deltaedit_clip_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """[B, 3, H, W] images in [-1, 1] -> [B, 3, size, size] as DeltaEdit feeds CLIP (no
    normalisation). Non-square images are center-cropped to a square first."""
    h, w = images.shape[-2:]
    if h != w:
        m = min(h, w)
        top, left = (h - m) // 2, (w - m) // 2
        images = images[..., top:top + m, left:left + m]
        h = w = m
    a = _area_matrix(h, size).to(images.device, torch.float32)
    return torch.einsum("ih,bchw,jw->bcij", a, images.float(), a)


class DeltaEdit(StyleEditor):
    """DeltaEdit editor: ``edit(code_or_image, target, neutral=None, strength=...)``.

    mapper: a DeltaMapper, or None to load ``config.mapper`` (``net_face.pth`` from the store /
    weights; random with ``random_init``). fs3 as GlobalDirection (used only as a channel mask).
    """

    method = "deltaedit"
    config_class = DeltaEditConfig

    def __init__(self, generator=None, clip=None, config: DeltaEditConfig | None = None, *, mapper=None,
                 weights=None, random_init: bool = False, seed: int = 0, device="cpu", fs3=None, stats=None,
                 download: bool = False, allow_pickle: bool = False, backend="auto", precision: str | None = None):
        config = config or (DeltaEditConfig.preset("tiny") if random_init and generator is None else DeltaEditConfig())
        super().__init__(generator, clip, config, weights=weights, random_init=random_init, seed=seed,
                         device=device, fs3=fs3, stats=stats, download=download, allow_pickle=allow_pickle,
                         backend=backend, precision=precision)
        injected_mapper = mapper is not None
        if mapper is None:
            mapper = load_delta_mapper(config.mapper, weights=weights, random_init=random_init, seed=seed,
                                       download=download, allow_pickle=allow_pickle,
                                       device=self.device)
        if not isinstance(mapper, DeltaMapper):
            raise InputError(f"mapper must be a DeltaMapper, got {type(mapper).__name__}")
        mc = mapper.config
        if mc.s_dim != self.generator.layout.conv_total or mc.clip_dim != 2 * self.clip.embed_dim:
            raise WeightsError(
                f"Delta Mapper {config.mapper} expects {mc.s_dim} conv style channels and a {mc.clip_dim}-d "
                f"condition; the generator has {self.generator.layout.conv_total} and CLIP {self.clip.name} "
                f"gives {2 * self.clip.embed_dim}: the mapper belongs to another generator or CLIP model. A "
                f"mapper reads and writes one generator's style channels, so the FFHQ 1024 mapper cannot be "
                f"padded onto another layout (channel k of another generator means something else); train "
                f"one for this generator with `editrt train deltaedit` and pass it as mapper=")
        self.mapper = mapper.to(self.device)
        if not injected_mapper:
            self._register(self.mapper)

    @classmethod
    def specs(cls, config=None, *, photos: bool = False) -> list[str]:
        """Global direction's specs plus the CLIP image tower and the Delta Mapper."""
        from ...models.clip import canonical_name

        cfg = config or cls.config_class()
        return (super().specs(cfg, photos=photos)
                + [f"clip/{canonical_name(cfg.clip_model)}/image", f"deltaedit/{cfg.mapper}/mapper"])

    @torch.no_grad()
    def clip_image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Unit CLIP image embeddings [B, D] of [-1, 1] images, DeltaEdit preprocessing."""
        x = deltaedit_clip_input(images.to(self.device), self.clip.image_size)
        return F.normalize(self.engines.run(self.image_tower, x).float(), dim=-1)

    def text_condition(self, target: str, neutral: str | None = None, *, threshold: float | None = None):
        """(unit dt [D], keep mask [C_conv] bool (True = may change, may be all False), raw |dt|)."""
        threshold = self.config.threshold if threshold is None else threshold
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 2.0:
            raise InputError(f"threshold {threshold!r} is out of range [0, 2)")
        dt_raw = text_direction(self.clip, target, neutral if neutral is not None else self.config.neutral,
                                normalize=False, engines=self.engines).to(self.device)
        keep = relevance(self.fs3, dt_raw).abs() >= threshold
        if not keep.any():
            warnings.warn(f"DeltaEdit: no channel has |fs3 . dt| >= threshold={threshold:g} for {target!r}; the "
                          "output equals the source (as the reference's improved_ds); lower the threshold to edit",
                          EmptyEditWarning, stacklevel=3)
        dt = dt_raw / dt_raw.norm().clamp_min(1e-5)
        return dt, keep, float(dt_raw.norm())

    @torch.no_grad()
    def edit(self, code_or_image, target: str, neutral: str | None = None, *,
             strength: float | Sequence[float] | None = None, threshold: float | None = None,
             source_image: torch.Tensor | None = None) -> StyleEditResult:
        """Edit a batch (StyleCode, W/W+, or photos through e4e) towards ``target``.

        strength: one multiplier of Δs or several (one output each); default config.strength (1).
        source_image: as GlobalDirection.edit. The source is synthesised once and serves both the
        CLIP image condition (codes) and the result's ``source``.
        """
        strengths = as_strengths(strength, self.config.strength, limit=STYLE_ALPHA_LIMIT, what="strength")
        dt, keep, dt_norm = self.text_condition(target, neutral, threshold=threshold)  # stage: CLIP text
        code, photos = self.encode(code_or_image)  # stage: e4e (photos only)
        source = self.source_images(code, source_image)
        if source is None:
            source = self.synthesize(code)  # stage: synthesis (the unedited images, once)
            self._remember_source(code, source)
        c_img = self.clip_image_embedding(photos if photos is not None else source)  # stage: CLIP image
        cond = torch.cat([c_img, dt.expand(c_img.shape[0], -1)], dim=1)
        delta = self.engines.run(self.mapper, code.conv_view().float(), cond)  # stage: Delta Mapper
        delta = delta.masked_fill(~keep, 0.0)  # improved_ds: ds[select] = 0 (assignment, not a product)
        if keep.any():
            images, codes, source = self._apply(code, delta, strengths, source)  # stage: synthesis (edits)
        else:  # nothing may change: every output is the source itself (no second synthesis)
            images = source.unsqueeze(1).expand(-1, len(strengths), *source.shape[1:]).clone()
            codes = [code.add_conv_delta(delta, k) for k in strengths]
        n_changed = int(keep.sum())
        log.info("DeltaEdit %r: %d channels unmasked, |dt| %.4f", target, n_changed, dt_norm)
        return StyleEditResult(images, codes, source, strengths, n_changed, dt.cpu(), self.method,
                               self.config.to_dict(), {"target": target, "dt_norm": dt_norm,
                                                       "neutral": neutral if neutral is not None else self.config.neutral})


__all__ = ["DeltaEdit", "deltaedit_clip_input"]
