"""LPIPS distance from trunk features, with a fused per-layer kernel and autograd.

Same formula as the lpips package (v0.1, spatial=False): per layer l,
n = f / (‖f‖₂ over channels + 1e-10) per position, d_l = mean_{h,w} Σ_c w_{l,c} (n_x − n_y)²,
distance = Σ_l d_l. The trunk (VGG/AlexNet/SqueezeNet with lpips' ScalingLayer in front) stays
with the caller: these ops start from its feature maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from . import reference
from ._kernels import use_kernel_for
from .reference import acc_dtype

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_feature(f: torch.Tensor, what: str, layer: int) -> None:
    if not isinstance(f, torch.Tensor) or f.dim() != 4:
        shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
        raise InputError(f"lpips: {what}[{layer}] must be a [B,C,H,W] tensor, got {shape}")
    if f.dtype not in _FLOAT_DTYPES:
        raise InputError(f"lpips: {what}[{layer}] must be floating point, got {f.dtype}")
    if f.shape[2] * f.shape[3] == 0:
        raise InputError(f"lpips: {what}[{layer}] has no spatial positions: {tuple(f.shape)}")


def lpips_prepare_target(feats_y: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Normalises the target image's trunk features once: f / (‖f‖₂ over channels + 1e-10).

    feats_y: per layer [B or 1,C_l,H_l,W_l]. Returns detached tensors of the same shapes and
    dtypes, to pass as `target_normed` to every `lpips_distance` call.
    """
    for i, f in enumerate(feats_y):
        _check_feature(f, "feats_y", i)
    return reference.lpips_prepare_target(feats_y)


def lpips_distance(feats_x: Sequence[torch.Tensor], target_normed: Sequence[torch.Tensor],
                   weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """LPIPS distance between the image behind `feats_x` and the prepared target, per sample.

    feats_x: per layer [B,C_l,H_l,W_l] (e.g. lpips' vgg16 relu1_2 … relu5_3 outputs), any float
    dtype and strides. target_normed: from `lpips_prepare_target`, per layer [B or 1,C_l,H_l,W_l]
    (cast to feats_x's dtype). weights: per layer the lin layer weight, [1,C_l,1,1] as in lpips'
    NetLinLayer or [C_l].
    Returns [B] (lpips.LPIPS returns the same values as [B,1,1,1]): float32 for
    float16/bfloat16/float32 features (accumulated in float32), float64 for float64.
    Differentiable w.r.t. feats_x only: targets and weights are constants (detached). Runs the
    fused editrt._C kernels when available, else the torch reference.
    """
    if not (len(feats_x) == len(target_normed) == len(weights)) or len(feats_x) == 0:
        raise InputError(f"lpips_distance: need one target and one weight per feature layer, got "
                         f"{len(feats_x)} features, {len(target_normed)} targets, "
                         f"{len(weights)} weights")
    device = feats_x[0].device
    use_kernel = use_kernel_for(device)
    total = None
    for i, (fx, ty, w) in enumerate(zip(feats_x, target_normed, weights, strict=True)):
        _check_feature(fx, "feats_x", i)
        _check_feature(ty, "target_normed", i)
        if ty.shape[1:] != fx.shape[1:] or ty.shape[0] not in (1, fx.shape[0]):
            raise InputError(f"lpips_distance: target_normed[{i}] {tuple(ty.shape)} does not match "
                             f"feats_x[{i}] {tuple(fx.shape)} (batch must be 1 or equal)")
        if w.numel() != fx.shape[1]:
            raise InputError(f"lpips_distance: weights[{i}] has {w.numel()} values for "
                             f"{fx.shape[1]} channels")
        if fx.device != device or ty.device != device or w.device != device:
            raise InputError(f"lpips_distance: layer {i} mixes devices ({fx.device}, {ty.device}, "
                             f"{w.device}); keep features, targets and weights on {device}")
        w = w.detach().reshape(-1).to(acc_dtype(fx.dtype))
        ty = ty.detach()
        if ty.dtype != fx.dtype:
            ty = ty.to(fx.dtype)
        if use_kernel:
            d = torch.ops.editrt.lpips_layer_fwd(fx, ty, w)[0]
        else:
            d = reference.lpips_layer(fx, ty, w)
        total = d if total is None else total + d  # layer order, as lpips sums
    return total
