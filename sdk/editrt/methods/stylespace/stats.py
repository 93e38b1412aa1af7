"""Per-channel S statistics of a generator (StyleCLIP ``GetCodeMS``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import weights as W
from ...errors import InputError, WeightsError
from .identity import generator_device, generator_fingerprint, generator_name
from .provenance import load_tensors, save_tensors, utc_now

if TYPE_CHECKING:  # pragma: no cover
    from ...models.stylegan2 import StyleCode, StyleGAN2

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ChannelStats:
    """Per-channel mean and std (ddof 0) of S over mapped samples (``GetCodeMS``), all layers
    tRGB included. ``mean``/``std`` are batch-1 StyleCodes; ``provenance`` says how they were made.
    """

    mean: "StyleCode"
    std: "StyleCode"
    provenance: dict[str, Any]

    def save(self, path: str | os.PathLike) -> Path:
        return save_tensors({"mean": self.mean.flat(), "std": self.std.flat()},
                                    {"kind": "channel_stats", **self.provenance}, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike, generator: "StyleGAN2") -> "ChannelStats":
        from ...models.stylegan2 import StyleCode

        tensors, meta = load_tensors(Path(path), "channel statistics")
        if meta.get("kind") != "channel_stats" or not {"mean", "std"} <= set(tensors):
            raise WeightsError(f"{path} is not an editrt channel-statistics file")
        layout = generator.layout
        n = layout.total_channels
        if tuple(tensors["mean"].shape) != (1, n) or tuple(tensors["std"].shape) != (1, n):
            raise WeightsError(f"channel statistics {path} have shape {tuple(tensors['mean'].shape)}; generator "
                               f"{generator_name(generator)} has {n} style channels: they belong to another generator")
        dev = generator_device(generator)
        return cls(StyleCode.from_flat(tensors["mean"].float(), layout).to(dev),
                   StyleCode.from_flat(tensors["std"].float(), layout).to(dev), meta)


def compute_channel_stats(generator: "StyleGAN2", *, n: int = 100_000, psi: float = 0.7, cutoff: int = 8,
                          seed: int = 5, batch_size: int = 10_000) -> ChannelStats:
    """Mean/std of S over ``n`` samples as StyleCLIP ``GenerateS``/``GetCodeMS``: z =
    ``RandomState(seed).randn(n, D)``, truncation ``psi`` on the first ``cutoff`` W+ entries
    (computed by ``StyleGAN2.style_statistics``, float64 accumulation)."""
    if n < 2:
        raise InputError(f"channel statistics need at least 2 samples, got {n}")
    mean, std = generator.style_statistics(n, seed=seed, psi=psi, cutoff=cutoff, batch_size=batch_size)
    prov = {"generator": generator_name(generator), "generator_fingerprint": generator_fingerprint(generator),
            "n": n, "psi": psi, "cutoff": cutoff, "seed": seed, "created": utc_now()}
    return ChannelStats(mean, std, prov)


def stats_cache_path(generator: "StyleGAN2", n: int, psi: float, cutoff: int, seed: int) -> Path:
    """Where computed statistics of a generator are cached in the EDITRT_HOME store."""
    return W.editrt_home() / "styleclip" / "stats" / (
        f"{generator_name(generator)}-{generator_fingerprint(generator)[:12]}-n{n}-psi{psi:g}-c{cutoff}-s{seed}"
        ".safetensors")


def channel_stats_for(generator: "StyleGAN2", *, n: int, psi: float, cutoff: int, seed: int,
                      path: str | os.PathLike | None = None, cache: bool = True) -> ChannelStats:
    """Statistics from ``path``, else from the store cache, else computed once (and cached)."""
    if path is not None:
        return ChannelStats.load(path, generator)
    cached = stats_cache_path(generator, n, psi, cutoff, seed)
    if cache and cached.is_file():
        return ChannelStats.load(cached, generator)
    log.info("computing S channel statistics of %s over %d samples (done once)", generator_name(generator), n)
    stats = compute_channel_stats(generator, n=n, psi=psi, cutoff=cutoff, seed=seed)
    if cache:
        stats.save(cached)
    return stats
