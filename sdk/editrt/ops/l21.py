"""l2,1 latent norm (FlexIT's `znorm_loss='l1l2'` numerator) with a fused kernel and autograd."""

from __future__ import annotations

import torch

from ..errors import InputError
from . import reference
from ._kernels import use_kernel_for

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check(z: torch.Tensor, z0: torch.Tensor) -> None:
    if z.dim() != 4:
        raise InputError(f"l21_norm: z must be [B,C,H,W], got shape {tuple(z.shape)}")
    if z0.dim() != 4 or z0.shape[1:] != z.shape[1:] or z0.shape[0] not in (1, z.shape[0]):
        raise InputError(f"l21_norm: z0 must be [1 or {z.shape[0]},{z.shape[1]},{z.shape[2]},"
                         f"{z.shape[3]}] to match z, got {tuple(z0.shape)}")
    if z.dtype not in _FLOAT_DTYPES or z0.dtype not in _FLOAT_DTYPES:
        raise InputError(f"l21_norm: z and z0 must be floating point, got {z.dtype} and "
                         f"{z0.dtype}")
    if z0.device != z.device:
        raise InputError(f"l21_norm: z0 is on {z0.device} but z on {z.device}; move z0 once "
                         f"with z0.to(z.device) before the optimisation loop")


def l21_norm(z: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """Per sample Σ_{h,w} ‖z[b,:,h,w] − z0[b,:,h,w]‖₂ (L2 over channels, summed over positions).

    z: [B,C,H,W], any float dtype, any strides. z0: [B or 1,C,H,W] on z's device; it is a
    constant target (FlexIT's source latent): it is detached and gets no gradient, and it is
    cast to z's dtype.
    Returns [B]: float32 for float16/bfloat16/float32 z (accumulated in float32), float64 for
    float64 z. Differentiable w.r.t. z; the gradient is 0 (not NaN) where z equals z0 at a
    position. Runs the fused editrt._C kernel when available, else `reference.l21_norm`.
    """
    _check(z, z0)
    z0 = z0.detach()
    if z0.dtype != z.dtype:
        z0 = z0.to(z.dtype)
    if use_kernel_for(z.device):
        return torch.ops.editrt.l21_norm_fwd(z, z0)[0]
    return reference.l21_norm(z, z0)
