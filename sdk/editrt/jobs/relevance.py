"""``editrt relevance --ray``: the relevance matrix fs3 in shards of channel rows on Ray actors.

Each actor loads the generator and CLIP once and computes shards ``[start, stop)`` with
:func:`compute_relevance` (``rows=``). The driver writes every finished shard atomically to
``<output>.shards/``; a re-run with the same settings skips the shards on disk. The merged
matrix equals the single-process result (each row depends only on its channel), and the final
file has the single-process format.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, WeightsError
from ..methods.stylespace.provenance import load_tensors, save_tensors, utc_now
from ..methods.stylespace.relevance_matrix import _relevance_meta, compute_relevance
from .cli_args import DEFAULT_SHARD_ROWS
from .cluster import ray_session
from .pool import ActorPool, default_workers

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Networks:
    """How every actor loads the same generator and CLIP (names + ``weights`` arguments)."""

    generator: str
    clip: str
    weights: Any = None
    random_init: bool = False
    device: str = "cpu"
    download: bool = False
    allow_pickle: bool = False

    def load(self):
        from ..models.clip import load_clip
        from ..models.stylegan2 import StyleGAN2

        kw = dict(weights=self.weights, random_init=self.random_init, device=self.device, download=self.download,
                  allow_pickle=self.allow_pickle)
        return StyleGAN2.load(self.generator, **kw), load_clip(self.clip, **kw)


@dataclasses.dataclass(frozen=True)
class RelevanceSettings:
    """The arguments of :func:`compute_relevance` that define the matrix."""

    n_images: int = 100
    sigma: float = 5.0
    seed: int = 5
    psi: float = 0.7
    cutoff: int = 8
    batch_size: int = 32


class _ShardWorker:
    def __init__(self, networks: Networks, stats, settings: RelevanceSettings, meta: dict):
        self.G, self.clip = networks.load()
        self.stats, self.settings = stats, settings
        got = _relevance_meta(self.G, self.clip, stats, settings.n_images, settings.sigma, settings.seed,
                              settings.psi, settings.cutoff)
        if got != meta:  # a node with other checkpoints would mix two matrices
            raise WeightsError(f"a Ray worker loaded other networks than the driver: {got} != {meta}")

    def __call__(self, rows: tuple[int, int]) -> torch.Tensor:
        s = self.settings
        return compute_relevance(self.G, self.clip, self.stats, n_images=s.n_images, sigma=s.sigma, seed=s.seed,
                                 psi=s.psi, cutoff=s.cutoff, batch_size=s.batch_size, progress=False, rows=rows)


def shard_ranges(conv_dim: int, shard_rows: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` row ranges of at most ``shard_rows`` rows covering every row."""
    if shard_rows < 1:
        raise InputError(f"--shard-rows must be >= 1, got {shard_rows}")
    return [(lo, min(lo + shard_rows, conv_dim)) for lo in range(0, conv_dim, shard_rows)]


def shard_dir(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def _shard_path(folder: Path, rows: tuple[int, int]) -> Path:
    return folder / f"rows-{rows[0]:06d}-{rows[1]:06d}.safetensors"


def _finished_shard(path: Path, meta: dict, rows: tuple[int, int], embed_dim: int) -> torch.Tensor | None:
    """The rows of a shard file written with these settings, else None (redo it)."""
    if not path.is_file():
        return None
    try:
        tensors, old = load_tensors(path, "relevance shard")
    except Exception as exc:  # a foreign or damaged file: recompute rather than trust it
        log.warning("%s is unreadable (%s); recomputing it", path, exc)
        return None
    block = tensors.get("fs3")
    if old.get("shard") != list(rows) or {k: v for k, v in old.items() if k not in ("shard", "created")} != meta \
            or block is None or tuple(block.shape) != (rows[1] - rows[0], embed_dim):
        log.warning("%s was made with other settings; recomputing it", path)
        return None
    return block.float()


def relevance_on_ray(networks: Networks, generator, clip, stats, settings: RelevanceSettings, output: Path, *,
                     address: str | None = None, workers: int | None = None,
                     shard_rows: int = DEFAULT_SHARD_ROWS, num_gpus: float = 0, progress: bool = True,
                     keep_shards: bool = False, shards: Path | None = None) -> torch.Tensor:
    """fs3 [C_conv, D] computed in shards on Ray; written to ``output`` (.safetensors, the format
    of a finished :func:`compute_relevance` checkpoint).

    ``generator``/``clip`` are the driver's copies of what ``networks`` loads (used for the
    provenance and the layout; every actor checks its own copies against them). ``shards``: the
    folder of finished shards (default ``shard_dir(output)``; the CLI names the one of its final
    output, since it writes ``output`` beside it first).
    """
    conv_dim, embed_dim = generator.layout.conv_total, clip.embed_dim
    meta = _relevance_meta(generator, clip, stats, settings.n_images, settings.sigma, settings.seed, settings.psi,
                           settings.cutoff)
    folder = shards or shard_dir(output)
    folder.mkdir(parents=True, exist_ok=True)
    ranges = shard_ranges(conv_dim, shard_rows)
    fs3 = torch.zeros(conv_dim, embed_dim)
    todo = []
    for rows in ranges:
        block = _finished_shard(_shard_path(folder, rows), meta, rows, embed_dim)
        if block is None:
            todo.append(rows)
        else:
            fs3[rows[0]:rows[1]] = block
    log.info("relevance on Ray: %d shards of %d rows, %d already done", len(ranges), shard_rows,
             len(ranges) - len(todo))
    if todo:
        with ray_session(address) as ray:
            n = workers or default_workers(ray, num_gpus=num_gpus)
            with ActorPool(ray, _ShardWorker, (networks, stats, settings, meta), workers=min(n, len(todo)),
                           num_gpus=num_gpus) as pool:
                for i, block in pool.map_unordered(todo, progress=progress, desc="relevance", unit="shard"):
                    rows = todo[i]
                    save_tensors({"fs3": block}, {**meta, "shard": list(rows), "created": utc_now()},
                                 _shard_path(folder, rows))
                    fs3[rows[0]:rows[1]] = block
    save_tensors({"fs3": fs3, "done": torch.ones(conv_dim, dtype=torch.uint8)},
                 {**meta, "complete": True, "channels_done": conv_dim, "created": utc_now()}, output)
    if not keep_shards:
        shutil.rmtree(folder, ignore_errors=True)
    return fs3


__all__ = ["Networks", "RelevanceSettings", "relevance_on_ray", "shard_ranges", "shard_dir", "DEFAULT_SHARD_ROWS"]
