"""LPIPS (vgg, alex) with the lpips package's shipped linear heads.

The lpips package ships only its 1x1 linear heads (``weights/v0.1/{vgg,alex}.pth``); its trunk
normally downloads from torchvision. Here the trunk comes from a local file, found as users have
it: torchvision's own file name (``vgg16-397923af.pth`` / ``alexnet-owt-7be5be79.pth``) in a
weights folder, in the store, or in torch hub's cache (``$TORCH_HOME/hub/checkpoints``, where
torchvision downloads it); or any ``.pth``/``.safetensors`` holding torchvision ``features.*``
keys (a whole VGG16/AlexNet state dict, or its trunk only), or an lpips ``net.slice*`` state dict.
``name="toy"`` is the toy world's perceptual network: LPIPS-alex heads over a trunk seeded with
:data:`TOY_TRUNK_SEED` (no file; see ``editrt.toy.models``). Otherwise the trunk is seeded
random only when asked. The distance itself runs through ``editrt.ops.lpips_distance`` (fused
kernel when built), with the target image's normalised features computed once.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .. import weights as W
from ..errors import InputError, WeightsError
from ..known_files import LPIPS_TRUNK_FILES

log = logging.getLogger(__name__)

# torchvision `features` index ranges of each lpips slice
_SLICES = {
    "vgg": [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)],
    "alex": [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)],
}
_TRUNK_FILES = LPIPS_TRUNK_FILES  # (file name, URL) of each trunk
TOY = "toy"
TOY_TRUNK_SEED = 11  # the trunk seed of the toy world's FlexIT perceptual term (its recorded results)


def torch_hub_checkpoints() -> Path:
    """Where torchvision's ``load_state_dict_from_url`` keeps downloads."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_trunk(net: str, *, weights: W.WeightsArg = None, path: str | Path | None = None,
               download: bool = False) -> Path:
    """The trunk file of LPIPS-``net``: ``path`` > ``weights`` (a file, a mapping, or a folder
    holding ``lpips/<file>`` or ``<file>``) > the store > torch hub's cache > a download."""
    file, _ = _TRUNK_FILES[net]
    if path is None and weights is not None and not isinstance(weights, Mapping) and Path(weights).is_file():
        return Path(weights).expanduser()
    try:  # a weights folder in the store layout or flat (torchvision's file name): KnownFile layouts
        return W.resolve(f"lpips/{net}", path=path, weights=weights, download=False)
    except WeightsError:
        cached = torch_hub_checkpoints() / file
        if path is None and cached.is_file():
            return cached
        if not download:
            raise
    return W.resolve(f"lpips/{net}", weights=weights, download=True)


def trunk_from_checkpoint(sd: object, net: str, *, source: str) -> dict[str, torch.Tensor]:
    """lpips ``net.slice{k}.*`` keys from a torchvision state dict (``features.*``, with or
    without ``module.``/``state_dict`` wrapping) or an lpips one (``net.slice*``)."""
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise WeightsError(f"{source} holds a {type(sd).__name__}, not a state dict")
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    own = {k: v for k, v in sd.items() if k.startswith("net.slice")}
    if own:
        return own
    mapped = trunk_state_dict_to_lpips(sd, net)
    if not mapped:
        raise WeightsError(f"{source} has no torchvision 'features.*' (or lpips 'net.slice*') keys: it is not a "
                           f"{'VGG16' if net == 'vgg' else 'AlexNet'} trunk (keys: {sorted(sd)[:5]})")
    return mapped


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


def load_lpips(name: str = "vgg", *, weights: W.WeightsArg = None, path: str | Path | None = None,
               random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
               download: bool = False, allow_pickle: bool = False) -> PerceptualDistance:
    """LPIPS-``name`` ("vgg" | "alex" | "toy") with its trunk from a file (see :func:`find_trunk`),
    or a seeded random trunk when ``random_init``."""
    if name == TOY:
        name, random_init, seed = "alex", True, (seed if random_init else TOY_TRUNK_SEED)
    if name not in _SLICES:
        raise InputError(f"unsupported LPIPS network {name!r}; use 'vgg', 'alex' or 'toy'")
    mapped = None
    if not random_init:  # the file first: a missing or wrong one fails before the trunk is built
        ckpt = find_trunk(name, weights=weights, path=path, download=download)
        mapped = trunk_from_checkpoint(W.load_checkpoint(ckpt, allow_pickle=allow_pickle), name, source=str(ckpt))
    with W.seeded(seed):
        model = PerceptualDistance(name)
    if mapped is not None:
        own = {k: v for k, v in model.lp.state_dict().items() if not k.startswith("net.")}  # heads, scaling
        W.load_into(model.lp, {**mapped, **own}, what=f"LPIPS-{name} trunk ({ckpt})")
        log.info("loaded LPIPS-%s trunk from %s", name, ckpt)
    return model.eval().requires_grad_(False).to(device)


__all__ = ["PerceptualDistance", "load_lpips", "find_trunk", "trunk_from_checkpoint", "trunk_state_dict_to_lpips",
           "torch_hub_checkpoints", "TOY", "TOY_TRUNK_SEED"]
