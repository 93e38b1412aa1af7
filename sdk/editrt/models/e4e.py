"""e4e image encoder (omertov/encoder4editing ``Encoder4Editing``, ir_se50): image -> W+ codes.

Public API::

    enc = Encoder4Editing.load("ffhq")                      # e4e_ffhq_encode.pt from weights / store / path
    enc = Encoder4Editing.load("tiny", random_init=True)    # seeded random, 64 px in, 8 x 64 W+ out
    x = preprocess(images, size=enc.config.input_size)      # PIL list or [B,3,H,W] -> [B,3,256,256] in [-1,1]
    w_plus = enc(x)                                         # [B, n_styles, D] = deltas + latent_avg

Architecture as the reference (keys load strictly after stripping ``encoder.``, i.e.
``get_keys(ckpt, 'encoder')``): IR-SE ResNet body (3/4/14/3 bottlenecks of 64/128/256/512
channels), features taken after bottlenecks 6, 20 and 23 (the last of stages 2, 3, 4), an FPN
(``latlayer1/2`` with bilinear ``align_corners=True`` upsample-add), and one ``GradualStyleBlock``
per W+ entry: ``w = styles[0](c3)`` broadcast, plus ``styles[i](features)`` for i >= 1 with
features c3 / p2 / p1 for i < 3 / < 7 / rest (progressive stage "Inference"). The forward adds
``latent_avg`` (pSp ``start_from_latent_avg``; DeltaEdit ``inference_real.py`` does the same by hand).

Preprocessing is DeltaEdit ``inference_real.py``'s: ``Resize(256)`` (shorter side, no crop),
``ToTensor``, ``Normalize(0.5, 0.5)``. Inputs must be aligned square face crops (the reference
uses dlib FFHQ alignment, which is outside this SDK).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, WeightsError
from ..weights import WeightsArg, load_checkpoint, load_into, resolve, seeded
from .arch import ArchConfig
from .preprocess import Preprocess
from .registry import ModelSpec, TensorSpec, register_provider
from .stylegan2_ops import EqualLinear

log = logging.getLogger(__name__)

E4E_MEAN = (0.5, 0.5, 0.5)
E4E_STD = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class E4EConfig(ArchConfig):
    """Encoder architecture; the defaults are the public FFHQ e4e (ir_se50, 18 x 512 W+)."""

    units: tuple[int, ...] = (3, 4, 14, 3)  # bottlenecks per stage (ResNet-50 IR)
    depths: tuple[int, ...] = (64, 128, 256, 512)  # channels per stage
    style_dim: int = 512
    n_styles: int = 18  # = StyleGAN2 n_latent (2 log2(size) - 2)
    input_size: int = 256
    se: bool = True  # ir_se (squeeze-excitation) vs ir
    se_reduction: int = 16
    coarse_ind: int = 3
    middle_ind: int = 7

    def __post_init__(self) -> None:
        if len(self.units) != 4 or len(self.depths) != 4:
            raise InputError("E4EConfig: units and depths need 4 stages")
        if self.input_size % 16 or not math.log2(self.input_size // 16).is_integer():
            raise InputError(f"E4EConfig.input_size must be 16 * 2^k, got {self.input_size}")
        if not 1 <= self.coarse_ind <= self.middle_ind <= self.n_styles:
            raise InputError("E4EConfig: need 1 <= coarse_ind <= middle_ind <= n_styles")

    @property
    def feature_indices(self) -> tuple[int, int, int]:
        """Body indices of c1, c2, c3 (ends of stages 2, 3, 4): (6, 20, 23) for ir_se50."""
        ends = [sum(self.units[: i + 1]) - 1 for i in range(4)]
        return ends[1], ends[2], ends[3]


E4E_CONFIGS: dict[str, E4EConfig] = {
    "ffhq": E4EConfig(),
    # matches StyleGAN2 "tiny" (n_latent 8, style_dim 64)
    "tiny": E4EConfig(units=(1, 1, 1, 1), depths=(8, 16, 32, 64), style_dim=64, n_styles=8, input_size=64,
                      se_reduction=4),
}


# ----------------------------------------------------------------------------------------------
# modules (names follow encoder4editing models/encoders/helpers.py and psp_encoders.py)


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """IR(-SE) bottleneck: BN, 3x3 conv, PReLU, 3x3 conv (stride), BN[, SE] + shortcut."""

    def __init__(self, in_ch: int, depth: int, stride: int, se_reduction: int | None) -> None:
        super().__init__()
        if in_ch == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se_reduction:
            layers.append(SEModule(depth, se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs + leaky ReLU down to 1x1, then an equalised linear layer: [B,C,s,s] -> [B,D]."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int) -> None:
        super().__init__()
        self.out_c = out_ch
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).flatten(1))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    """e4e encoder. forward: image [B, 3, S, S] normalised to [-1, 1] -> W+ [B, n_styles, D]
    (``latent_avg`` added; a non-persistent [n_styles, D] buffer, zeros for random init)."""

    def __init__(self, config: E4EConfig | str = "tiny") -> None:
        super().__init__()
        cfg = E4E_CONFIGS[config] if isinstance(config, str) else config
        self.config = cfg
        # the module is its own export wrapper; a registry name gives it its spec
        self.spec_name = f"e4e/{config}/encoder" if isinstance(config, str) else None
        d0, d1, d2, d3 = cfg.depths
        self.input_layer = nn.Sequential(nn.Conv2d(3, d0, 3, 1, 1, bias=False), nn.BatchNorm2d(d0), nn.PReLU(d0))
        body, in_ch = [], d0
        for n, depth in zip(cfg.units, cfg.depths):
            for j in range(n):
                body.append(BottleneckIR(in_ch if j == 0 else depth, depth, 2 if j == 0 else 1,
                                         cfg.se_reduction if cfg.se else None))
            in_ch = depth
        self.body = nn.Sequential(*body)
        c3_size = cfg.input_size // 16
        self.styles = nn.ModuleList(
            GradualStyleBlock(d3, cfg.style_dim, c3_size * self._spatial_factor(i)) for i in range(cfg.n_styles))
        self.latlayer1 = nn.Conv2d(d2, d3, 1)
        self.latlayer2 = nn.Conv2d(d1, d3, 1)
        self.register_buffer("latent_avg", torch.zeros(cfg.n_styles, cfg.style_dim), persistent=False)

    def _spatial_factor(self, i: int) -> int:
        # coarse styles read c3 (input/16), middle p2 (input/8), fine p1 (input/4)
        return 1 if i < self.config.coarse_ind else 2 if i < self.config.middle_ind else 4

    @classmethod
    def load(cls, name: str | os.PathLike = "ffhq", *, weights: WeightsArg = None, path: str | os.PathLike | None = None,
             random_init: bool = False, seed: int = 0, device: Any = "cpu", download: bool = False,
             allow_pickle: bool = False) -> "Encoder4Editing":
        """Build in eval mode from a config name (weights via ``path`` / ``weights`` / store key
        ``e4e/<name>``) or a checkpoint path (ffhq architecture). random_init: seeded random weights."""
        name = str(name)
        if name in E4E_CONFIGS:
            cfg = E4E_CONFIGS[name]
            if random_init:
                with seeded(seed):
                    return cls(name).to(device).eval()
            if path is not None:
                path = Path(path).expanduser()
                if not path.is_file():
                    raise WeightsError(f"checkpoint for e4e/{name} not found at {path}")
            elif weights is not None and not isinstance(weights, Mapping) and Path(weights).expanduser().is_file():
                path = Path(weights).expanduser()
            else:
                try:
                    path = resolve(f"e4e/{name}", weights=weights, download=download)
                except WeightsError as exc:
                    if "random_init" in str(exc):
                        raise
                    raise WeightsError(f"{exc} (or random_init=True for seeded random weights)") from None
        else:
            path, cfg = Path(path if path is not None else name).expanduser(), E4E_CONFIGS["ffhq"]
            if not path.is_file():
                raise InputError(f"{name!r} is neither a known e4e config ({sorted(E4E_CONFIGS)}) nor a file")
        enc = cls(name if name in E4E_CONFIGS else cfg)
        enc.load_checkpoint_dict(load_checkpoint(path, allow_pickle=allow_pickle), source=str(path))
        return enc.to(device).eval()

    def load_checkpoint_dict(self, ckpt: Any, *, source: str = "checkpoint") -> None:
        """Load ``{"state_dict": {"encoder.<k>": ...}, "latent_avg": ...}`` (or a bare encoder state dict)."""
        if not isinstance(ckpt, Mapping):
            raise WeightsError(f"{source} holds a {type(ckpt).__name__}, not an e4e checkpoint dict")
        sd = ckpt.get("state_dict", ckpt)
        enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
        if not enc:  # a bare encoder state dict
            enc = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        load_into(self, enc, what=f"e4e encoder ({len(self.body)} bottlenecks, {self.config.n_styles} styles)")
        avg = ckpt.get("latent_avg")
        if avg is None:
            log.warning("%s has no latent_avg; W+ codes will be the raw encoder deltas", source)
            return
        if avg.shape[-1] != self.config.style_dim:
            raise WeightsError(f"{source}: latent_avg {tuple(avg.shape)} does not match style_dim {self.config.style_dim}")
        self.latent_avg.copy_(avg.reshape(-1, self.config.style_dim).expand(self.config.n_styles, -1))

    def deltas(self, x: torch.Tensor) -> torch.Tensor:
        """The reference ``Encoder4Editing.forward`` (no latent_avg): [B, n_styles, D]."""
        cfg = self.config
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (cfg.input_size, cfg.input_size):
            raise InputError(f"e4e expects [B, 3, {cfg.input_size}, {cfg.input_size}] images, got {tuple(x.shape)}")
        x = self.input_layer(x)
        i1, i2, i3 = cfg.feature_indices
        feats = {}
        for i, block in enumerate(self.body):
            x = block(x)
            if i in (i1, i2, i3):
                feats[i] = x
        c1, c2, c3 = feats[i1], feats[i2], feats[i3]
        w0 = self.styles[0](c3)
        out, features = [w0], c3
        for i in range(1, cfg.n_styles):
            if i == cfg.coarse_ind:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == cfg.middle_ind:
                features = _upsample_add(p2, self.latlayer2(c1))
            out.append(w0 + self.styles[i](features))
        return torch.stack(out, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deltas(x) + self.latent_avg.to(x.dtype)


def preprocess(images: torch.Tensor | Sequence[Any], size: int = 256) -> torch.Tensor:
    """DeltaEdit ``inference_real`` transform -> [B, 3, size, size] float32 in [-1, 1].

    images: a list of PIL images (torchvision ``Resize(size)``, ``ToTensor``, ``Normalize(0.5, 0.5)``
    exactly), or a tensor [B, 3, H, W] (uint8, or float in [0, 1]) resized with antialiased
    bilinear interpolation (close to, not bit-equal with, PIL's). Non-square inputs are refused.
    """
    from torchvision.transforms import functional as TF

    if isinstance(images, torch.Tensor):
        x = images
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"expected images [B, 3, H, W], got {tuple(x.shape)}")
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-1] != x.shape[-2]:
            raise InputError(f"e4e needs aligned square face crops, got {x.shape[-2]}x{x.shape[-1]}")
        if x.shape[-1] != size:
            x = TF.resize(x, [size, size], antialias=True)
    else:
        tensors = []
        for im in images:
            if im.size[0] != im.size[1]:
                raise InputError(f"e4e needs aligned square face crops, got {im.size[0]}x{im.size[1]}")
            tensors.append(TF.to_tensor(TF.resize(im.convert("RGB"), size)))
        if not tensors:
            raise InputError("preprocess: no images given")
        x = torch.stack(tensors)
    return (x - 0.5) / 0.5


def parameter_count(config: E4EConfig | str = "ffhq") -> int:
    """Number of parameters, computed on the meta device (nothing allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in Encoder4Editing(config).parameters())


def _specs() -> Iterator[ModelSpec]:
    for name, cfg in E4E_CONFIGS.items():
        def build(weights: WeightsArg = None, random_init: bool = False, seed: int = 0,
                  _name: str = name) -> nn.Module:
            return Encoder4Editing.load(_name, weights=weights, random_init=random_init, seed=seed)
        s = cfg.input_size
        yield ModelSpec(
            name=f"e4e/{name}/encoder", build=build, inputs=(TensorSpec("image", ("B", 3, s, s)),),
            outputs=(TensorSpec("w_plus", ("B", cfg.n_styles, cfg.style_dim)),),
            description=f"e4e encoder: {s}px image normalised to [-1,1] -> W+ (latent_avg added)",
            preprocess=Preprocess(s, E4E_MEAN, E4E_STD, resize="shorter_side"))


register_provider(_specs)
