"""The relevance matrix ``fs3`` (StyleCLIP global_torch/SingleChannel.py and GetGUIData.py):
loading, validation and precompute from generator samples.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ... import weights as W
from ...errors import InputError, WeightsError
from .identity import generator_device, generator_fingerprint, generator_name
from .provenance import load_tensors, save_tensors, utc_now
from .stats import ChannelStats

if TYPE_CHECKING:  # pragma: no cover
    from ...models.clip import ClipNet
    from ...models.stylegan2 import StyleGAN2

log = logging.getLogger(__name__)


def check_fs3(fs3: torch.Tensor, conv_dim: int, embed_dim: int, *, what: str = "fs3") -> torch.Tensor:
    """Validate a relevance matrix against the generator's conv layout and the CLIP size."""
    if fs3.ndim != 2 or fs3.shape != (conv_dim, embed_dim):
        raise WeightsError(
            f"{what} has shape {tuple(fs3.shape)} but this generator has {conv_dim} conv style channels "
            f"and CLIP embeds in {embed_dim} dimensions (expected ({conv_dim}, {embed_dim})). It belongs "
            "to another generator or CLIP model; compute a matching one with `editrt relevance`.")
    if not torch.isfinite(fs3).all():
        raise WeightsError(f"{what} contains NaN or infinite values")
    return fs3


def load_fs3(path: str | os.PathLike, conv_dim: int, embed_dim: int) -> torch.Tensor:
    """Read ``fs3.npy`` (StyleCLIP/DeltaEdit, 6048x512 for FFHQ 1024) or an editrt
    ``.safetensors`` relevance file, and check its shape. float32 [conv_dim, embed_dim]."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"relevance matrix {path} does not exist")
    if path.suffix == ".safetensors":
        tensors, meta = load_tensors(path, "relevance matrix")
        if "fs3" not in tensors:
            raise WeightsError(f"{path} holds no 'fs3' tensor")
        if meta.get("complete") is False:
            raise WeightsError(f"{path} is an unfinished relevance computation; resume it with `editrt relevance`")
        fs3 = tensors["fs3"].float()
    else:
        fs3 = torch.from_numpy(np.asarray(W.load_array(path), dtype=np.float32))
    return check_fs3(fs3, conv_dim, embed_dim, what=f"relevance matrix {path}")


def get_fs(feats: torch.Tensor) -> torch.Tensor:
    """``GetFs``: CLIP features [C, N, 2, D] of (-sigma, +sigma) images -> fs3 [C, D].

    Normalise each embedding, take (+) - (-), normalise, average over the N images, normalise.
    """
    f = F.normalize(feats.double(), dim=-1)
    d = F.normalize(f[:, :, 1] - f[:, :, 0], dim=-1)
    return F.normalize(d.mean(dim=1), dim=-1).float()


def to_uint8_truncate(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 by ``(x+1)*255/2``, clamp, truncation (StyleCLIP torch)."""
    # one float temporary, scaled and clamped in place (x * 127.5 == x * 255 / 2 in binary floats)
    return (images.float() + 1).mul_(255 / 2).clamp_(0, 255).to(torch.uint8)


@torch.no_grad()
def clip_features_of_generated(clip: "ClipNet", images: torch.Tensor) -> torch.Tensor:
    """StyleCLIP fs3 preprocessing: uint8 (truncation), then CLIP resize/crop/normalise, encode.

    Deviation: CLIP's own preprocess runs PIL bicubic resizing on each uint8 image; we resize the
    batch with torch (antialiased bilinear, ``ClipNet.preprocess``). Unnormalised [B, D].
    """
    x01 = to_uint8_truncate(images).float() / 255
    return clip.encode_image(clip.preprocess(x01.to(clip.mean.device))).float()


def _relevance_meta(generator: "StyleGAN2", clip: "ClipNet", stats: ChannelStats, n_images: int,
                    sigma: float, seed: int, psi: float, cutoff: int) -> dict[str, Any]:
    return {"kind": "relevance", "generator": generator_name(generator),
            "generator_fingerprint": generator_fingerprint(generator),
            "clip_model": clip.name, "n_images": n_images, "sigma": sigma, "seed": seed, "psi": psi,
            "cutoff": cutoff, "stats": {k: stats.provenance.get(k) for k in ("n", "psi", "cutoff", "seed")}}


