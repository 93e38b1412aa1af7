"""The toy world's StyleGAN2: editrt's own generator (config ``toy``, 32 px) trained on toy images.

Objective: a variational autoencoder whose *decoder is the whole StyleGAN2 generator*
(``z -> mapping -> w -> affine styles -> synthesis``) and whose encoder is a small CNN that
predicts the posterior ``q(z | x) = N(mu, sigma^2)``. Loss = saturation-weighted L1 + MSE
reconstruction (as the toy VQGAN's, so the object's colour is learnt first) + ``kl_weight`` x
KL(q || N(0, I)), the KL weight warmed up linearly (Kingma & Welling 2014; beta-VAE, Higgins et
al. 2017). Why not the StyleGAN2 adversarial objective (Karras et al. 2020, §2): a GAN at 32 px
needs far more generator steps than one CPU thread gives in the 25-minute budget, and a
half-converged GAN's S-space is not usable. The VAE trains the same synthesis network, mapping
network and affine layers, so S-space, ``style_statistics``, the relevance matrix and the three
direction methods apply unchanged; sampling is the generator's own ``z ~ N(0, I)``.

Inversion comes with it: :class:`ToyStyleEncoder` maps a toy image to the posterior mean ``mu``,
and ``G.mapping(mu)`` is its W code (an encoder into W, like e4e's first stage; no W+ offsets).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import world

log = logging.getLogger(__name__)

GENERATOR_NAME = "toy"  # editrt.models.stylegan2.STYLEGAN2_CONFIGS entry
IMAGE_SIZE = 32


class ToyStyleEncoder(nn.Module):
    """[B, 3, 32, 32] in [0, 1] -> (mu [B, D], logvar [B, D]) of the generator's z (D = style_dim)."""

    def __init__(self, style_dim: int = 64, width: int = 32):
        super().__init__()

        def down(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout), nn.SiLU()]

        self.trunk = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(), *down(width, 2 * width),
                                   *down(2 * width, 2 * width), *down(2 * width, 4 * width))  # 32 -> 4 px
        self.head = nn.Linear(4 * width * 16, 2 * style_dim)
        self.style_dim = style_dim

    def forward(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x01.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x01 = F.interpolate(x01, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True,
                                align_corners=False)
        h = self.head(self.trunk(x01 * 2 - 1).flatten(1))
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-12, 6)

    @torch.no_grad()
    def invert(self, generator, x01: torch.Tensor) -> torch.Tensor:
        """Toy images [B, 3, H, W] in [0, 1] -> W codes [B, D] (posterior mean through the mapping)."""
        return generator.mapping(self(x01)[0])


def saturation_weighted_error(y01: torch.Tensor, x01: torch.Tensor) -> torch.Tensor:
    """Mean of (|e| + e^2), pixels weighted by 1 + 8 x saturation of the target (objects weigh more)."""
    weight = 1.0 + 8.0 * (x01.amax(1, keepdim=True) - x01.amin(1, keepdim=True))
    err = y01 - x01
    return (weight * (err.abs() + err.pow(2))).mean() / weight.mean()


def decode(generator, z: torch.Tensor) -> torch.Tensor:
    """z [B, D] -> image [B, 3, 32, 32] in [0, 1] (not clamped), constant noise as at inference."""
    return (generator.synthesize(generator.styles_from_w(generator.mapping(z))) + 1) / 2


