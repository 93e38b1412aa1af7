"""The toy world's independent judge: a small CNN over the 24 toy classes.

It plays two roles of the FlexIT protocol on the toy world: the accuracy classifier (DeiT on
ImageNet) and, through its pooled features, the feature extractor of SFID/CSFID (Inception).
It shares no weights, architecture or training signal with the toy CLIP that FlexIT optimises
against, so an edit that only fools CLIP does not count as a success.
"""

from __future__ import annotations

import torch
from torch import nn

from . import world

FEATURE_DIM = 128


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU())


class ToyClassifier(nn.Module):
    """[B, 3, 64, 64] in [0, 1] -> logits [B, 24]; ``features`` -> [B, 128] (global average pool)."""

    def __init__(self, num_classes: int = len(world.CLASSES)):
        super().__init__()
        stem = nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.GroupNorm(8, 32), nn.SiLU())  # 64 -> 32 px
        self.trunk = nn.Sequential(stem, _block(32, 64), _block(64, 96), _block(96, FEATURE_DIM))  # -> 4 px
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    def features(self, x01: torch.Tensor) -> torch.Tensor:
        if x01.shape[-2:] != (world.IMAGE_SIZE, world.IMAGE_SIZE):
            x01 = nn.functional.interpolate(x01, size=(world.IMAGE_SIZE, world.IMAGE_SIZE), mode="bilinear",
                                            antialias=True, align_corners=False)
        return self.trunk((x01 - self.mean) * 2).mean(dim=(2, 3))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x01))


__all__ = ["ToyClassifier", "FEATURE_DIM"]
