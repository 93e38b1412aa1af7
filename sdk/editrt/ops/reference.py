"""Plain torch reference implementations of the editrt ops: the specification the kernels match.

Both are differentiable by torch autograd and zero-safe (gradient 0, never NaN, at a zero vector):
`torch.linalg.vector_norm` has the subgradient 0 there, where `x.pow(2).sum().sqrt()` gives NaN.
Results are in float32 for float16/bfloat16/float32 inputs and float64 for float64 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError

LPIPS_EPS = 1e-10  # lpips.normalize_tensor adds this to the channel norm


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation and output dtype of the ops: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def l21_norm(z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """l2,1 norm of z − z0: per sample, the sum over positions of the L2 norm over channels.

    z: [B,C,H,W]; z0: [B or 1,C,H,W] (a constant target: detached, no gradient).
    Returns [B] in `acc_dtype(z.dtype)`; its gradient w.r.t. z is 0 where z == z0 at a position.
    """
    acc = acc_dtype(z.dtype)
    diff = z.to(acc) - z0.detach().to(acc)
    return torch.linalg.vector_norm(diff, dim=1).sum(dim=(1, 2))


def lpips_normalize(feat: torch.Tensor) -> torch.Tensor:
    """lpips.normalize_tensor: feat / (‖feat‖₂ over channels + 1e-10), per position; [B,C,H,W].

    Same values as lpips. The gradient is 0 at an all-zero feature vector (a dead ReLU
    position), where lpips' autograd gives NaN and the exact slope 1/eps = 1e10 would overflow
    fp16 and swamp a normalised gradient.
    """
    norm = torch.linalg.vector_norm(feat, dim=1, keepdim=True)
    return torch.where(norm > 0, feat / (norm + LPIPS_EPS), torch.zeros_like(feat))


def lpips_prepare_target(feats_y: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Normalised target features (detached), computed once per target image."""
    return [lpips_normalize(f.detach()) for f in feats_y]


def lpips_layer(feat_x: torch.Tensor, target_normed: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
    """One layer's distance: mean_{h,w} Σ_c w_c (n_x − n_y)²; [B] in `acc_dtype(feat_x.dtype)`.

    feat_x: [B,C,H,W]; target_normed: [B or 1,C,H,W]; weight: [C] or [1,C,1,1] (lpips NetLinLayer).
    """
    acc = acc_dtype(feat_x.dtype)
    w = weight.detach().reshape(1, -1, 1, 1).to(acc)
    diff = lpips_normalize(feat_x.to(acc)) - target_normed.detach().to(acc)
    return (diff.square() * w).sum(dim=1).mean(dim=(1, 2))


def lpips_distance(feats_x: Sequence[torch.Tensor], target_normed: Sequence[torch.Tensor],
                   weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """LPIPS distance Σ_l lpips_layer(...) → [B]; equals `lpips.LPIPS(...)(x, y).view(B)`."""
    total = None
    for fx, ty, w in zip(feats_x, target_normed, weights, strict=True):
        d = lpips_layer(fx, ty, w)
        total = d if total is None else total + d  # in layer order, as lpips sums
    if total is None:
        raise InputError("lpips_distance needs at least one layer")
    return total
