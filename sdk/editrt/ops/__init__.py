"""Differentiable ops of FlexIT's loss with fused kernels (editrt._C, CPU and CUDA).

    l21_norm(z, z0) -> [B]                         l2,1 norm of z − z0 (latent regulariser)
    lpips_prepare_target(feats_y) -> list          normalised LPIPS target features (once)
    lpips_distance(feats_x, target_normed, weights) -> [B]
    use_kernels(False)                             force the torch reference (call or `with`)
    kernel_status() -> dict                        what is compiled and active, and why not
    reference                                      the plain torch implementations

The ops are torch custom ops (namespace `editrt`) with autograd and fake kernels, so they work
in eager mode, under autograd and in torch.compile. Without a built extension they run the
reference and warn once.
"""

from __future__ import annotations

from . import reference
from ._kernels import kernel_available, kernel_status, kernels_enabled, use_kernels
from .l21 import l21_norm
from .lpips_op import lpips_distance, lpips_prepare_target

__all__ = ["l21_norm", "lpips_prepare_target", "lpips_distance", "use_kernels", "kernels_enabled",
           "kernel_available", "kernel_status", "reference"]
