"""Shared pieces of the StyleGAN2 direction edits (global directions, FEU, DeltaEdit).

- text directions in CLIP space: the 79 ImageNet templates, per-class normalised mean
  (``zeroshot_classifier``), ``GetDt`` (normalised) and DeltaEdit's unnormalised variant;
- the CLIP -> S mapping of StyleCLIP: ``GetBoundary`` (relevance, beta threshold, max-abs
  scaling), ``SplitS`` (per-layer chunks times ``code_std``, zeros for tRGB), automatic beta
  (``GetDt2``);
- per-channel S statistics (:class:`ChannelStats`) and the relevance matrix ``fs3``
  (:func:`load_fs3`, :func:`compute_relevance`, :func:`get_fs`);
- the corpus index of StyleCLIP-FEU (:class:`CorpusIndex`);
- :class:`StyleEditResult`, the return value of every ``.edit``.

REFERENCES.md §2 and §4 list the reference formulas; deviations are documented where they occur.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import weights as W
from ..errors import InputError, NumericalError, WeightsError

if TYPE_CHECKING:  # pragma: no cover
    from ..models.clip import ClipNet
    from ..models.stylegan2 import StyleCode, StyleGAN2

log = logging.getLogger(__name__)

# CLIP's 80 ImageNet prompt templates without 'a photo of many {}.', which StyleCLIP and
# DeltaEdit comment out: 79 templates, in the reference order.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    'a bad photo of a {}.', 'a sculpture of a {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of the {}.', 'a rendering of a {}.', 'graffiti of a {}.',
    'a bad photo of the {}.', 'a cropped photo of the {}.', 'a tattoo of a {}.',
    'the embroidered {}.', 'a photo of a hard to see {}.', 'a bright photo of a {}.',
    'a photo of a clean {}.', 'a photo of a dirty {}.', 'a dark photo of the {}.',
    'a drawing of a {}.', 'a photo of my {}.', 'the plastic {}.', 'a photo of the cool {}.',
    'a close-up photo of a {}.', 'a black and white photo of the {}.', 'a painting of the {}.',
    'a painting of a {}.', 'a pixelated photo of the {}.', 'a sculpture of the {}.',
    'a bright photo of the {}.', 'a cropped photo of a {}.', 'a plastic {}.',
    'a photo of the dirty {}.', 'a jpeg corrupted photo of a {}.', 'a blurry photo of the {}.',
    'a photo of the {}.', 'a good photo of the {}.', 'a rendering of the {}.',
    'a {} in a video game.', 'a photo of one {}.', 'a doodle of a {}.',
    'a close-up photo of the {}.', 'a photo of a {}.', 'the origami {}.',
    'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.', 'a origami {}.',
    'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.',
    'a photo of the clean {}.', 'a photo of a large {}.', 'a rendition of a {}.',
    'a photo of a nice {}.', 'a photo of a weird {}.', 'a blurry photo of a {}.', 'a cartoon {}.',
    'art of a {}.', 'a sketch of the {}.', 'a embroidered {}.', 'a pixelated photo of a {}.',
    'itap of the {}.', 'a jpeg corrupted photo of the {}.', 'a good photo of a {}.',
    'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.',
    'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.', 'a drawing of the {}.',
    'a photo of the large {}.', 'a black and white photo of a {}.', 'the plushie {}.',
    'a dark photo of a {}.', 'itap of a {}.', 'graffiti of the {}.', 'a toy {}.', 'itap of my {}.',
    'a photo of a cool {}.', 'a photo of a small {}.', 'a tattoo of the {}.',
)

# A direction whose norm is below this is treated as zero (same prompt up to float noise).
ZERO_DIRECTION_NORM = 1e-6


# ---------------------------------------------------------------------------------------------
# Text directions
# ---------------------------------------------------------------------------------------------

_TEMPLATE_CACHE: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()
TEMPLATE_CACHE_SIZE = 1024  # classes kept per CLIP model (each a D-float vector)


@torch.no_grad()
def template_embeddings(clip: "ClipNet", classnames: Sequence[str],
                        templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
    """``zeroshot_classifier``: per class, normalise each templated prompt's embedding, average,
    normalise. Returns float32 [N, D] unit rows (on CPU).

    Encoding 79 prompts per class dominates a direction edit, so results are kept in a small
    LRU cache per CLIP model (frozen weights): a repeated neutral or target text costs nothing.
    """
    if isinstance(classnames, str):
        classnames = [classnames]
    for name in classnames:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"empty prompt {name!r}: describe the edit target in words")
    cache = _TEMPLATE_CACHE.setdefault(clip, OrderedDict())
    key_of = {c: (c, tuple(templates)) for c in classnames}
    missing = list(dict.fromkeys(c for c in classnames if key_of[c] not in cache))
    if missing:
        prompts = [t.format(c) for c in missing for t in templates]
        tokens = clip.tokenize(prompts)
        emb = F.normalize(clip.encode_text(tokens).float(), dim=-1).cpu()
        emb = F.normalize(emb.view(len(missing), len(templates), -1).mean(dim=1), dim=-1)
        for c, e in zip(missing, emb):
            cache[key_of[c]] = e
    for c in classnames:
        cache.move_to_end(key_of[c])
    out = torch.stack([cache[key_of[c]] for c in classnames])
    while len(cache) > TEMPLATE_CACHE_SIZE:
        cache.popitem(last=False)
    return out.clone()


def text_direction(clip: "ClipNet", target: str, neutral: str, *, normalize: bool = True) -> torch.Tensor:
    """``GetDt([target, neutral])``: t_target - t_neutral, unit length if ``normalize``.

    ``normalize=False`` is DeltaEdit's ``map_tool.GetDt`` (its channel mask uses the raw
    difference). A zero direction (same prompt, or prompts CLIP cannot tell apart) is an
    :class:`InputError`: the reference would divide by zero.
    """
    if target.strip() == neutral.strip():
        raise InputError(f"target text {target!r} equals the neutral text: the edit direction is zero; "
                         "describe the change (e.g. neutral 'face', target 'smiling face')")
    emb = template_embeddings(clip, [target, neutral])
    dt = emb[0] - emb[1]
    norm = float(dt.norm())
    log.debug("|dt| = %.4f for %r -> %r", norm, neutral, target)
    if not math.isfinite(norm):
        raise NumericalError("the CLIP text direction is not finite")
    if norm < ZERO_DIRECTION_NORM:
        raise InputError(f"target {target!r} and neutral {neutral!r} give the same CLIP embedding: "
                         "the edit direction is zero; change the target text")
    return dt / norm if normalize else dt


# ---------------------------------------------------------------------------------------------
# CLIP direction -> S-space delta (GetBoundary / SplitS / GetDt2)
# ---------------------------------------------------------------------------------------------

def relevance(fs3: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
    """r = fs3 @ dt: [C] (one score per conv channel)."""
    if dt.ndim != 1 or fs3.shape[1] != dt.shape[0]:
        raise InputError(f"direction of size {tuple(dt.shape)} does not match the relevance matrix "
                         f"{tuple(fs3.shape)}; was fs3 computed with another CLIP model?")
    return fs3.float() @ dt.float().to(fs3.device)


def boundary(fs3: torch.Tensor, dt: torch.Tensor, beta: float) -> tuple[torch.Tensor, int]:
    """``GetBoundary`` before ``SplitS``: zero |r| < beta, divide by max |r|.

    Returns (delta [C] with max |delta| = 1, number of channels kept). No channel over beta
    is an :class:`InputError` (the reference divides by zero and yields NaN images).
    """
    r = relevance(fs3, dt)
    keep = r.abs() >= beta
    num_c = int(keep.sum())
    if num_c == 0:
        raise InputError(f"no channel has |relevance| >= beta={beta:g} (max {float(r.abs().max()):.3f}); "
                         "lower beta or use automatic beta")
    r = torch.where(keep, r, torch.zeros_like(r))
    return r / r.abs().max(), num_c


def auto_beta(fs3: torch.Tensor, dt: torch.Tensor, *, beta_range: tuple[float, float, float] = (0.1, 0.3, 0.01),
              min_channels: int = 20, fallback: float = 0.1) -> float:
    """``StyleCLIP.GetDt2``: the largest beta of ``np.arange(*beta_range)`` keeping more than
    ``min_channels`` channels, else ``fallback``."""
    r = relevance(fs3, dt).abs()
    betas = np.arange(*beta_range)
    counts = np.array([int((r >= b).sum()) for b in betas])
    ok = counts > min_channels
    # round off np.arange's float noise (0.18999999999999995 -> 0.19)
    return round(float(betas[ok][-1]), 10) if ok.any() else float(fallback)


def split_delta(delta_conv: torch.Tensor, code_std: "StyleCode") -> "StyleCode":
    """``SplitS(if_std=True)``: conv-view delta [C] -> a batch-1 StyleCode with each conv layer's
    chunk times that layer's ``code_std`` and zeros for the tRGB layers."""
    from ..models.stylegan2 import StyleCode

    delta = StyleCode.from_conv_delta(delta_conv.reshape(1, -1).to(code_std.device, code_std.dtype),
                                      code_std.layout)
    return delta * code_std


