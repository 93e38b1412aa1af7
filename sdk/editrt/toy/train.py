"""Training of the toy world's three networks, each a few minutes on a CPU.

- :func:`train_vqgan`: the tiny taming autoencoder, L1 + MSE reconstruction weighted towards
  saturated (object) pixels. FlexIT uses the
  continuous pre-quantisation latent, so no codebook or GAN loss is needed; the decoder also
  learns from slightly perturbed latents, because FlexIT walks the latent off the encoder's
  outputs.
- :func:`train_clip`: the tiny open_clip CLIP, contrastive on captions. Several images of a batch
  share a class, so the targets are class-aware (every caption of the image's class is a
  positive). Images get FlexIT's own augmentations (rotation, crop, flip) plus a little noise.
- :func:`train_classifier`: the independent judge, cross-entropy.

Every function is seeded (data and init) and shows a tqdm progress bar.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..files import atomic_path
from . import world

log = logging.getLogger(__name__)


def _cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int) -> None:
    lr = base * (step + 1) / warmup if step < warmup else \
        base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr


def _bar(total: int, desc: str, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=not progress, leave=True)


def _augment(x: torch.Tensor, gen: torch.Generator, *, scale=(0.7, 1.0), noise: float = 0.02) -> torch.Tensor:
    """FlexIT-like random views (rotation 10 deg, resized crop, flip) plus Gaussian noise."""
    from ..methods.augment import batched_views

    v = batched_views(x, 1, x.shape[-1], degrees=10.0, scale=scale, ratio=(0.9, 1.1), hflip=True, generator=gen)
    sigma = noise * torch.rand(v.shape[0], 1, 1, 1, generator=gen)
    return (v + sigma * torch.randn(v.shape, generator=gen)).clamp(0, 1)


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor, ema: float | None, bar) -> float:
    """One optimiser step; returns the loss EMA shown on the progress bar."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
    bar.update(1)
    bar.set_postfix(loss=f"{ema:.4f}")
    return ema


