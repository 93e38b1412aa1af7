"""FlexIT's metrics (FlexIT's ``eval.py``; paper §4.1).

- LPIPS-alex between each output and its input, both ``Resize(256) + CenterCrop(256)``.
- Accuracy: the classifier's argmax restricted to the target classes of the query set equals
  the query's target; "unedited" when it equals the source.
- SFID: the Fréchet distance between Gaussians with *diagonal* covariance fitted to the
  outputs' features and to the reference (training-image) features:
  ``||mu_1 - mu_2||^2 + sum_d (sigma_1d - sigma_2d)^2`` (for diagonal covariances
  ``tr(S1 + S2 - 2 (S1 S2)^1/2)`` reduces to the squared difference of the standard deviations).
- CSFID: SFID per target class (outputs of queries with that target vs the class's reference
  features), averaged over the target classes present.

The reference script reports only the mean term ("SFID(mean)", "CSFID(mean)"; its std term is
commented out). Both are computed here: ``covariance=False`` gives the reference's numbers.
Standard deviations are unbiased (torch ``std``); a class with a single output has std 0 (the
reference's ``nan_to_num(0)``).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import torch

from ..errors import InputError
from ..models.preprocess import resize_center_crop

LPIPS_SIZE = 256  # eval.py: resize(256) for LPIPS and Inception


def stack_resized(images, size: int) -> torch.Tensor:
    """A list of [3, H, W] (sizes may differ) or a [B, 3, H, W] tensor -> [B, 3, size, size]."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return resize_center_crop(images, size)
    return torch.cat([resize_center_crop(im[None], size) for im in images])


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> the values a saved 8-bit PNG holds (truncation, as ``ToPILImage``).

    The tiny offset keeps values that already are k/255 at k despite float rounding (k/255*255
    can land just below k), so 8-bit inputs pass through unchanged.
    """
    return x.clamp(0, 1).mul(255).add(1e-3).floor().clamp(max=255).div(255)


@torch.no_grad()
def lpips_to_inputs(lpips_net, outputs: torch.Tensor, inputs: torch.Tensor, size: int = LPIPS_SIZE) -> torch.Tensor:
    """[B] LPIPS distances between outputs and inputs ([B,3,H,W] in [0,1], any sizes) at ``size``."""
    if outputs.shape[0] != inputs.shape[0]:
        raise InputError(f"{outputs.shape[0]} outputs for {inputs.shape[0]} inputs")
    a, b = resize_center_crop(outputs, size), resize_center_crop(inputs, size)
    dev = next(lpips_net.parameters()).device
    return lpips_net(a.to(dev), b.to(dev)).flatten().float().cpu()


def restricted_argmax(logits: torch.Tensor, class_ids: list[int] | torch.Tensor) -> torch.Tensor:
    """[B, C] logits -> [B] class ids: argmax among ``class_ids`` only (the 273 target classes)."""
    ids = torch.as_tensor(class_ids, dtype=torch.long, device=logits.device)
    return ids[logits[:, ids].argmax(-1)].cpu()


@dataclasses.dataclass
class FeatureStats:
    """Per-dimension mean and (unbiased) standard deviation of a feature set [N, D]."""

    mean: torch.Tensor  # [D] float64
    std: torch.Tensor  # [D] float64
    count: int

    @classmethod
    def of(cls, features: torch.Tensor) -> "FeatureStats":
        if features.ndim != 2 or features.shape[0] == 0:
            raise InputError(f"features must be a non-empty [N, D] tensor, got {tuple(features.shape)}")
        f = features.double()
        std = f.std(0) if f.shape[0] > 1 else torch.zeros(f.shape[1], dtype=torch.float64)
        return cls(mean=f.mean(0), std=std.nan_to_num(0.0), count=int(f.shape[0]))


def sfid(a: FeatureStats | torch.Tensor, b: FeatureStats | torch.Tensor, *, covariance: bool = True) -> float:
    """Simplified (diagonal-covariance) Fréchet distance; ``covariance=False``: mean term only."""
    a = a if isinstance(a, FeatureStats) else FeatureStats.of(a)
    b = b if isinstance(b, FeatureStats) else FeatureStats.of(b)
    if a.mean.shape != b.mean.shape:
        raise InputError(f"feature sizes differ: {tuple(a.mean.shape)} vs {tuple(b.mean.shape)}")
    d = (a.mean - b.mean).pow(2).sum()
    if covariance:
        d = d + (a.std - b.std).pow(2).sum()
    return float(d)


def csfid(features: torch.Tensor, labels: torch.Tensor | list[int], reference: Mapping[int, FeatureStats], *,
          covariance: bool = True) -> float:
    """Mean over the target classes in ``labels`` of the SFID between that class's outputs and
    ``reference[class]``."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.shape[0] != features.shape[0]:
        raise InputError(f"{labels.shape[0]} labels for {features.shape[0]} feature rows")
    scores = []
    for c in sorted(set(labels.tolist())):
        if c not in reference:
            raise InputError(f"no reference statistics for target class {c}")
        scores.append(sfid(features[labels == c], reference[c], covariance=covariance))
    if not scores:
        raise InputError("CSFID of an empty set")
    return sum(scores) / len(scores)


@dataclasses.dataclass
class ReferenceStats:
    """Feature statistics of the target classes' training images: overall and per class."""

    overall: FeatureStats
    per_class: dict[int, FeatureStats]

    @classmethod
    def of(cls, features: torch.Tensor, labels: torch.Tensor | list[int]) -> "ReferenceStats":
        labels = torch.as_tensor(labels, dtype=torch.long)
        return cls(FeatureStats.of(features),
                   {c: FeatureStats.of(features[labels == c]) for c in sorted(set(labels.tolist()))})

    def to_tensors(self) -> dict[str, torch.Tensor]:
        ids = sorted(self.per_class)
        return {"mean": self.overall.mean, "std": self.overall.std,
                "count": torch.tensor([self.overall.count]),
                "class_ids": torch.tensor(ids, dtype=torch.long),
                "class_mean": torch.stack([self.per_class[i].mean for i in ids]),
                "class_std": torch.stack([self.per_class[i].std for i in ids]),
                "class_count": torch.tensor([self.per_class[i].count for i in ids])}

    @classmethod
    def from_tensors(cls, t: Mapping[str, torch.Tensor]) -> "ReferenceStats":
        try:
            per = {int(i): FeatureStats(t["class_mean"][k].double(), t["class_std"][k].double(), int(t["class_count"][k]))
                   for k, i in enumerate(t["class_ids"].tolist())}
            return cls(FeatureStats(t["mean"].double(), t["std"].double(), int(t["count"][0])), per)
        except KeyError as exc:
            raise InputError(f"reference statistics file lacks {exc}") from None

    def save(self, path) -> None:
        from ..toy.train import save_safetensors

        save_safetensors(self.to_tensors(), path)

    @classmethod
    def load(cls, path) -> "ReferenceStats":
        from .. import weights as W

        return cls.from_tensors(W.load_checkpoint(path))


__all__ = ["stack_resized", "quantize_uint8", "lpips_to_inputs", "restricted_argmax", "FeatureStats", "sfid",
           "csfid", "ReferenceStats", "LPIPS_SIZE"]
