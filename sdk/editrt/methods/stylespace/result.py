"""The result of every direction edit, and the checks of its inputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

from ...errors import InputError, NumericalError
from .identity import generator_device
from .relevance_matrix import to_uint8_truncate

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from ...models.stylegan2 import StyleCode, StyleGAN2

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StyleEditResult:
    """Output of ``GlobalDirection/FEU/DeltaEdit.edit``; agrees with FlexIT's ``EditResult``:
    ``.image`` is the first output as a PIL image, ``.images01`` the outputs as float32 in [0, 1],
    ``.pil()`` the PIL images.

    images: [B, K, 3, H, W] float in [-1, 1] (the generator's range), K = number of strengths
    (in ``strengths`` order). codes: K StyleCodes of batch B (the edited codes). source:
    [B, 3, H, W] unedited synthesis in [-1, 1]. channels_changed: conv channels with a non-zero
    delta. direction: the CLIP-space direction [D].
    """

    images: torch.Tensor
    codes: list["StyleCode"]
    source: torch.Tensor
    strengths: tuple[float, ...]
    channels_changed: int
    direction: torch.Tensor
    method: str
    config: dict[str, Any]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def images01(self) -> torch.Tensor:
        """[B, K, 3, H, W] float32 in [0, 1]: ``(images + 1) / 2``, clamped."""
        return ((self.images.float() + 1) / 2).clamp(0, 1)

    @property
    def image(self) -> "Image.Image":
        """The first input's edit at the first strength as a PIL image (StyleCLIP's uint8
        conversion: truncation)."""
        return self.pil()[0]

    def pil(self) -> list["Image.Image"]:
        """Every output as a PIL image, input-major: [b0 k0, b0 k1, ..., b1 k0, ...]."""
        from PIL import Image

        u8 = self.to_uint8()  # [B, K, H, W, 3]
        arr = u8.reshape(-1, *u8.shape[2:]).numpy()
        return [Image.fromarray(a, "RGB") for a in arr]

    @property
    def code(self) -> "StyleCode":
        return self.codes[0]

    def to_uint8(self) -> torch.Tensor:
        """[B, K, H, W, 3] uint8 (StyleCLIP torch conversion: truncation)."""
        return to_uint8_truncate(self.images).permute(0, 1, 3, 4, 2).contiguous()

    def grid(self, include_source: bool = True) -> torch.Tensor:
        """One [3, B*H, (K+1)*W] image in [0, 1]: a row per input, source then each strength."""
        imgs = self.images
        if include_source:
            imgs = torch.cat([self.source.unsqueeze(1), imgs], dim=1)
        b, k, c, h, w = imgs.shape
        grid = imgs.permute(2, 0, 3, 1, 4).reshape(c, b * h, k * w)
        return ((grid.float() + 1) / 2).clamp(0, 1)

    def save(self, path: str | os.PathLike, include_source: bool = True) -> Path:
        """Write :meth:`grid` atomically (format from the suffix) plus ``<path>.json`` metadata."""
        from ...imageio import atomic_write_bytes, save_image

        path = Path(path)
        out = save_image(self.grid(include_source), path)
        meta = {"method": self.method, "config": self.config, "strengths": list(self.strengths),
                "channels_changed": self.channels_changed,
                **{k: v for k, v in self.extras.items() if isinstance(v, (int, float, str, list, bool))}}
        atomic_write_bytes(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=2).encode())
        return out


def as_strengths(value: float | Sequence[float], default: float, *, limit: float, what: str) -> tuple[float, ...]:
    """One or several strengths -> tuple, each finite and within ``[-limit, limit]``."""
    vals = [default] if value is None else ([value] if isinstance(value, (int, float)) else list(value))
    if not vals:
        raise InputError(f"give at least one {what}")
    for v in vals:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > limit:
            raise InputError(f"{what} {v!r} is out of range: use a finite value in [-{limit:g}, {limit:g}]")
    return tuple(float(v) for v in vals)


def check_beta(beta: float) -> float:
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or not 0.0 <= beta < 1.0:
        raise InputError(f"beta {beta!r} is out of range: the disentanglement threshold lies in [0, 1) "
                         "(|relevance| of unit vectors is at most 1; the reference uses 0.08-0.3)")
    return float(beta)


def check_images_finite(images: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(images).all():
        raise NumericalError(f"{what} produced NaN or infinite pixels; lower the strength")
    return images


CPU_ONE_IMAGE_FROM = 128  # px: on CPU, synthesis runs one image per call from this size up


def default_batch(generator: "StyleGAN2", device: "torch.device | str | None" = None) -> int:
    """Images per synthesis call on ``device`` (default: the generator's).

    CPU, 128 px and above: one. Per image, one call of 2-8 images was 0.72-0.78x as fast as
    batch 1 at 256 px and 0.89-0.95x at 1024 px, with 6.4 GB instead of 1.9 GB at 1024 px and
    batch 8 (benchmarks/cpu_paper.py batch, one thread), so B images cost B times one image.
    Small generators are overhead-bound and batch as on a GPU (a 32 px batch of 8 was 3-4.5x
    faster per image). GPU: large batches for small generators, 8 at 1024 px (memory bound).
    """
    dev = torch.device(device) if device is not None else generator_device(generator)
    if dev.type == "cpu" and generator.size >= CPU_ONE_IMAGE_FROM:
        return 1
    return max(8, min(512, (256 * 32 * 32) // generator.size ** 2))
