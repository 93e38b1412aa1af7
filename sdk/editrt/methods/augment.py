"""FlexIT's CLIP augmentations: RandomRotation -> RandomResizedCrop -> RandomHorizontalFlip.

Two implementations with the same parameter distributions (torchvision's):
- ``reference_views``: torchvision transforms applied view by view, as the reference code does
  (rotation with nearest interpolation, then crop + antialiased bilinear resize, then flip),
  drawn from a seeded private RNG; ``global_rng_views`` is the same on torch's global RNG, the
  reference's exact draws (FlexITConfig.exact_reference).
- ``batched_views``: every view of every image as ONE batched affine warp (``affine_grid`` +
  bilinear ``grid_sample``): rotation, crop, resize and flip composed into a single 2x3 matrix.
  Fixed shapes, one kernel launch, no host sync: this is what makes a step capturable as a CUDA
  graph. It resamples once (bilinear) instead of twice (nearest, then antialiased bilinear), a
  documented deviation measured in tests/test_augment.py.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """Per-view random draws: angle (degrees, counter-clockwise), crop box in pixels of the
    rotated image (top, left, height, width), horizontal flip."""

    angle: torch.Tensor  # [N]
    box: torch.Tensor  # [N, 4] float (i, j, h, w)
    flip: torch.Tensor  # [N] bool


def sample_params(n: int, height: int, width: int, *, degrees: float, scale: tuple[float, float],
                  ratio: tuple[float, float], hflip: bool, generator: torch.Generator) -> AugmentParams:
    """Draw ``n`` views with torchvision's distributions (RandomRotation.get_params,
    RandomResizedCrop.get_params with its 10 attempts and center-crop fallback, p=0.5 flip)."""
    g = generator
    angle = (torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * degrees
    area = height * width
    attempts = 10
    target_area = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, attempts, generator=g, dtype=torch.float64))
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * torch.rand(n, attempts, generator=g, dtype=torch.float64))
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    u_i = torch.rand(n, generator=g, dtype=torch.float64)
    u_j = torch.rand(n, generator=g, dtype=torch.float64)
    boxes = torch.empty(n, 4, dtype=torch.float64)
    for k in range(n):
        a = int(first[k])
        if a >= 0:
            hh, ww = float(h[k, a]), float(w[k, a])
        else:  # torchvision's fallback: whole image at the clamped ratio
            in_ratio = width / height
            if in_ratio < ratio[0]:
                ww, hh = width, round(width / ratio[0])
            elif in_ratio > ratio[1]:
                hh, ww = height, round(height * ratio[1])
            else:
                ww, hh = width, height
        i = math.floor(u_i[k] * (height - hh + 1))
        j = math.floor(u_j[k] * (width - ww + 1))
        boxes[k] = torch.tensor([i, j, hh, ww], dtype=torch.float64)
    flip = (torch.rand(n, generator=g) < 0.5) if hflip else torch.zeros(n, dtype=torch.bool)
    return AugmentParams(angle=angle.float(), box=boxes.float(), flip=flip)


def affine_matrices(p: AugmentParams, height: int, width: int) -> torch.Tensor:
    """[N, 2, 3] ``affine_grid`` matrices mapping output coords to input coords (align_corners=False).

    Output (u, v) in [-1, 1]^2 -> flip -> crop box in the rotated image -> inverse rotation about
    the centre (in pixel units, so non-square images rotate correctly).
    """
    i, j, h, w = p.box.double().unbind(1)
    sx = torch.where(p.flip, -1.0, 1.0).double()
    # output -> rotated-image normalised coords: X = (w/W) * sx*u + (2j + w)/W - 1
    ax, bx = w / width * sx, (2 * j + w) / width - 1
    ay, by = h / height, (2 * i + h) / height - 1
    # rotated-image normalised -> source normalised: rotate by +angle in pixel space
    th = torch.deg2rad(p.angle.double())
    c, s = torch.cos(th), torch.sin(th)
    kx, ky = width / 2, height / 2  # normalised -> pixel scale
    # pixel offset from centre: (px, py) = (kx X, ky Y); source = R (px, py), R = [[c, -s], [s, c]]
    # (y points down, so this is torchvision's counter-clockwise rotation of the image content)
    m00, m01 = c, -s * ky / kx
    m10, m11 = s * kx / ky, c
    theta = torch.zeros(len(th), 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = m00 * ax
    theta[:, 0, 1] = m01 * ay
    theta[:, 0, 2] = m00 * bx + m01 * by
    theta[:, 1, 0] = m10 * ax
    theta[:, 1, 1] = m11 * ay
    theta[:, 1, 2] = m10 * bx + m11 * by
    return theta


def warp(images: torch.Tensor, theta: torch.Tensor, out_size: int) -> torch.Tensor:
    """Apply ``theta`` [B * n, 2, 3] to ``images`` [B, 3, H, W] -> [B * n, 3, out, out].

    Pure tensor ops with fixed shapes (traceable by torch.compile and CUDA graphs)."""
    n_views = theta.shape[0] // images.shape[0]
    theta = theta.to(device=images.device, dtype=images.dtype)
    grid = F.affine_grid(theta, [theta.shape[0], images.shape[1], out_size, out_size], align_corners=False)
    src = images.repeat_interleave(n_views, dim=0)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def sample_thetas(batch: int, n_views: int, height: int, width: int, *, degrees: float,
                  scale: tuple[float, float], ratio: tuple[float, float], hflip: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """Random warp matrices [batch * n_views, 2, 3] (float64, CPU) for :func:`warp`."""
    params = sample_params(batch * n_views, height, width, degrees=degrees, scale=scale, ratio=ratio,
                           hflip=hflip, generator=generator)
    return affine_matrices(params, height, width)


def batched_views(images: torch.Tensor, n_views: int, out_size: int, *, degrees: float,
                  scale: tuple[float, float], ratio: tuple[float, float], hflip: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """[B, 3, H, W] -> [B * n_views, 3, out, out] (view k of image b at index b * n_views + k)."""
    b, _, hgt, wid = images.shape
    theta = sample_thetas(b, n_views, hgt, wid, degrees=degrees, scale=scale, ratio=ratio,
                          hflip=hflip, generator=generator)
    return warp(images, theta, out_size)


def _reference_transform(out_size: int, degrees: float, scale: tuple[float, float],
                         ratio: tuple[float, float], hflip: bool):
    """FlexIT's ``train_prep`` without Normalize (src/vqc_core.py ``CLIP.__init__``)."""
    import torchvision.transforms as T

    return T.Compose([T.RandomRotation(degrees),
                      T.RandomResizedCrop(out_size, scale=scale, ratio=ratio, antialias=True),
                      *([T.RandomHorizontalFlip()] if hflip else [])])