class RelevanceInterrupted(KeyboardInterrupt):
    """A relevance computation stopped by SIGINT/SIGTERM after saving its checkpoint.

    ``done`` of ``total`` rows are in ``checkpoint`` (None when the run had none); the same call
    again resumes from there.
    """

    def __init__(self, done: int, total: int, checkpoint: Path | None):
        self.done, self.total, self.checkpoint = done, total, checkpoint
        where = (f"{done}/{total} rows saved in {checkpoint}; run the same command again to resume"
                 if checkpoint is not None else f"{done}/{total} rows done, no checkpoint (nothing kept)")
        super().__init__(f"relevance computation interrupted: {where}")


# Rows between two checkpoint saves (besides the time limit): ~1% of the 6048 FFHQ rows.
CHECKPOINT_EVERY_ROWS = 64


def check_row_range(rows: tuple[int, int] | None, conv_dim: int) -> tuple[int, int]:
    """``(start, stop)`` channel rows, or every row for None; a clear error when out of range."""
    if rows is None:
        return 0, conv_dim
    try:
        lo, hi = (int(r) for r in rows)
    except (TypeError, ValueError):
        raise InputError(f"rows must be a (start, stop) pair of channel indices, got {rows!r}") from None
    if not 0 <= lo < hi <= conv_dim:
        raise InputError(f"rows {rows!r} are out of range: need 0 <= start < stop <= {conv_dim}")
    return lo, hi


@torch.no_grad()
def compute_relevance(generator: "StyleGAN2", clip: "ClipNet", stats: ChannelStats, *, n_images: int = 100,
                      sigma: float = 5.0, seed: int = 5, psi: float = 0.7, cutoff: int = 8,
                      batch_size: int = 32, checkpoint: str | os.PathLike | None = None,
                      checkpoint_every_s: float = 60.0, progress: bool = True,
                      stop_after: int | None = None, rows: tuple[int, int] | None = None,
                      checkpoint_every_rows: int = CHECKPOINT_EVERY_ROWS) -> torch.Tensor:
    """The relevance matrix fs3 [C_conv, D] of any generator (``SingleChannel.py`` + ``GetFs``).

    The ``n_images`` images are the first samples of the statistics stream (``RandomState(seed)``,
    truncation ``psi``/``cutoff``). For every conv channel c and image i, channel c alone is set
    to ``mean_c -/+ sigma * std_c``; both images go through CLIP (:func:`clip_features_of_generated`)
    and :func:`get_fs` turns the features into row c. All conv layers are covered (6048 rows at
    1024 px, the shape of the shipped FFHQ fs3).

    Deviation: the reference loop copies only the *list* of style arrays, so each channel stays
    at its mean for every later channel of the run. That order-dependent state is not reproduced:
    every channel is perturbed from the unmodified codes.

    Work is batched across channels (``batch_size`` images per synthesis call). With
    ``checkpoint``, finished rows are saved atomically every ``checkpoint_every_rows`` rows or
    ``checkpoint_every_s`` seconds, whichever comes first, on an interrupt (KeyboardInterrupt,
    which the CLI also raises for SIGTERM; then :class:`RelevanceInterrupted` says how many rows
    were kept) and at the end; a later call with the same arguments resumes from that file (its
    provenance must match). ``stop_after`` (channels) ends the run early, leaving an unfinished
    checkpoint.

    ``rows=(start, stop)`` computes only channels ``start <= c < stop`` and returns those rows
    [stop - start, D] (a shard of a distributed run, ``editrt.jobs.relevance``). Each row depends
    only on its channel, so shards merge into the matrix of one full run.
    """
    if checkpoint_every_rows < 1:
        raise InputError(f"checkpoint_every_rows must be >= 1, got {checkpoint_every_rows}")
    if batch_size < 1 or n_images < 1:
        raise InputError(f"batch_size and n_images must be >= 1, got {batch_size} and {n_images}")
    from tqdm.auto import tqdm

    conv_dim = generator.layout.conv_total
    embed_dim = clip.embed_dim
    meta = _relevance_meta(generator, clip, stats, n_images, sigma, seed, psi, cutoff)
    fs3 = torch.zeros(conv_dim, embed_dim)
    done = torch.zeros(conv_dim, dtype=torch.bool)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        tensors, old = load_tensors(ckpt, "relevance checkpoint")
        old_core = {k: v for k, v in old.items() if k not in ("complete", "created", "channels_done")}
        if old_core != meta:
            raise InputError(f"{ckpt} was made with other settings ({old_core}); expected {meta}. "
                             "Use another output path or the same settings to resume.")
        fs3, done = tensors["fs3"].float(), tensors["done"].bool()
        log.info("resuming relevance computation: %d/%d channels done", int(done.sum()), conv_dim)

    def save(complete: bool) -> None:
        if ckpt is not None:
            save_tensors({"fs3": fs3, "done": done.to(torch.uint8)},
                                 {**meta, "complete": complete, "channels_done": int(done.sum()),
                                  "created": utc_now()}, ckpt)

    # Base codes of the first n_images samples of the statistics stream.
    rs = np.random.RandomState(seed)
    z = torch.from_numpy(rs.randn(n_images, generator.style_dim)).float().to(generator_device(generator))
    base = generator.styles_from_w(generator.mapping(z, psi=psi, cutoff=cutoff))
    base_conv = base.conv_view()
    mean_conv = stats.mean.conv_view()[0].to(base_conv)
    std_conv = stats.std.conv_view()[0].to(base_conv)

    lo, hi = check_row_range(rows, conv_dim)
    todo = [int(c) for c in torch.nonzero(~done).flatten() if lo <= int(c) < hi]
    if stop_after is not None:
        todo = todo[:stop_after]
    last_save, unsaved = time.monotonic(), 0

    def _maybe_save(rows: int) -> None:
        nonlocal last_save, unsaved
        unsaved += rows
        if unsaved >= checkpoint_every_rows or time.monotonic() - last_save >= checkpoint_every_s:
            save(complete=bool(done.all()))
            last_save, unsaved = time.monotonic(), 0

    # Jobs in channel order: (channel, image, sign); 2 * n_images per channel.
    bar = tqdm(total=len(todo), desc="relevance", unit="ch", disable=not progress)
    try:
        _relevance_batches(generator, clip, base, base_conv, mean_conv, std_conv, todo, sigma, batch_size,
                           fs3, done, bar, lambda n: _maybe_save(n))
    except KeyboardInterrupt:
        bar.close()
        save(complete=False)
        raise RelevanceInterrupted(int(done.sum()), conv_dim, ckpt) from None
    bar.close()
    save(complete=bool(done.all()))
    if rows is not None and done[lo:hi].all():
        return fs3[lo:hi].clone()
    if not done.all():
        raise InputError(f"relevance computation stopped with {int(done.sum())}/{conv_dim} channels done; "
                         + (f"resume with the same arguments (checkpoint {ckpt})" if ckpt else
                            "pass a checkpoint path to make it resumable"))
    return fs3


