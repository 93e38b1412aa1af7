"""Input pre-processing as data (kept on each ModelSpec) and the one resize-and-centre-crop.

As open_clip ``pretrained.py`` keeps mean, std and resize mode with each pretrained tag, a
:class:`Preprocess` records what a network expects from a [0, 1] RGB image, so an export, a
serving client or a benchmark prepares inputs the way the torch method does.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import InputError

RESIZE_MODES = ("shorter_side_center_crop", "shorter_side", "exact", "none")


def resize_center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision ``Resize(size)`` (shorter side, bilinear, antialiased) + ``CenterCrop(size)``.

    x: [..., H, W] float images; returns [..., size, size]. A side already at ``size`` is not
    resampled (so an image of the right size passes through bit-exact). This is FlexIT's
    ``test_prep``, CLIP's deterministic view and the evaluation protocol's resize.
    """
    from torchvision.transforms.v2 import functional as TF

    if x.ndim < 3:
        raise InputError(f"resize_center_crop expects [..., H, W] images, got {tuple(x.shape)}")
    if min(x.shape[-2:]) != size:
        x = TF.resize(x, size, antialias=True)
    if tuple(x.shape[-2:]) != (size, size):
        x = TF.center_crop(x, [size, size])
    return x


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """What a network's image input is, made from a [0, 1] RGB image [B, 3, H, W].

    ``resize``: ``shorter_side_center_crop`` (:func:`resize_center_crop`), ``shorter_side``
    (resize only; the input must already be square), ``exact`` (the input must already be
    ``size``), ``none`` (any size; fully convolutional). Then ``(x * scale - mean) / std``:
    CLIP uses OpenAI's mean/std with scale 1; VQGAN and e4e map to [-1, 1] (mean 0.5, std 0.5).
    """

    size: int | None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize: str = "shorter_side_center_crop"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise InputError(f"Preprocess.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if self.resize != "none" and not self.size:
            raise InputError(f"Preprocess with resize={self.resize!r} needs a size")

    def resized(self, x01: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, 3, S, S] in [0, 1], as ``resize`` says."""
        from torchvision.transforms.v2 import functional as TF

        if self.resize == "shorter_side_center_crop":
            return resize_center_crop(x01, self.size)
        if self.resize == "shorter_side":
            if x01.shape[-1] != x01.shape[-2]:
                raise InputError(f"this network needs square images, got {x01.shape[-2]}x{x01.shape[-1]}")
            return x01 if x01.shape[-1] == self.size else TF.resize(x01, [self.size, self.size], antialias=True)
        if self.resize == "exact" and tuple(x01.shape[-2:]) != (self.size, self.size):
            raise InputError(f"this network needs {self.size}x{self.size} images, got "
                             f"{x01.shape[-2]}x{x01.shape[-1]}")
        return x01

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
        return (x01 - mean) / std

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.resized(x01))


__all__ = ["Preprocess", "resize_center_crop", "RESIZE_MODES"]