def _views_one_by_one(images: torch.Tensor, n_views: int, tf) -> torch.Tensor:
    """View k of image b at index b * n_views + k, each drawn by ``tf`` from torch's global RNG
    in that order (per view: rotation angle, crop box, flip)."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views} (FlexIT's n_augment=0 uses no random view)")
    return torch.stack([tf(img) for img in images for _ in range(n_views)])


def reference_views(images: torch.Tensor, n_views: int, out_size: int, *, degrees: float,
                    scale: tuple[float, float], ratio: tuple[float, float], hflip: bool,
                    generator: torch.Generator) -> torch.Tensor:
    """Same contract as ``batched_views``, computed view by view with torchvision transforms
    (global RNG forked and seeded from ``generator`` so runs stay deterministic and the
    caller's global RNG is untouched)."""
    tf = _reference_transform(out_size, degrees, scale, ratio, hflip)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _views_one_by_one(images, n_views, tf)


def global_rng_views(images: torch.Tensor, n_views: int, out_size: int, *, degrees: float,
                     scale: tuple[float, float], ratio: tuple[float, float], hflip: bool) -> torch.Tensor:
    """The reference's own draws: torchvision transforms on torch's global CPU RNG, consumed as
    ``CLIP.encode_image(x, ncuts)`` does (src/vqc_core.py), so a run seeded with
    ``torch.manual_seed`` sees exactly the reference's views. Same contract as ``batched_views``."""
    return _views_one_by_one(images, n_views, _reference_transform(out_size, degrees, scale, ratio, hflip))


__all__ = ["AugmentParams", "sample_params", "affine_matrices", "sample_thetas", "warp", "batched_views",
           "reference_views", "global_rng_views"]
