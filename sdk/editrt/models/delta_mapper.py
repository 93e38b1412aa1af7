"""DeltaEdit's Delta Mapper: (S code, CLIP condition) -> S-space delta (DeltaEdit delta_mapper.py).

The network is the reference ``delta_mapper.py`` module tree, so ``net_face.pth`` loads with its
state_dict keys unchanged: ``{sm,cm,fm}_{coarse,medium,fine}.mapping.{i}.{weight,bias}`` with
``i = 1..4`` behind a parameterless PixelNorm (``sm_*``, ``cm_*``) and ``i = 0..3`` without
(``fm_*``).

Parity notes:
- PixelNorm normalises over ``dim=1``. The coarse/medium style inputs are [B, layers, 512], so
  there it normalises across the *layer* axis, not the channels. Kept on purpose (the weights
  were trained with it).
- EqualLinear: weights stored as ``randn / lr_mul`` (lr_mul 0.01), scaled at run time by
  ``lr_mul / sqrt(in)``; bias scaled by ``lr_mul``; fused leaky ReLU = ``leaky_relu(x + b, 0.2)·√2``
  over the last axis. The reference forces ``.cuda()`` inside the activation; this one runs on
  any device.

Shapes at full size (FFHQ 1024): ``sspace`` [B, 6048] (17 conv styles, no tRGB), ``clip_cond``
[B, 1024] = [normalised CLIP image embedding (512), CLIP delta (512)] -> ``delta_s`` [B, 6048].
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import weights as W
from ..errors import InputError, WeightsError
from .arch import ArchConfig
from .registry import ModelSpec, TensorSpec, register_provider

log = logging.getLogger(__name__)

LR_MUL = 0.01
_LRELU_SCALE = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class DeltaMapperConfig(ArchConfig):
    """Widths of the three groups of the 17-layer conv style code.

    coarse: the first ``coarse_layers`` conv styles (each ``coarse_width`` channels); medium: the
    next ``medium_layers``; fine: everything after, flattened (``fine_dim`` channels).
    ``clip_dim`` is twice the CLIP embedding size (image embedding + text delta).
    """

    coarse_layers: int = 3
    coarse_width: int = 512
    medium_layers: int = 4
    medium_width: int = 512
    fine_dim: int = 2464
    clip_dim: int = 1024

    @property
    def s_dim(self) -> int:
        return self.coarse_layers * self.coarse_width + self.medium_layers * self.medium_width + self.fine_dim

    @property
    def clip_embed_dim(self) -> int:
        return self.clip_dim // 2

    @classmethod
    def for_layout(cls, conv_channels: list[int] | tuple[int, ...], clip_embed_dim: int,
                   coarse_layers: int = 3, medium_layers: int = 4) -> "DeltaMapperConfig":
        """Config matching a generator's conv-style channel list (17 entries at 1024 px)."""
        chans = list(conv_channels)
        if len(chans) <= coarse_layers + medium_layers:
            raise InputError(f"DeltaMapper needs more than {coarse_layers + medium_layers} conv style "
                             f"layers; the generator has {len(chans)}")
        coarse = chans[:coarse_layers]
        medium = chans[coarse_layers:coarse_layers + medium_layers]
        if len(set(coarse)) != 1 or len(set(medium)) != 1:
            raise InputError(f"DeltaMapper needs equal widths within the coarse {coarse} and medium "
                             f"{medium} style layers")
        return cls(coarse_layers, coarse[0], medium_layers, medium[0],
                   sum(chans[coarse_layers + medium_layers:]), 2 * clip_embed_dim)


FFHQ_CONFIG = DeltaMapperConfig()
# Tiny config for the tiny StyleGAN2 (7 conv styles: 64, 64, 64, 64, 32, 32, 16 channels) and the
# tiny CLIP (embed 64): 2 coarse + 2 medium layers of 64 (equal widths, as the architecture needs),
# 80 fine channels. Kept as data so the registry spec has fixed shapes.
TINY_CONFIG = DeltaMapperConfig(coarse_layers=2, coarse_width=64, medium_layers=2, medium_width=64,
                                fine_dim=80, clip_dim=128)
CONFIGS = {"ffhq": FFHQ_CONFIG, "tiny": TINY_CONFIG}


