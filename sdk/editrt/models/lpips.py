"""LPIPS (vgg, alex) with the lpips package's shipped linear heads.

The lpips package ships only its 1x1 linear heads (``weights/v0.1/{vgg,alex}.pth``); its trunk
normally downloads from torchvision. Here the trunk comes from a local torchvision state_dict
(``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth`` as torchvision publishes them), or is
seeded random when asked. The distance itself runs through ``editrt.ops.lpips_distance`` (fused
kernel when built), with the target image's normalised features computed once.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from .. import weights as W
from ..errors import InputError

log = logging.getLogger(__name__)

# torchvision `features` index ranges of each lpips slice
_SLICES = {
    "vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
    "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
}
_TRUNK_FILES = {
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
}
for _net, (_file, _url) in _TRUNK_FILES.items():
    W.register_known(W.KnownFile(f"lpips/{_net}", f"lpips/{_file}", _url,
                                 f"place torchvision's {_file} there"))


def trunk_state_dict_to_lpips(sd: dict[str, torch.Tensor], net: str) -> dict[str, torch.Tensor]:
    """torchvision ``features.{i}.*`` keys -> lpips ``net.slice{k}.{i}.*`` keys (classifier dropped)."""
    out = {}
    for key, value in sd.items():
        if not key.startswith("features."):
            continue
        idx = int(key.split(".")[1])
        for k, (lo, hi) in enumerate(_SLICES[net], start=1):
            if lo <= idx < hi:
                out[f"net.slice{k}.{key[len('features.'):]}"] = value
    return out


class PerceptualDistance(nn.Module):
    """LPIPS between [0,1] images (``normalize=True`` in lpips terms).

    ``forward(x, y)`` -> [B] equals ``lpips.LPIPS(net)(x, y, normalize=True).flatten()``.
    ``prepare_target(y)`` + ``distance(x, target)`` reuse the target's normalised features.
    """

    def __init__(self, net: str = "vgg"):
        super().__init__()
        import lpips

        if net not in _SLICES:
            raise InputError(f"unsupported LPIPS network {net!r}; use 'vgg' or 'alex'")
        self.net_name = net
        # pretrained=True loads the shipped linear heads; pnet_rand=True avoids the trunk download
        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            self.lp = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)

    def features(self, x01: torch.Tensor) -> list[torch.Tensor]:
        return list(self.lp.net(self.lp.scaling_layer(2 * x01 - 1)))

    def lin_weights(self) -> list[torch.Tensor]:
        return [lin.model[-1].weight for lin in self.lp.lins]

    @torch.no_grad()
    def prepare_target(self, y01: torch.Tensor) -> list[torch.Tensor]:
        from .. import ops

        return ops.lpips_prepare_target(self.features(y01))

    def distance(self, x01: torch.Tensor, target: list[torch.Tensor]) -> torch.Tensor:
        from .. import ops

        return ops.lpips_distance(self.features(x01), target, self.lin_weights())

    def forward(self, x01: torch.Tensor, y01: torch.Tensor) -> torch.Tensor:
        return self.distance(x01, self.prepare_target(y01))


def load_lpips(net: str = "vgg", *, weights: W.WeightsArg = None, path: str | Path | None = None,
               random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
               download: bool = False) -> PerceptualDistance:
    """LPIPS with the trunk from a torchvision state_dict file, or seeded random trunk."""
    with W.seeded(seed):
        model = PerceptualDistance(net)
    if not random_init:
        ckpt = W.resolve(f"lpips/{net}", path=path, weights=weights, download=download)
        sd = W.load_checkpoint(ckpt)
        mapped = trunk_state_dict_to_lpips(sd, net)
        own = {k: v for k, v in model.lp.state_dict().items() if not k.startswith("net.")}  # heads, scaling
        W.load_into(model.lp, {**mapped, **own}, what=f"LPIPS-{net} trunk ({ckpt})")
        log.info("loaded LPIPS-%s trunk from %s", net, ckpt)
    return model.eval().requires_grad_(False).to(device)


__all__ = ["PerceptualDistance", "load_lpips", "trunk_state_dict_to_lpips"]
