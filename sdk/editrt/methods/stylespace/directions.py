"""The CLIP -> S mapping of StyleCLIP (global_torch/StyleCLIP.py): ``GetBoundary`` (relevance,
beta threshold, max-abs scaling), ``SplitS`` (per-layer chunks times ``code_std``), automatic beta
(``GetDt2``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch

from ...errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ...models.stylegan2 import StyleCode

log = logging.getLogger(__name__)


def relevance(fs3: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """r = fs3 @ dt: [C] (one score per conv channel)."""
    if dt.ndim != 1 or fs3.shape[1] != dt.shape[0]:
        raise InputError(f"direction of size {tuple(dt.shape)} does not match the relevance matrix "
                         f"{tuple(fs3.shape)}; was fs3 computed with another CLIP model?")
    return fs3.float() @ dt.float().to(fs3.device)


class NoChannelOverBeta(InputError):
    """No S channel's |relevance| reaches beta: the edit would change nothing."""


def boundary(fs3: torch.Tensor, dt: torch.Tensor, beta: float) -> tuple[torch.Tensor, int]:
    """``GetBoundary`` before ``SplitS``: zero |r| < beta, divide by max |r|.

    Returns (delta [C] with max |delta| = 1, number of channels kept). No channel over beta
    is a :class:`NoChannelOverBeta` (the reference divides by zero and yields NaN images).
    """
    r = relevance(fs3, dt)
    keep = r.abs() >= beta
    num_c = int(keep.sum())
    if num_c == 0:
        raise NoChannelOverBeta(f"no channel has |relevance| >= beta={beta:g} (max {float(r.abs().max()):.3f}); "
                         "lower beta or use automatic beta")
    r = torch.where(keep, r, torch.zeros_like(r))
    return r / r.abs().max(), num_c


def auto_beta(fs3: torch.Tensor, dt: torch.Tensor, *, beta_range: tuple[float, float, float] = (0.1, 0.3, 0.01),
              min_channels: int = 20, fallback: float = 0.1) -> float:
    """``StyleCLIP.GetDt2``: the largest beta of ``np.arange(*beta_range)`` keeping more than
    ``min_channels`` channels, else ``fallback``."""
    r = relevance(fs3, dt).abs()
    betas = np.arange(*beta_range)
    counts = np.array([int((r >= b).sum()) for b in betas])
    ok = counts > min_channels
    # round off np.arange's float noise (0.18999999999999995 -> 0.19)
    return round(float(betas[ok][-1]), 10) if ok.any() else float(fallback)


def split_delta(delta_conv: torch.Tensor, code_std: "StyleCode") -> "StyleCode":
    """``SplitS(if_std=True)``: conv-view delta [C] -> a batch-1 StyleCode with each conv layer's
    chunk times that layer's ``code_std`` and zeros for the tRGB layers."""
    from ...models.stylegan2 import StyleCode

    delta = StyleCode.from_conv_delta(delta_conv.reshape(1, -1).to(code_std.device, code_std.dtype),
                                      code_std.layout)
    return delta * code_std