def held_out(n_per_class: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out images (the stats stream, indices past those the protocol uses) and labels."""
    labels = torch.arange(len(world.CLASSES)).repeat_interleave(n_per_class)
    idx = [10_000 + i for _ in world.CLASSES for i in range(n_per_class)]
    return world.make_images(labels.tolist(), world.STREAM_STATS, idx), labels


def _random_crops(x: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    if size >= x.shape[-1]:
        return x
    offs = rng.integers(0, x.shape[-1] - size + 1, size=(x.shape[0], 2))
    return torch.stack([im[:, i:i + size, j:j + size] for im, (i, j) in zip(x, offs)])


def train_vqgan(steps: int = 800, batch: int = 16, lr: float = 2e-3, seed: int = 0, progress: bool = True,
                crop: int = 32, full_size_fraction: float = 0.25,
                callback: Callable[[int, float], None] | None = None):
    """Returns (VQGAN ``tiny`` in eval mode, report dict).

    The autoencoder is fully convolutional (its attention is global), so most steps train on
    random ``crop`` px crops, 4x cheaper than 64 px; the last ``full_size_fraction`` of the steps
    use whole images.
    """
    from ..models.vqgan import VQGAN, VQGAN_CONFIGS
    from .. import weights as W

    with W.seeded(seed):
        model = VQGAN(VQGAN_CONFIGS["tiny"])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.99))
    rng = np.random.default_rng([seed, world.STREAM_TRAIN, 1])
    gen = torch.Generator().manual_seed(seed)
    t0, bar, ema = time.perf_counter(), _bar(steps, "vqgan", progress), None
    for step in range(steps):
        _cosine_lr(opt, lr, step, steps, warmup=max(1, steps // 20))
        x, _ = world.random_batch(rng, batch)
        if step < steps * (1 - full_size_fraction):
            x = _random_crops(x, crop, rng)
        z = model.encode(x)
        # half of the batch decodes a perturbed latent: keeps the decoder sane where FlexIT walks
        noise = torch.randn(z.shape, generator=gen) * z.detach().std() * 0.15
        noise[: batch // 2] = 0
        y = model.decode(z + noise)
        # objects are small and the background is grey: weight pixels by their saturation so the
        # object's colour, the thing edits change, is learnt first rather than last
        weight = 1.0 + 8.0 * (x.amax(1, keepdim=True) - x.amin(1, keepdim=True))
        err = y - x
        loss = (weight * (err.abs() + err.pow(2))).mean() / weight.mean()
        ema = _update(opt, loss, ema, bar)
        if callback:
            callback(step, loss.item())
    bar.close()
    model.eval().requires_grad_(False)
    x, _ = held_out(4)
    with torch.no_grad():
        rec = model.decode_clamped(model.encode(x)).clamp(0, 1)
    l1 = (rec - x).abs().mean().item()
    return model, {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "crop": crop,
                   "full_size_fraction": full_size_fraction, "train_loss_ema": ema, "heldout_l1": l1, "heldout_psnr": float(-10 * math.log10(F.mse_loss(rec, x).item())),
                   "seconds": time.perf_counter() - t0}


def _tokenizer():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=77)


def clip_zero_shot(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of "a photo of a {class}" zero-shot classification, images [N,3,64,64] in [0,1]."""
    from ..models.clip import OPENAI_MEAN, OPENAI_STD

    tok = _tokenizer()
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        t = F.normalize(model.encode_text(tok([f"a photo of a {c}" for c in world.CLASSES])), dim=-1)
        i = F.normalize(model.encode_image((images - mean) / std), dim=-1)
    return ((i @ t.T).argmax(1) == labels).float().mean().item()


def train_clip(steps: int = 500, batch: int = 96, lr: float = 1e-3, seed: int = 0, progress: bool = True,
               vqgan=None, decoded_fraction: float = 0.5, latent_noise: float = 0.3, noise: float = 0.1):
    """Returns (open_clip CLIP ``tiny`` module in eval mode, report dict).

    With a trained ``vqgan``, ``decoded_fraction`` of each batch is shown as the decoder renders
    it from a perturbed latent (``latent_noise`` x the latent's std), with its true caption. FlexIT
    searches exactly that decoder manifold, and a CLIP that never saw its artefacts is easily
    fooled by them (the edit raises CLIP's score without changing the object).
    """
    from ..models.clip import OPENAI_MEAN, OPENAI_STD, build_clip
    from .. import weights as W

    with W.seeded(seed):
        model = build_clip("tiny")
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.98))
    tok, cache = _tokenizer(), {}
    mean, std = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    rng = np.random.default_rng([seed, world.STREAM_TRAIN, 2])
    gen = torch.Generator().manual_seed(seed + 1)
    t0, bar, ema = time.perf_counter(), _bar(steps, "clip", progress), None
    for step in range(steps):
        _cosine_lr(opt, lr, step, steps, warmup=max(1, steps // 10))
        x, labels = world.random_batch(rng, batch)
        if vqgan is not None and decoded_fraction > 0:
            k = int(batch * decoded_fraction)
            with torch.no_grad():
                z = vqgan.encode(x[:k])
                z = z + latent_noise * z.std() * torch.rand(k, 1, 1, 1, generator=gen) * torch.randn(z.shape, generator=gen)
                x = torch.cat([vqgan.decode_clamped(z).clamp(0, 1), x[k:]])
        caps = [world.caption(int(c), rng) for c in labels]
        for c in caps:
            if c not in cache:
                cache[c] = tok([c])[0]
        tokens = torch.stack([cache[c] for c in caps])
        img = F.normalize(model.encode_image((_augment(x, gen, noise=noise) - mean) / std), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        same = (labels[:, None] == labels[None, :]).float()
        target = same / same.sum(1, keepdim=True)  # symmetric: the same matrix for both directions
        loss = 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.T.log_softmax(1), 1).mean())
        ema = _update(opt, loss, ema, bar)
    bar.close()
    model.eval().requires_grad_(False)
    x, labels = held_out(8)
    return model, {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "train_loss_ema": ema,
                   "decoded_fraction": decoded_fraction if vqgan is not None else 0.0,
                   "latent_noise": latent_noise, "noise": noise,
                   "heldout_zero_shot_accuracy": clip_zero_shot(model, x, labels),
                   "seconds": time.perf_counter() - t0}


def train_classifier(steps: int = 400, batch: int = 64, lr: float = 2e-3, seed: int = 0, progress: bool = True):
    """Returns (ToyClassifier in eval mode, report dict)."""
    from .. import weights as W
    from .classifier import ToyClassifier

    with W.seeded(seed + 2):
        model = ToyClassifier()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    rng = np.random.default_rng([seed, world.STREAM_TRAIN, 3])
    gen = torch.Generator().manual_seed(seed + 3)
    t0, bar, ema = time.perf_counter(), _bar(steps, "classifier", progress), None
    for step in range(steps):
        _cosine_lr(opt, lr, step, steps, warmup=max(1, steps // 20))
        x, labels = world.random_batch(rng, batch)
        loss = F.cross_entropy(model(_augment(x, gen, scale=(0.8, 1.0), noise=0.04)), labels)
        ema = _update(opt, loss, ema, bar)
    bar.close()
    model.eval().requires_grad_(False)
    x, labels = held_out(8)
    with torch.no_grad():
        acc = (model(x).argmax(1) == labels).float().mean().item()
    return model, {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "train_loss_ema": ema,
                   "heldout_accuracy": acc, "seconds": time.perf_counter() - t0}


def save_safetensors(state: dict[str, torch.Tensor], path, *, half: bool = False) -> None:
    """Atomic safetensors write; ``half`` stores float tensors as fp16 (loaders upcast)."""
    from pathlib import Path

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous().cpu()
               for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp)


__all__ = ["train_vqgan", "train_clip", "train_classifier", "clip_zero_shot", "held_out", "save_safetensors"]
