"""The protocol's judges on ImageNet: DeiT-B distilled 384 (accuracy) and Inception-v3 (SFID).

Both are the published architectures built offline (timm ``deit_base_distilled_patch16_384``,
torchvision ``inception_v3``) with weights the user supplies; nothing is downloaded unless asked.

- DeiT: the checkpoint FlexIT's ``torch.hub.load('facebookresearch/deit:main', ...)`` fetches
  (``deit_base_distilled_patch16_384-d0272ac0.pth``, a dict with ``model``) or a timm state_dict.
  Input: ``Resize(384) + CenterCrop(384)``, ImageNet mean/std. In eval mode the distilled model
  returns the mean of its class and distillation heads, as the hub model.
- Inception: torchvision's ``inception_v3_google-0cc3c7bd.pth``. Features are the 2048-d global
  average pool (block 3 of pytorch-fid's ``InceptionV3``, which eval.py uses). Deviation: eval.py
  uses pytorch-fid's TF-ported FID weights; torchvision's ImageNet weights give other absolute
  values, so compare SFID/CSFID only among runs with the same weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from .. import weights as W
from ..errors import BackendUnavailable
from ..known_files import DEIT_NAME
from ..models.preprocess import resize_center_crop

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEIT_SIZE = 384
INCEPTION_SIZE = 299


class _Normalized(nn.Module):
    """[0, 1] images of any size -> resize/crop to ``size`` -> ImageNet normalisation -> net."""

    def __init__(self, net: nn.Module, size: int, *, crop: bool = True):
        super().__init__()
        self.net, self.size, self.crop = net, size, crop
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x01 = x01.to(self.mean.device)
        if self.crop:
            x01 = resize_center_crop(x01, self.size)
        else:  # pytorch-fid: plain bilinear resize of the 256 px image to 299
            x01 = nn.functional.interpolate(x01, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return self.net((x01 - self.mean) / self.std)


def load_deit(*, weights: W.WeightsArg = None, path: str | Path | None = None, random_init: bool = False,
              device: str | torch.device = "cpu", download: bool = False) -> nn.Module:
    """DeiT-B distilled 384: [B,3,H,W] in [0,1] -> ImageNet logits [B, 1000]."""
    try:
        import timm
    except ModuleNotFoundError:
        raise BackendUnavailable("the accuracy metric needs timm (pip install timm)") from None
    net = timm.create_model(DEIT_NAME, pretrained=False, num_classes=1000)
    if not random_init:
        ckpt = W.resolve("eval/deit", path=path, weights=weights, download=download)
        sd = W.load_checkpoint(ckpt)
        sd = sd.get("model", sd) if isinstance(sd, dict) else sd
        W.load_into(net, sd, what=f"DeiT {DEIT_NAME} ({ckpt})")
        log.info("loaded DeiT from %s", ckpt)
    return _Normalized(net, DEIT_SIZE).eval().requires_grad_(False).to(device)


class _PoolFeatures(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.net.fc = nn.Identity()  # logits -> the 2048-d average-pool features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def load_inception(*, weights: W.WeightsArg = None, path: str | Path | None = None, random_init: bool = False,
                   device: str | torch.device = "cpu", download: bool = False) -> nn.Module:
    """Inception-v3 pool features: [B,3,H,W] in [0,1] (256 px in the protocol) -> [B, 2048]."""
    from torchvision.models import inception_v3

    # transform_input=True: the torchvision ImageNet weights expect it (they were ported from TF)
    net = inception_v3(weights=None, aux_logits=True, init_weights=random_init, transform_input=True)
    if not random_init:
        ckpt = W.resolve("eval/inception", path=path, weights=weights, download=download)
        W.load_into(net, W.load_checkpoint(ckpt), what=f"Inception-v3 ({ckpt})")
        log.info("loaded Inception-v3 from %s", ckpt)
    return _Normalized(_PoolFeatures(net), INCEPTION_SIZE, crop=False).eval().requires_grad_(False).to(device)


__all__ = ["load_deit", "load_inception", "IMAGENET_MEAN", "IMAGENET_STD", "DEIT_NAME"]