class PixelNorm(nn.Module):
    """``x * rsqrt(mean(x², dim=1) + 1e-8)`` (dim 1 even for 3-D inputs; see module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x * x, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised-lr linear layer followed by the fused leaky ReLU (the only form DeltaEdit uses)."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = LR_MUL):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(out, 0.2) * _LRELU_SCALE

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"


class Mapper(nn.Module):
    """[PixelNorm] + ``num_layers`` EqualLinear+lrelu layers, in a Sequential named ``mapping``."""

    def __init__(self, in_dim: int, out_dim: int, norm: bool = True, num_layers: int = 4):
        super().__init__()
        layers: list[nn.Module] = [PixelNorm()] if norm else []
        layers.append(EqualLinear(in_dim, out_dim))
        layers += [EqualLinear(out_dim, out_dim) for _ in range(num_layers - 1)]
        self.mapping = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapping(x)


class DeltaMapper(nn.Module):
    """``forward(sspace [B, s_dim], clip_cond [B, clip_dim]) -> delta_s [B, s_dim]``."""

    def __init__(self, config: DeltaMapperConfig = FFHQ_CONFIG):
        super().__init__()
        c = config
        self.config = c
        self.spec_name: str | None = None  # set by load_delta_mapper for a registered config
        # Style module (sm), condition module (cm), fusion module (fm), per group.
        self.sm_coarse = Mapper(c.coarse_width, c.coarse_width)
        self.sm_medium = Mapper(c.medium_width, c.medium_width)
        self.sm_fine = Mapper(c.fine_dim, c.fine_dim)
        self.cm_coarse = Mapper(c.clip_dim, c.coarse_width)
        self.cm_medium = Mapper(c.clip_dim, c.medium_width)
        self.cm_fine = Mapper(c.clip_dim, c.fine_dim)
        self.fm_coarse = Mapper(2 * c.coarse_width, c.coarse_width, norm=False)
        self.fm_medium = Mapper(2 * c.medium_width, c.medium_width, norm=False)
        self.fm_fine = Mapper(2 * c.fine_dim, c.fine_dim, norm=False)

    def forward(self, sspace: torch.Tensor, clip_cond: torch.Tensor) -> torch.Tensor:
        c = self.config
        if sspace.ndim != 2 or sspace.shape[1] != c.s_dim:
            raise InputError(f"DeltaMapper: sspace must be [B, {c.s_dim}], got {tuple(sspace.shape)}")
        if clip_cond.ndim != 2 or clip_cond.shape[1] != c.clip_dim or clip_cond.shape[0] != sspace.shape[0]:
            raise InputError(f"DeltaMapper: clip_cond must be [{sspace.shape[0]}, {c.clip_dim}], "
                             f"got {tuple(clip_cond.shape)}")
        n_c = c.coarse_layers * c.coarse_width
        n_m = c.medium_layers * c.medium_width
        s_coarse = self.sm_coarse(sspace[:, :n_c].reshape(-1, c.coarse_layers, c.coarse_width))
        s_medium = self.sm_medium(sspace[:, n_c:n_c + n_m].reshape(-1, c.medium_layers, c.medium_width))
        s_fine = self.sm_fine(sspace[:, n_c + n_m:])
        c_coarse = self.cm_coarse(clip_cond).unsqueeze(1).expand(-1, c.coarse_layers, -1)
        c_medium = self.cm_medium(clip_cond).unsqueeze(1).expand(-1, c.medium_layers, -1)
        c_fine = self.cm_fine(clip_cond)
        x_coarse = self.fm_coarse(torch.cat([s_coarse, c_coarse], dim=2)).reshape(-1, n_c)
        x_medium = self.fm_medium(torch.cat([s_medium, c_medium], dim=2)).reshape(-1, n_m)
        x_fine = self.fm_fine(torch.cat([s_fine, c_fine], dim=1))
        return torch.cat([x_coarse, x_medium, x_fine], dim=1)


def parameter_count(config: DeltaMapperConfig = FFHQ_CONFIG) -> int:
    """Number of parameters, counted on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        net = DeltaMapper(config)
    return sum(p.numel() for p in net.parameters())




def load_delta_mapper(name: str = "ffhq", *, weights: W.WeightsArg = None, path=None,
                      random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                      download: bool = False, allow_pickle: bool = False) -> DeltaMapper:
    """Build the Delta Mapper ``name`` (a key of :data:`CONFIGS`) and load ``net_face.pth``-format weights.

    ``net_face.pth`` is a plain state_dict; a dict wrapping it under ``state_dict`` is accepted.
    A mapper for another generator's layout is ``DeltaMapper(DeltaMapperConfig.for_layout(...))``.
    """
    if name not in CONFIGS:
        raise InputError(f"unknown Delta Mapper {name!r}; known: {sorted(CONFIGS)}")
    with W.seeded(seed):
        net = DeltaMapper(CONFIGS[name])
    if not random_init:
        ckpt = W.resolve(f"deltaedit/{name}/mapper", path=path, weights=weights, download=download)
        sd = W.load_checkpoint(ckpt, allow_pickle=allow_pickle)
        if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise WeightsError(f"{ckpt} does not hold a Delta Mapper state_dict")
        sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}
        W.load_into(net, sd, what=f"Delta Mapper {name} ({ckpt})")
        log.info("loaded Delta Mapper %s from %s", name, ckpt)
    net.spec_name = f"deltaedit/{name}/mapper"  # the module is its own export wrapper
    return net.eval().requires_grad_(False).to(device)


def _specs() -> Iterator[ModelSpec]:
    for name, cfg in CONFIGS.items():
        def build(weights=None, random_init=False, seed=0, _n=name, **kw):
            return load_delta_mapper(_n, weights=weights, random_init=random_init, seed=seed, **kw)

        yield ModelSpec(
            name=f"deltaedit/{name}/mapper", build=build,
            inputs=(TensorSpec("sspace", ("B", cfg.s_dim)), TensorSpec("clip_cond", ("B", cfg.clip_dim))),
            outputs=(TensorSpec("delta_s", ("B", cfg.s_dim)),),
            profile={"B": (1, 4, 32)},
            description=f"DeltaEdit Delta Mapper ({name}): S code + [CLIP image, CLIP delta] -> delta S")


register_provider(_specs)

__all__ = ["DeltaMapper", "DeltaMapperConfig", "Mapper", "EqualLinear", "PixelNorm", "FFHQ_CONFIG",
           "TINY_CONFIG", "CONFIGS", "load_delta_mapper", "parameter_count"]
