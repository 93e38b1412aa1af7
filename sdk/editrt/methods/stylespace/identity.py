"""Generator identity: config name and weights fingerprint, the provenance of channel
statistics, relevance matrices and corpora.
"""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ...models.stylegan2 import StyleGAN2

log = logging.getLogger(__name__)


_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def generator_name(generator: "StyleGAN2") -> str:
    """The config name of a generator (``ffhq-1024``, ``tiny``) or ``custom-<size>``: the name its
    loader gave it, else the registered config it equals (a checkpoint loaded from a path)."""
    from ...models.stylegan2 import STYLEGAN2_CONFIGS

    if getattr(generator, "name", None):
        return generator.name

    for name, cfg in STYLEGAN2_CONFIGS.items():
        if cfg == generator.config:
            return name
    return f"custom-{generator.size}"


def generator_fingerprint(generator: "StyleGAN2") -> str:
    """sha256 (16 hex) over the generator's weights and latent_avg: two generators share
    statistics or relevance files only when this matches."""
    fp = _FINGERPRINTS.get(generator)
    if fp is None:
        h = hashlib.sha256(json.dumps(generator.config.to_dict(), sort_keys=True).encode())
        for k, v in sorted(generator.state_dict().items()) + [("latent_avg", generator.latent_avg)]:
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        fp = _FINGERPRINTS[generator] = h.hexdigest()[:16]
    return fp


def generator_device(generator: "StyleGAN2") -> torch.device:
    return generator.latent_avg.device
