"""StyleGAN2 architectures as data: :class:`StyleGAN2Config` and the named configs (no network
code, so the checkpoint converter and the generator both read them)."""

from __future__ import annotations

import dataclasses
import math

from ..errors import InputError
from .arch import ArchConfig


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config(ArchConfig):
    """Architecture of a rosinality/NVIDIA StyleGAN2 generator.

    channels(res) = min(channel_max, channel_base // res); rosinality ``channel_multiplier=cm``
    is ``channel_base = 16384 * cm`` with ``channel_max = 512`` (config-f: cm=2 -> 32768).
    """

    size: int = 1024  # output resolution (power of two >= 8)
    style_dim: int = 512  # z and w width
    n_mlp: int = 8  # mapping layers
    channel_base: int = 32768
    channel_max: int = 512
    lr_mlp: float = 0.01  # mapping learning-rate multiplier (enters the runtime weight scale)
    blur_taps: tuple[int, ...] = (1, 3, 3, 1)
    conv_clamp: float | None = None  # stylegan2-ada trains with 256; rosinality has none

    def __post_init__(self) -> None:
        log2 = math.log2(self.size) if self.size > 0 else 0.5
        if not (log2.is_integer() and self.size >= 8):
            raise InputError(f"StyleGAN2Config.size must be a power of two >= 8, got {self.size}")
        if min(self.style_dim, self.n_mlp, self.channel_base, self.channel_max) < 1:
            raise InputError(f"StyleGAN2Config: widths and n_mlp must be positive: {self}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of W+ entries: 2 log2(size) - 2 (18 for 1024)."""
        return 2 * self.log_size - 2

    @property
    def num_noise_layers(self) -> int:
        """Number of noise buffers / styled convs: 2 log2(size) - 3 (17 for 1024)."""
        return 2 * self.log_size - 3

    def channels(self, res: int) -> int:
        return min(self.channel_max, self.channel_base // res)

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, self.log_size + 1))


STYLEGAN2_CONFIGS: dict[str, StyleGAN2Config] = {
    "ffhq-1024": StyleGAN2Config(size=1024),  # stylegan2-ffhq-config-f
    "ffhq-512": StyleGAN2Config(size=512),
    "ffhq-256": StyleGAN2Config(size=256),  # rosinality-trained 256 px (channel_multiplier 2)
    "afhqdog-512": StyleGAN2Config(size=512, conv_clamp=256.0),  # stylegan2-ada paper512
    "afhqcat-512": StyleGAN2Config(size=512, conv_clamp=256.0),
    "church-256": StyleGAN2Config(size=256),  # config-f LSUN church
    "cat-256": StyleGAN2Config(size=256),  # config-f LSUN cat
    "horse-256": StyleGAN2Config(size=256),  # config-f LSUN horse
    # test-sized: 4x4..32x32, 64/64/32/16 channels, 8 W+ entries, 12 style layers
    "tiny": StyleGAN2Config(size=32, style_dim=64, n_mlp=2, channel_base=512, channel_max=64),
    # the toy world's trained generator (editrt.toy.stylegan): 32 px, 64/64/64/32 channels, 4 mapping layers
    "toy": StyleGAN2Config(size=32, style_dim=64, n_mlp=4, channel_base=1024, channel_max=64),
}


def get_config(name: str) -> StyleGAN2Config:
    if name not in STYLEGAN2_CONFIGS:
        raise InputError(f"unknown StyleGAN2 config {name!r}; known: {sorted(STYLEGAN2_CONFIGS)}")
    return STYLEGAN2_CONFIGS[name]


__all__ = ["StyleGAN2Config", "STYLEGAN2_CONFIGS", "get_config"]