def _relevance_batches(generator, clip, base, base_conv, mean_conv, std_conv, todo, sigma, batch_size,
                       fs3, done, bar, on_rows) -> None:
    """Fill the rows ``todo`` of ``fs3`` (and ``done``), ``batch_size`` images per synthesis call;
    ``on_rows(n)`` is called after each batch that finished ``n`` > 0 rows."""
    n_images = base_conv.shape[0]
    embed_dim = fs3.shape[1]
    per_ch = 2 * n_images
    img_idx = torch.arange(n_images).repeat_interleave(2)
    signs = torch.tensor([-1.0, 1.0]).repeat(n_images).to(base_conv)
    feats: dict[int, list[torch.Tensor]] = {}
    jobs_total = len(todo) * per_ch
    for start in range(0, jobs_total, batch_size):
        stop = min(start + batch_size, jobs_total)
        j = torch.arange(start, stop)
        ch = torch.tensor(todo)[j // per_ch]
        k = j % per_ch
        ii = img_idx[k]
        conv = base_conv[ii].clone()
        conv[torch.arange(len(j)), ch] = mean_conv[ch] + signs[k] * sigma * std_conv[ch]
        code = base[ii.to(base_conv.device)].with_conv_view(conv)
        emb = clip_features_of_generated(clip, generator.synthesize(code)).cpu()
        for row, c in enumerate(ch.tolist()):
            feats.setdefault(c, []).append(emb[row])
        finished = [c for c, lst in feats.items() if len(lst) == per_ch]
        for c in finished:
            f = torch.stack(feats.pop(c)).view(1, n_images, 2, embed_dim)
            fs3[c] = get_fs(f)[0]
            done[c] = True
            bar.update(1)
        if finished:
            on_rows(len(finished))