# ---------------------------------------------------------------------------------------------
# Generator identity (provenance of stats, relevance matrices and corpora)
# ---------------------------------------------------------------------------------------------

_FINGERPRINTS: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def generator_name(generator: "StyleGAN2") -> str:
    """The config name of a generator (``ffhq-1024``, ``tiny``) or ``custom-<size>``."""
    from ..models.stylegan2 import STYLEGAN2_CONFIGS

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


# ---------------------------------------------------------------------------------------------
# Files with provenance (safetensors + JSON metadata, written atomically)
# ---------------------------------------------------------------------------------------------

def _atomic_save_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
                  metadata={"editrt": json.dumps(meta, sort_keys=True)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _load_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("editrt", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{what} {path} is not a readable editrt file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{what} {path} is not a readable editrt file: {exc}") from None
    return tensors, meta


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Channel statistics
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class ChannelStats:
    """Per-channel mean and std (ddof 0) of S over mapped samples (``GetCodeMS``), all layers
    tRGB included. ``mean``/``std`` are batch-1 StyleCodes; ``provenance`` says how they were made.
    """

    mean: "StyleCode"
    std: "StyleCode"
    provenance: dict[str, Any]

    def save(self, path: str | os.PathLike) -> Path:
        return _atomic_save_tensors({"mean": self.mean.flat(), "std": self.std.flat()},
                                    {"kind": "channel_stats", **self.provenance}, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike, generator: "StyleGAN2") -> "ChannelStats":
        from ..models.stylegan2 import StyleCode

        tensors, meta = _load_tensors(Path(path), "channel statistics")
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
            "n": n, "psi": psi, "cutoff": cutoff, "seed": seed, "created": _now()}
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


# ---------------------------------------------------------------------------------------------
# Relevance matrix fs3
# ---------------------------------------------------------------------------------------------

def _register_known() -> None:
    W.register_known(W.KnownFile(
        "styleclip/ffhq-1024/fs3", "styleclip/ffhq-1024/fs3.npy",
        "https://github.com/orpatashnik/StyleCLIP/raw/main/global_torch/npy/ffhq/fs3.npy",
        "take global_torch/npy/ffhq/fs3.npy from the StyleCLIP repository (same file as DeltaEdit's "
        "models/stylegan2/npy_ffhq/fs3.npy), or compute one with `editrt relevance`"))


_register_known()


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
        tensors, meta = _load_tensors(path, "relevance matrix")
        if "fs3" not in tensors:
            raise WeightsError(f"{path} holds no 'fs3' tensor")
        if meta.get("complete") is False:
            raise WeightsError(f"{path} is an unfinished relevance computation; resume it with `editrt relevance`")
        fs3 = tensors["fs3"].float()
    else:
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not a readable .npy array: {exc}") from None
        fs3 = torch.from_numpy(np.asarray(arr, dtype=np.float32))
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
    return ((images.float() + 1) * (255 / 2)).clamp(0, 255).to(torch.uint8)


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


@torch.no_grad()
def compute_relevance(generator: "StyleGAN2", clip: "ClipNet", stats: ChannelStats, *, n_images: int = 100,
                      sigma: float = 5.0, seed: int = 5, psi: float = 0.7, cutoff: int = 8,
                      batch_size: int = 32, checkpoint: str | os.PathLike | None = None,
                      checkpoint_every_s: float = 60.0, progress: bool = True,
                      stop_after: int | None = None) -> torch.Tensor:
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
    ``checkpoint``, finished rows are saved atomically every ``checkpoint_every_s`` seconds and at
    the end; a later call with the same arguments resumes from that file (its provenance must
    match). ``stop_after`` (channels) ends the run early, leaving an unfinished checkpoint.
    """
    from tqdm.auto import tqdm

    conv_dim = generator.layout.conv_total
    embed_dim = clip.embed_dim
    meta = _relevance_meta(generator, clip, stats, n_images, sigma, seed, psi, cutoff)
    fs3 = torch.zeros(conv_dim, embed_dim)
    done = torch.zeros(conv_dim, dtype=torch.bool)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        tensors, old = _load_tensors(ckpt, "relevance checkpoint")
        old_core = {k: v for k, v in old.items() if k not in ("complete", "created", "channels_done")}
        if old_core != meta:
            raise InputError(f"{ckpt} was made with other settings ({old_core}); expected {meta}. "
                             "Use another output path or the same settings to resume.")
        fs3, done = tensors["fs3"].float(), tensors["done"].bool()
        log.info("resuming relevance computation: %d/%d channels done", int(done.sum()), conv_dim)

    def save(complete: bool) -> None:
        if ckpt is not None:
            _atomic_save_tensors({"fs3": fs3, "done": done.to(torch.uint8)},
                                 {**meta, "complete": complete, "channels_done": int(done.sum()),
                                  "created": _now()}, ckpt)

    # Base codes of the first n_images samples of the statistics stream.
    rs = np.random.RandomState(seed)
    z = torch.from_numpy(rs.randn(n_images, generator.style_dim)).float().to(generator_device(generator))
    base = generator.styles_from_w(generator.mapping(z, psi=psi, cutoff=cutoff))
    base_conv = base.conv_view()
    mean_conv = stats.mean.conv_view()[0].to(base_conv)
    std_conv = stats.std.conv_view()[0].to(base_conv)

    todo = [int(c) for c in torch.nonzero(~done).flatten()]
    if stop_after is not None:
        todo = todo[:stop_after]
    # Jobs in channel order: (channel, image, sign); 2 * n_images per channel.
    per_ch = 2 * n_images
    img_idx = torch.arange(n_images).repeat_interleave(2)
    signs = torch.tensor([-1.0, 1.0]).repeat(n_images).to(base_conv)
    feats: dict[int, list[torch.Tensor]] = {}
    last_save = time.monotonic()
    bar = tqdm(total=len(todo), desc="relevance", unit="ch", disable=not progress)
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
        if finished and time.monotonic() - last_save >= checkpoint_every_s:
            save(complete=bool(done.all()))
            last_save = time.monotonic()
    bar.close()
    save(complete=bool(done.all()))
    if not done.all():
        raise InputError(f"relevance computation stopped with {int(done.sum())}/{conv_dim} channels done; "
                         + (f"resume with the same arguments (checkpoint {ckpt})" if ckpt else
                            "pass a checkpoint path to make it resumable"))
    return fs3


# ---------------------------------------------------------------------------------------------
# FEU corpus index
# ---------------------------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclasses.dataclass
class CorpusIndex:
    """CLIP image embeddings of a corpus (unit rows, float32 [N, D]) with their provenance.

    ``items`` name each image (file paths relative to the folder, or ``seed:<i>`` for generator
    samples); ``s_codes`` keeps the conv-view S codes [N, C_conv] of generator samples.
    """

    embeddings: torch.Tensor
    clip_model: str
    items: list[str]
    provenance: dict[str, Any]
    s_codes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def check_clip(self, clip_model: str) -> None:
        if clip_model != self.clip_model:
            raise InputError(f"corpus index was built with CLIP {self.clip_model!r}; this edit uses "
                             f"{clip_model!r}. Embeddings of different CLIP models are not comparable: "
                             "rebuild the index with `editrt corpus build`.")

    def save(self, path: str | os.PathLike) -> Path:
        tensors = {"embeddings": self.embeddings.float()}
        if self.s_codes is not None:
            tensors["s_codes"] = self.s_codes.float()
        meta = {"kind": "corpus_index", "clip_model": self.clip_model, "items": self.items, **self.provenance}
        return _atomic_save_tensors(tensors, meta, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike, *, clip_model: str | None = None) -> "CorpusIndex":
        tensors, meta = _load_tensors(Path(path), "corpus index")
        if meta.get("kind") != "corpus_index" or "embeddings" not in tensors:
            raise WeightsError(f"{path} is not an editrt corpus index")
        meta = dict(meta)
        index = cls(tensors["embeddings"].float(), meta.pop("clip_model"), list(meta.pop("items")),
                    meta, tensors.get("s_codes"))
        if len(index) == 0:
            raise InputError(f"corpus index {path} is empty")
        if clip_model is not None:
            index.check_clip(clip_model)
        return index

    def retrieve(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the ``k`` most and ``k`` least cosine-similar images to ``query`` [D]."""
        n = len(self)
        if n == 0:
            raise InputError("the corpus index is empty: build it from a folder with images or from generator samples")
        if k < 1 or 2 * k > n:
            raise InputError(f"k={k} needs at least {2 * k} corpus images ({k} positives + {k} negatives); "
                             f"the corpus has {n}. Lower k or build a larger corpus.")
        if query.shape[-1] != self.embeddings.shape[1]:
            raise InputError(f"query of size {query.shape[-1]} does not match the corpus embeddings "
                             f"({self.embeddings.shape[1]})")
        sims = F.normalize(self.embeddings, dim=-1) @ F.normalize(query.float().cpu(), dim=-1)
        order = torch.argsort(sims, descending=True, stable=True)
        return order[:k], order[-k:].flip(0)


def _embed_batches(clip: "ClipNet", batches, total: int, progress: bool, desc: str) -> torch.Tensor:
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for x01 in batches:
            with torch.no_grad():
                out.append(clip.embed_image(x01.to(clip.mean.device)).cpu())
            bar.update(x01.shape[0])
    return torch.cat(out) if out else torch.zeros(0, clip.embed_dim)


def build_corpus_from_folder(clip: "ClipNet", folder: str | os.PathLike, *, batch_size: int = 32,
                             progress: bool = True) -> CorpusIndex:
    """Index every image under ``folder`` (recursive, sorted) with CLIP's standard preprocessing."""
    from ..imageio import load_image, pil_to_tensor

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"corpus folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"corpus folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")

    def batches():
        for i in range(0, len(files), batch_size):
            # Resize each image first so images of different sizes stack.
            yield torch.stack([clip.resize_crop(pil_to_tensor(load_image(p))) for p in files[i:i + batch_size]])

    emb = _embed_batches(clip, batches(), len(files), progress, "corpus")
    prov = {"source": "folder", "folder": str(folder.resolve()), "n": len(files), "created": _now()}
    return CorpusIndex(F.normalize(emb.float(), dim=-1), clip.name, [str(p.relative_to(folder)) for p in files], prov)


@torch.no_grad()
def build_corpus_from_generator(clip: "ClipNet", generator: "StyleGAN2", n: int, *, seed: int = 0,
                                psi: float = 0.7, cutoff: int = 8, batch_size: int = 16,
                                progress: bool = True) -> CorpusIndex:
    """Index ``n`` generator samples (z from ``RandomState(seed)``), keeping their conv S codes."""
    if n < 1:
        raise InputError(f"a generated corpus needs at least one sample, got n={n}")
    rs = np.random.RandomState(seed)
    codes: list[torch.Tensor] = []

    def batches():
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            z = torch.from_numpy(rs.randn(b, generator.style_dim)).float().to(generator_device(generator))
            code = generator.styles_from_w(generator.mapping(z, psi=psi, cutoff=cutoff))
            codes.append(code.conv_view().cpu())
            yield ((generator.synthesize(code).float() + 1) / 2).clamp(0, 1)

    emb = _embed_batches(clip, batches(), n, progress, "corpus")
    prov = {"source": "generator", "generator": generator_name(generator),
            "generator_fingerprint": generator_fingerprint(generator),
            "seed": seed, "psi": psi, "cutoff": cutoff, "n": n, "created": _now()}
    return CorpusIndex(F.normalize(emb.float(), dim=-1), clip.name, [f"seed:{seed}:{i}" for i in range(n)],
                       prov, torch.cat(codes))


# ---------------------------------------------------------------------------------------------
# Results and inputs
# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class StyleEditResult:
    """Output of ``GlobalDirection/FEU/DeltaEdit.edit``.

    images: [B, K, 3, H, W] float in [-1, 1], K = number of strengths (in ``strengths`` order).
    codes: K StyleCodes of batch B (the edited codes). source: [B, 3, H, W] unedited synthesis.
    channels_changed: conv channels with a non-zero delta. direction: the CLIP-space direction [D].
    """

    images: torch.Tensor
    codes: list["StyleCode"]
    source: torch.Tensor
    strengths: tuple[float, ...]
    channels_changed: int
    direction: torch.Tensor
    method: str
    config: dict[str, Any]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def image(self) -> torch.Tensor:
        """[B, 3, H, W] edit at the first strength."""
        return self.images[:, 0]

    @property
    def code(self) -> "StyleCode":
        return self.codes[0]

    def to_uint8(self) -> torch.Tensor:
        """[B, K, H, W, 3] uint8 (StyleCLIP torch conversion: truncation)."""
        return to_uint8_truncate(self.images).permute(0, 1, 3, 4, 2).contiguous()

    def grid(self, include_source: bool = True) -> torch.Tensor:
        """One [3, B*H, (K+1)*W] image in [0, 1]: a row per input, source then each strength."""
        imgs = self.images
        if include_source:
            imgs = torch.cat([self.source.unsqueeze(1), imgs], dim=1)
        b, k, c, h, w = imgs.shape
        grid = imgs.permute(2, 0, 3, 1, 4).reshape(c, b * h, k * w)
        return ((grid.float() + 1) / 2).clamp(0, 1)

    def save(self, path: str | os.PathLike, include_source: bool = True) -> Path:
        """Write :meth:`grid` atomically (format from the suffix) plus ``<path>.json`` metadata."""
        from ..imageio import atomic_write_bytes, save_image

        path = Path(path)
        out = save_image(self.grid(include_source), path)
        meta = {"method": self.method, "config": self.config, "strengths": list(self.strengths),
                "channels_changed": self.channels_changed,
                **{k: v for k, v in self.extras.items() if isinstance(v, (int, float, str, list, bool))}}
        atomic_write_bytes(path.with_suffix(path.suffix + ".json"), json.dumps(meta, indent=2).encode())
        return out


def as_strengths(value: float | Sequence[float], default: float, *, limit: float, what: str) -> tuple[float, ...]:
    """One or several strengths -> tuple, each finite and within ``[-limit, limit]``."""
    vals = [default] if value is None else ([value] if isinstance(value, (int, float)) else list(value))
    if not vals:
        raise InputError(f"give at least one {what}")
    for v in vals:
        if not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > limit:
            raise InputError(f"{what} {v!r} is out of range: use a finite value in [-{limit:g}, {limit:g}]")
    return tuple(float(v) for v in vals)


def check_beta(beta: float) -> float:
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or not 0.0 <= beta < 1.0:
        raise InputError(f"beta {beta!r} is out of range: the disentanglement threshold lies in [0, 1) "
                         "(|relevance| of unit vectors is at most 1; the reference uses 0.08-0.3)")
    return float(beta)


def check_images_finite(images: torch.Tensor, what: str) -> torch.Tensor:
    if not torch.isfinite(images).all():
        raise NumericalError(f"{what} produced NaN or infinite pixels; lower the strength")
    return images


def default_batch(generator: "StyleGAN2") -> int:
    """Images per synthesis call: large for small generators, 8 at 1024 px."""
    return max(8, min(512, (256 * 32 * 32) // generator.size ** 2))


# ---------------------------------------------------------------------------------------------
# Shared editor plumbing
# ---------------------------------------------------------------------------------------------

def relevance_store_path(generator: "StyleGAN2", clip_name: str) -> Path:
    """Where ``editrt relevance`` writes a computed matrix by default (EDITRT_HOME store)."""
    return W.editrt_home() / "styleclip" / "relevance" / (
        f"{generator_name(generator)}-{generator_fingerprint(generator)[:12]}-{clip_name}.safetensors")


class StyleEditor:
    """Generator + CLIP + relevance matrix + channel statistics, shared by the three methods.

    generator: a :class:`StyleGAN2` or a config name (default ``config.generator``);
    clip: a ClipNet or a CLIP name (default ``config.clip_model``); weights: a store folder or
    ``{key: path}`` mapping (``weights.resolve``); random_init: seeded random weights for every
    network (offline smoke runs); fs3 / stats: explicit relevance matrix (path or tensor) and
    channel statistics (path or :class:`ChannelStats`).
    """

    method = "style"

    def __init__(self, generator=None, clip=None, config=None, *, weights: W.WeightsArg = None,
                 random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                 fs3: torch.Tensor | str | os.PathLike | None = None, stats=None, download: bool = False,
                 allow_pickle: bool = False, backend: str = "torch"):
        from ..models.clip import ClipNet, load_clip
        from ..models.stylegan2 import StyleGAN2

        self.config = config
        self.device = torch.device(device)
        self.weights, self.random_init, self.seed = weights, random_init, seed
        self._download, self._allow_pickle = download, allow_pickle
        if isinstance(generator, StyleGAN2):
            self.generator = generator
        else:
            self.generator = StyleGAN2.load(generator or config.generator, weights=weights, random_init=random_init,
                                            seed=seed, device=self.device, allow_pickle=allow_pickle,
                                            download=download)
        if isinstance(clip, ClipNet):
            self.clip = clip
        else:
            self.clip = load_clip(clip or config.clip_model, weights=weights, random_init=random_init, seed=seed,
                                  device=self.device, download=download, allow_pickle=allow_pickle)
        self._fs3_arg = fs3
        self._fs3: torch.Tensor | None = None
        self._stats_arg = stats
        self._stats: ChannelStats | None = None
        self._encoder = None
        self.backend, self.stages = backend, None  # not torch: text, image, synthesis, e4e, mapper in engines
        if backend != "torch":
            from ..engines.stages import StyleStages

            self.stages = StyleStages.for_editor(self, backend, injected=[
                k for k, v in (("generator", generator), ("clip", clip)) if v is not None and not isinstance(v, str)])
            self.generator, self.clip = self.stages.wrap_generator(self.generator), self.stages.wrap_clip(self.clip)

    @property
    def stats(self) -> ChannelStats:
        """Channel statistics (``code_mean``/``code_std``): given, cached in the store, or computed once."""
        if self._stats is None:
            if isinstance(self._stats_arg, ChannelStats):
                self._stats = self._stats_arg
            else:
                cfg = self.config
                self._stats = channel_stats_for(
                    self.generator, n=getattr(cfg, "stats_samples", 512 if self.random_init else 100_000),
                    psi=getattr(cfg, "stats_psi", 0.7), cutoff=getattr(cfg, "stats_cutoff", 8),
                    seed=getattr(cfg, "stats_seed", 5), path=self._stats_arg, cache=not self.random_init)
        return self._stats

    # -- relevance matrix ---------------------------------------------------------------------
    @property
    def fs3(self) -> torch.Tensor:
        """The relevance matrix [C_conv, D] (loaded or computed on first use)."""
        if self._fs3 is None:
            self._fs3 = self._resolve_fs3().to(self.device)
        return self._fs3

    def _resolve_fs3(self) -> torch.Tensor:
        conv_dim, dim = self.generator.layout.conv_total, self.clip.embed_dim
        arg = self._fs3_arg
        if isinstance(arg, torch.Tensor):
            return check_fs3(arg.float().cpu(), conv_dim, dim)
        if arg is not None:
            return load_fs3(arg, conv_dim, dim)
        name = generator_name(self.generator)
        key = f"styleclip/{name}/fs3"
        if key in W.known_files() and not self.random_init:
            try:
                return load_fs3(W.resolve(key, weights=self.weights, download=self._download), conv_dim, dim)
            except WeightsError:
                if not relevance_store_path(self.generator, self.clip.name).is_file():
                    raise
        computed = relevance_store_path(self.generator, self.clip.name)
        if computed.is_file():
            return load_fs3(computed, conv_dim, dim)
        if self.random_init:
            # Random networks: compute a small matrix in memory (seconds for the tiny generator).
            n_images = getattr(self.config, "relevance_images", 1)
            log.info("computing a relevance matrix for the random %s generator (%d images)", name, n_images)
            return compute_relevance(self.generator, self.clip, self.stats, n_images=n_images,
                                     batch_size=default_batch(self.generator), progress=False)
        raise WeightsError(
            f"no relevance matrix (fs3) for generator {name} with CLIP {self.clip.name}: expected "
            f"{computed}. Compute one with `editrt relevance --generator {name}` or pass fs3=PATH.")

    # -- inputs -------------------------------------------------------------------------------
    @torch.no_grad()
    def codes_from_seeds(self, seeds: Sequence[int] | int, *, psi: float = 0.7, cutoff: int | None = 8) -> "StyleCode":
        """StyleCodes of generator samples: z = ``RandomState(seed).randn(1, D)`` per seed."""
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        if not seeds:
            raise InputError("give at least one seed")
        z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, self.generator.style_dim)
                                             for s in seeds])).float().to(self.device)
        return self.generator.styles_from_w(self.generator.mapping(z, psi=psi, cutoff=cutoff))

    def _load_encoder(self):
        if self._encoder is None:
            from ..models.e4e import E4E_CONFIGS, Encoder4Editing

            name = generator_name(self.generator).split("-")[0]  # ffhq-1024 -> ffhq
            if name not in E4E_CONFIGS:
                raise InputError(f"no e4e encoder exists for generator {generator_name(self.generator)}; "
                                 f"real photos can be edited with {sorted(E4E_CONFIGS)} generators only. "
                                 "Pass a StyleCode or W+ latents instead.")
            self._encoder = Encoder4Editing.load(name, weights=self.weights, random_init=self.random_init,
                                                 seed=self.seed, device=self.device, download=self._download,
                                                 allow_pickle=self._allow_pickle)
            if self._encoder.config.n_styles != self.generator.n_latent:
                raise WeightsError(f"e4e {name} outputs {self._encoder.config.n_styles} W+ entries; the generator "
                                   f"needs {self.generator.n_latent}")
            if self.stages is not None:
                self._encoder = self.stages.wrap_e4e(self._encoder)
        return self._encoder

    @torch.no_grad()
    def encode(self, code_or_image) -> tuple["StyleCode", torch.Tensor | None]:
        """StyleCode | W [B, D] | W+ [B, n_latent, D] | image (path, PIL, uint8 HxWx3 array,
        float [3, H, W] in [0, 1], or a list of those) -> (StyleCode on the device, the e4e input
        images [B, 3, 256, 256] in [-1, 1], or None for codes). Images are inverted with e4e
        (aligned square face crops, as the reference)."""
        from ..models.stylegan2 import StyleCode

        if isinstance(code_or_image, StyleCode):
            if code_or_image.layout != self.generator.layout:
                raise InputError("the StyleCode belongs to another generator (different S-space layout)")
            return code_or_image.to(self.device), None
        g = self.generator
        if isinstance(code_or_image, torch.Tensor) and (
                code_or_image.ndim == 2 or tuple(code_or_image.shape[1:]) == (g.n_latent, g.style_dim)):
            return g.styles_from_w(code_or_image.float().to(self.device)), None  # W or W+ (checked there)
        from ..imageio import as_image_tensor
        from ..models.e4e import preprocess

        items = code_or_image if isinstance(code_or_image, (list, tuple)) else [code_or_image]
        if not items:
            raise InputError("no input given: pass a StyleCode, W/W+ latents or an image")
        imgs = [as_image_tensor(x, what="input image") for x in items]  # validate before loading e4e
        encoder = self._load_encoder()
        size = encoder.config.input_size
        x = torch.cat([preprocess(im[None], size=size) for im in imgs]).to(self.device)
        return self.generator.styles_from_w(encoder(x)), x

    # -- synthesis ----------------------------------------------------------------------------
    @torch.no_grad()
    def synthesize(self, code: "StyleCode") -> torch.Tensor:
        """Batched synthesis in chunks (memory bound at 1024 px). [B, 3, H, W] in ~[-1, 1]."""
        step = default_batch(self.generator)
        outs = [self.generator.synthesize(code[i:i + step]) for i in range(0, code.batch_size, step)]
        return torch.cat(outs)

    @torch.no_grad()
    def _apply(self, code: "StyleCode", delta, strengths: tuple[float, ...]) -> tuple[torch.Tensor, list["StyleCode"], torch.Tensor]:
        """s' = s + strength * delta for each strength; one batched synthesis for all of them.
        ``delta`` is a StyleCode (batch 1 or B) or a conv-view tensor [B or 1, C_conv]."""
        from ..models.stylegan2 import StyleCode

        b = code.batch_size
        edited = [code + k * delta if isinstance(delta, StyleCode) else code.add_conv_delta(delta, k)
                  for k in strengths]
        images = self.synthesize(StyleCode.cat([code] + edited))
        check_images_finite(images, f"{self.method} edit")
        source = images[:b]
        out = images[b:].view(len(strengths), b, *images.shape[1:]).transpose(0, 1)
        return out, edited, source


__all__ = ["IMAGENET_TEMPLATES", "template_embeddings", "text_direction", "relevance", "boundary",
           "auto_beta", "split_delta", "ChannelStats", "compute_channel_stats", "channel_stats_for",
           "stats_cache_path", "check_fs3", "load_fs3", "get_fs", "compute_relevance",
           "clip_features_of_generated", "to_uint8_truncate", "CorpusIndex", "build_corpus_from_folder",
           "build_corpus_from_generator", "StyleEditResult", "as_strengths", "check_beta", "StyleEditor",
           "generator_name", "generator_fingerprint", "relevance_store_path", "default_batch"]