def heldout_images(n_per_class: int = 4, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(len(world.CLASSES)).repeat_interleave(n_per_class)
    idx = [20_000 + i for _ in world.CLASSES for i in range(n_per_class)]
    return world.make_images(labels.tolist(), world.STREAM_STATS, idx, size), labels


def train_toy_stylegan2(steps: int = 3200, batch: int = 32, lr: float = 2e-3, kl_weight: float = 1e-3,
                        seed: int = 0, progress: bool = True, checkpoint=None, checkpoint_every: int = 500,
                        stop_at: int | None = None):
    """Returns (StyleGAN2 ``toy`` in eval mode, ToyStyleEncoder in eval mode, report dict).

    ``checkpoint``: optional path; the generator + encoder state is written there (atomically) every
    ``checkpoint_every`` steps, so a long run can be inspected while it trains. ``stop_at``: end
    after that many steps of the ``steps``-long schedule (the same weights as that run's checkpoint).
    """
    from ..models.stylegan2 import StyleGAN2
    from .. import weights as W
    from .train import _bar, _cosine_lr, _update, save_safetensors

    with W.seeded(seed):
        G = StyleGAN2(GENERATOR_NAME)
        E = ToyStyleEncoder(G.style_dim)
    G.train()
    E.train()
    opt = torch.optim.Adam(list(G.parameters()) + list(E.parameters()), lr=lr, betas=(0.9, 0.99))
    rng = np.random.default_rng([seed, world.STREAM_TRAIN, 4])
    gen = torch.Generator().manual_seed(seed + 4)
    warm = max(1, steps // 5)
    run = steps if stop_at is None else min(steps, int(stop_at))
    t0, cpu0, bar, ema = time.perf_counter(), time.process_time(), _bar(run, "toy stylegan2", progress), None
    for step in range(run):
        _cosine_lr(opt, lr, step, steps, warmup=max(1, steps // 40))
        x, _ = world.random_batch(rng, batch, size=IMAGE_SIZE)
        mu, logvar = E(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        rec = saturation_weighted_error(decode(G, z), x)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = rec + kl_weight * min(1.0, (step + 1) / warm) * kl
        ema = _update(opt, loss, ema, bar)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{ema:.4f}", rec=f"{rec.item():.4f}", kl=f"{kl.item():.1f}")
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            save_safetensors({**{f"generator.{k}": v for k, v in G.state_dict().items()},
                              **{f"encoder.{k}": v for k, v in E.state_dict().items()}}, checkpoint)
            log.info("step %d: loss %.4f rec %.4f kl %.2f", step + 1, loss.item(), rec.item(), kl.item())
    bar.close()
    report = {"objective": "vae (generator = decoder)", "steps": steps, "steps_run": run, "batch": batch, "lr": lr,
              "kl_weight": kl_weight, "seed": seed, "train_loss_ema": ema, "seconds": time.perf_counter() - t0,
              "cpu_seconds": time.process_time() - cpu0}
    return finish(G, E, report, seed=seed)


def finish(G, E, report: dict, *, seed: int = 0):
    """Eval mode, ``latent_avg``, held-out reconstruction scores: (G, E, report)."""
    G.eval().requires_grad_(False)
    E.eval().requires_grad_(False)
    G._set_latent_avg(None, seed=seed)
    x, _ = heldout_images()
    with torch.no_grad():
        mu, logvar = E(x)
        y = decode(G, mu).clamp(0, 1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean().item()
    return G, E, {**report, "heldout_reconstruction_l1": (y - x).abs().mean().item(),
                  "heldout_reconstruction_psnr": float(-10 * math.log10(F.mse_loss(y, x).item())),
                  "heldout_kl_nats": kl}


@torch.no_grad()
def sample_recognition(generator, classifier, n: int = 512, *, seed: int = 0, psi: float = 1.0,
                       threshold: float = 0.9, batch: int = 128) -> dict:
    """Share of generator samples the toy classifier labels with confidence >= ``threshold``.

    Returns {"n", "psi", "share_confident", "classes_covered" (distinct confident classes),
    "per_class" (confident count per class name)}.
    """
    gen = torch.Generator().manual_seed(seed)
    probs = []
    for start in range(0, n, batch):
        z = torch.randn(min(batch, n - start), generator.style_dim, generator=gen)
        img = (generator.synthesize(generator.styles_from_w(generator.mapping(z, psi))) + 1) / 2
        probs.append(classifier(img.clamp(0, 1)).softmax(-1))
    p = torch.cat(probs)
    conf, cls = p.max(1)
    ok = conf >= threshold
    per_class = {world.CLASSES[c]: int(((cls == c) & ok).sum()) for c in range(len(world.CLASSES))}
    return {"n": n, "psi": psi, "threshold": threshold, "share_confident": ok.float().mean().item(),
            "classes_covered": sum(v > 0 for v in per_class.values()), "per_class": per_class}


__all__ = ["ToyStyleEncoder", "train_toy_stylegan2", "finish", "sample_recognition", "decode", "heldout_images",
           "saturation_weighted_error", "GENERATOR_NAME", "IMAGE_SIZE"]
