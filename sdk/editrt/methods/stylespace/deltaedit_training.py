"""Text-free training of a DeltaEdit Delta Mapper for any StyleGAN2 generator and CLIP model.

DeltaEdit (Lyu et al., CVPR 2023, §3.3 "text-free training"; upstream ``generate_codes.py``,
``datasets/train_dataset.py``, ``scripts/train.py``): the mapper never sees text. From pairs of
generated images (i, j):

- condition = [normalize(e_i), normalize(normalize(e_j) - normalize(e_i))] with e the CLIP image
  embedding of the synthesised image (DeltaEdit preprocessing, :func:`deltaedit_clip_input`);
- input S code = s_i (conv styles, no tRGB); target = s_j - s_i;
- loss = MSE(pred, target) + (1 - mean cos(pred, target)); Adam lr 0.5 (EqualLinear lr_mul 0.01
  scales it down inside), batch 64.

At inference the delta of text embeddings replaces the image delta (CLIP's joint space). The
mapper's shape follows the generator's S layout (:func:`mapper_config_for`): the FFHQ 1024
layout gives exactly the reference ``net_face.pth`` shape (6048 channels); smaller generators get
a mapper of their own width.

Deviations, both for cost: codes are sampled once (``samples``, default 200k in the reference;
psi 1, as its ``--truncation 1``) and pairs are drawn from them at random per step, with a fixed
seed per step so a resumed run draws the same pairs; the validation loss is measured on pairs
from a separate sample set (``val_seed``), identical for every training seed.

Pairs (``DeltaTrainConfig.pairs``): "random" as the reference (two independent samples), or
"local": each sample with a neighbour of its own latent (z + ``pair_sigma`` x N(0, I), either
order). A text edit asks for a change of one image along one attribute; independent samples
differ in everything at once (and mostly in what CLIP barely sees: position, size), so the mapper
learns a large "towards another image" component. Local pairs keep the text-free recipe (pairs of
generated images, the same loss and condition) with deltas of the size and kind of an edit.

Files: the output ``.safetensors`` holds the mapper state dict plus JSON metadata (its
:class:`DeltaMapperConfig`, generator, CLIP, losses); ``<output>.partial.safetensors`` holds the
resume state (mapper + Adam moments + step); ``<output>.codes.safetensors`` caches the sampled
codes and embeddings (reused when generator, CLIP and sampling settings match).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ...config import DeltaTrainConfig
from ...errors import InputError, WeightsError
from ...models.delta_mapper import DeltaMapper, DeltaMapperConfig
from .deltaedit import deltaedit_clip_input
from .identity import generator_device, generator_fingerprint, generator_name
from .provenance import load_tensors, save_tensors, utc_now

if TYPE_CHECKING:  # pragma: no cover
    from ...models.clip import ClipNet
    from ...models.stylegan2 import StyleGAN2

log = logging.getLogger(__name__)

COARSE_LAYERS = 3  # conv1_4, conv0_8, conv1_8: the 4 and 8 px styles (upstream split_stylespace)


def mapper_config_for(generator: "StyleGAN2", clip_embed_dim: int) -> DeltaMapperConfig:
    """The Delta Mapper shape for a generator's conv-style layout.

    coarse = the 4 and 8 px styles (3 layers), medium = the 16 and 32 px styles (4 layers), fine =
    the rest, as upstream (the FFHQ 1024 layout gives the ``net_face.pth`` shape). A 32 px generator
    has no finer styles, so there medium is the 16 px block (2 layers). The coarse and medium
    branches share one MLP over their layers, so each keeps only leading layers of equal width;
    the others move to the fine branch. Generators under 16 px have too few layers.
    """
    chans = list(generator.layout.conv_channels)
    if len(chans) < COARSE_LAYERS + 2:
        raise InputError(f"a Delta Mapper needs at least {COARSE_LAYERS + 2} conv style layers (a generator of "
                         f"16 px or more); this one has {len(chans)}")

    def equal_prefix(widths: list[int], limit: int) -> int:
        k = 1
        while k < min(limit, len(widths)) and widths[k] == widths[0]:
            k += 1
        return k

    coarse = equal_prefix(chans, COARSE_LAYERS)
    medium = equal_prefix(chans[coarse:], 4 if len(chans) > COARSE_LAYERS + 4 else 2)
    medium = min(medium, len(chans) - coarse - 1)  # at least one fine layer
    return DeltaMapperConfig.for_layout(chans, clip_embed_dim, coarse_layers=coarse, medium_layers=medium)


@torch.no_grad()
def sample_codes(generator: "StyleGAN2", clip: "ClipNet", n: int, *, seed: int, psi: float = 1.0,
                 batch: int = 64, progress: bool = False, desc: str = "codes",
                 neighbour_sigma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generator samples -> (conv-view S codes [n, C_conv] float32, unit CLIP image embeddings
    [n, D] float32), z = ``RandomState(seed).randn(n, style_dim)`` (upstream generate_codes.py).

    ``neighbour_sigma``: instead, the neighbours z + sigma * e of those samples, e from
    ``RandomState(seed + 1)`` (the partners of ``pairs="local"``).
    """
    from tqdm.auto import tqdm

    dev = generator_device(generator)
    z_all = np.random.RandomState(seed).randn(n, generator.style_dim)
    if neighbour_sigma is not None:
        z_all = z_all + neighbour_sigma * np.random.RandomState(seed + 1).randn(n, generator.style_dim)
    codes, embeds = [], []
    for start in tqdm(range(0, n, batch), desc=desc, unit="batch", disable=not progress, leave=False):
        z = torch.from_numpy(z_all[start:start + batch]).to(dev, torch.float32)
        code = generator.styles_from_w(generator.mapping(z, psi))
        img = generator.synthesize(code)
        e = clip.encode_image(deltaedit_clip_input(img, clip.image_size)).float()
        codes.append(code.conv_view().float().cpu())
        embeds.append(F.normalize(e, dim=-1).cpu())
    return torch.cat(codes), torch.cat(embeds)


def pair_batch(codes: torch.Tensor, embeds: torch.Tensor, idx_i: torch.Tensor, idx_j: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(s_i [B, C], condition [B, 2D], target s_j - s_i [B, C]) for index pairs (train_dataset.py)."""
    e_i, e_j = embeds[idx_i], embeds[idx_j]
    delta = e_j - e_i
    delta = delta / delta.norm(dim=-1, keepdim=True).clamp_min(1e-5)
    return codes[idx_i], torch.cat([e_i, delta], dim=1), codes[idx_j] - codes[idx_i]


def delta_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, mse, 1 - mean cos) of scripts/train.py, each a scalar."""
    mse = F.mse_loss(pred, target)
    cos = 1 - F.cosine_similarity(pred, target, dim=1).mean()
    return mse + cos, mse, cos


def _pairs(n: int, count: int, gen: torch.Generator, mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs. "random": i, j != i in [0, n). "local": the codes are n samples followed by their
    n neighbours (2n rows); each pair is a sample and its neighbour, in a random order."""
    if mode == "local":
        i = torch.randint(n // 2, (count,), generator=gen)
        flip = torch.randint(2, (count,), generator=gen).bool()
        j = i + n // 2
        return torch.where(flip, j, i), torch.where(flip, i, j)
    i = torch.randint(n, (count,), generator=gen)
    j = (i + torch.randint(1, n, (count,), generator=gen)) % n  # j != i
    return i, j


@torch.no_grad()
def validation_loss(mapper: DeltaMapper, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
    s, cond, target = val
    pred = torch.cat([mapper(s[k:k + 512], cond[k:k + 512]) for k in range(0, s.shape[0], 512)])
    total, mse, cos = delta_loss(pred, target)
    base_total, _, _ = delta_loss(torch.zeros_like(target), target)  # the "predict no change" reference
    return {"loss": total.item(), "mse": mse.item(), "cos_distance": cos.item(), "zero_prediction_loss": base_total.item()}


def _provenance(generator: "StyleGAN2", clip: "ClipNet", cfg: DeltaTrainConfig) -> dict[str, Any]:
    return {"generator": generator_name(generator), "generator_fingerprint": generator_fingerprint(generator),
            "clip_model": clip.name, "samples": cfg.samples, "val_samples": cfg.val_samples, "psi": cfg.psi,
            "seed": cfg.seed, "val_seed": cfg.val_seed,
            **({"pairs": "local", "pair_sigma": cfg.pair_sigma} if cfg.pairs == "local" else {})}


def _cached_codes(path: Path, generator, clip, cfg: DeltaTrainConfig, progress: bool):
    want = _provenance(generator, clip, cfg)
    if path.is_file():
        tensors, meta = load_tensors(path, "code cache")
        if meta.get("provenance") == want:
            log.info("reusing sampled codes from %s", path)
            return tensors["codes"], tensors["embeds"], tensors["val_codes"], tensors["val_embeds"]
        log.info("code cache %s is for other settings; resampling", path)
    def sample(n: int, seed: int, desc: str):
        codes, embeds = sample_codes(generator, clip, n, seed=seed, psi=cfg.psi, batch=cfg.sample_batch,
                                     progress=progress, desc=desc)
        if cfg.pairs == "local":  # rows n..2n-1: the neighbours of rows 0..n-1
            nc, ne = sample_codes(generator, clip, n, seed=seed, psi=cfg.psi, batch=cfg.sample_batch,
                                  progress=progress, desc=desc + " (neighbours)", neighbour_sigma=cfg.pair_sigma)
            codes, embeds = torch.cat([codes, nc]), torch.cat([embeds, ne])
        return codes, embeds

    codes, embeds = sample(cfg.samples, cfg.seed, "train codes")
    val_codes, val_embeds = sample(cfg.val_samples, cfg.val_seed, "val codes")
    save_tensors({"codes": codes, "embeds": embeds, "val_codes": val_codes, "val_embeds": val_embeds},
                 {"kind": "deltaedit_codes", "provenance": want}, path)
    return codes, embeds, val_codes, val_embeds


def _optimizer_tensors(opt: torch.optim.Adam, names: list[str]) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in zip(names, opt.param_groups[0]["params"]):
        st = opt.state.get(p)
        if st:
            out[f"adam.{name}.exp_avg"], out[f"adam.{name}.exp_avg_sq"] = st["exp_avg"], st["exp_avg_sq"]
            out[f"adam.{name}.step"] = torch.as_tensor(st["step"], dtype=torch.float64).reshape(1)
    return out


def _restore_optimizer(opt: torch.optim.Adam, names: list[str], tensors: dict[str, torch.Tensor]) -> None:
    for name, p in zip(names, opt.param_groups[0]["params"]):
        if f"adam.{name}.exp_avg" in tensors:
            opt.state[p] = {"step": torch.tensor(float(tensors[f"adam.{name}.step"][0])),
                            "exp_avg": tensors[f"adam.{name}.exp_avg"].clone(),
                            "exp_avg_sq": tensors[f"adam.{name}.exp_avg_sq"].clone()}


def train_delta_mapper(generator: "StyleGAN2", clip: "ClipNet", output: str | Path,
                       config: DeltaTrainConfig | None = None, *, resume: bool = True,
                       progress: bool = True) -> dict[str, Any]:
    """Train a Delta Mapper for ``generator`` + ``clip`` and write it to ``output`` (.safetensors).

    Resumable: with ``resume`` an existing ``<output>.partial.safetensors`` for the same settings
    continues from its step (same pairs, same result as an uninterrupted run). Returns the report
    (also stored in the file's metadata): losses, validation loss, sizes, wall time.
    """
    from tqdm.auto import tqdm

    from ... import weights as W

    cfg = config or DeltaTrainConfig()
    output = Path(output)
    if output.suffix != ".safetensors":
        raise InputError(f"mapper output {output}: use a .safetensors file name")
    if not output.parent.exists():
        raise InputError(f"output folder {output.parent} does not exist")
    partial = output.with_name(output.name[: -len(".safetensors")] + ".partial.safetensors")
    cache = output.with_name(output.name[: -len(".safetensors")] + ".codes.safetensors")
    t0 = time.perf_counter()
    mcfg = mapper_config_for(generator, clip.embed_dim)
    codes, embeds, val_codes, val_embeds = _cached_codes(cache, generator, clip, cfg, progress)
    sample_s = time.perf_counter() - t0
    vgen = torch.Generator().manual_seed(cfg.val_seed)
    val = pair_batch(val_codes, val_embeds, *_pairs(val_codes.shape[0], cfg.val_pairs, vgen, cfg.pairs))

    with W.seeded(cfg.seed):
        mapper = DeltaMapper(mcfg)
    names = [n for n, _ in mapper.named_parameters()]
    opt = torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    settings = {**dataclasses.asdict(cfg), **_provenance(generator, clip, cfg), "mapper_config": dataclasses.asdict(mcfg)}
    start, history = 0, []
    if resume and partial.is_file():
        tensors, meta = load_tensors(partial, "training checkpoint")
        if meta.get("settings") == json.loads(json.dumps(settings)):
            W.load_into(mapper, {k[len("mapper."):]: v for k, v in tensors.items() if k.startswith("mapper.")},
                        what=f"Delta Mapper checkpoint {partial}")
            _restore_optimizer(opt, names, tensors)
            start, history = int(meta["step"]), list(meta.get("history", []))
            log.info("resuming Delta Mapper training from step %d (%s)", start, partial)
        else:
            log.warning("ignoring %s: it was written for other settings", partial)

    def save_partial(step: int) -> None:
        save_tensors({**{f"mapper.{k}": v for k, v in mapper.state_dict().items()}, **_optimizer_tensors(opt, names)},
                     {"kind": "deltaedit_partial", "step": step, "settings": settings, "history": history}, partial)

    mapper.train()
    bar = tqdm(total=cfg.steps, initial=start, desc="delta mapper", unit="step", disable=not progress)
    ema = None
    for step in range(start, cfg.steps):
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # per step: resume draws the same pairs
        s, cond, target = pair_batch(codes, embeds, *_pairs(codes.shape[0], cfg.batch, gen, cfg.pairs))
        loss, mse, cos = delta_loss(mapper(s, cond), target)
        if not torch.isfinite(loss):
            raise WeightsError(f"Delta Mapper training diverged at step {step} (loss {loss.item()}); lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            mapper.eval()
            v = validation_loss(mapper, val)
            mapper.train()
            history.append({"step": step + 1, "train_loss_ema": ema, "val_loss": v["loss"]})
            bar.set_postfix(loss=f"{ema:.4f}", val=f"{v['loss']:.4f}")
            save_partial(step + 1)
    bar.close()
    mapper.eval().requires_grad_(False)
    v = validation_loss(mapper, val)
    report = {"kind": "deltaedit_mapper", "created": utc_now(), "settings": settings, "validation": v,
              "train_loss_ema": ema, "history": history, "parameters": sum(p.numel() for p in mapper.parameters()),
              "sampling_seconds": sample_s, "seconds": time.perf_counter() - t0,
              "steps_per_second": (cfg.steps - start) / max(1e-9, time.perf_counter() - t0 - sample_s)}
    save_mapper(mapper, output, report)
    partial.unlink(missing_ok=True)
    return report


def save_mapper(mapper: DeltaMapper, path: str | Path, report: dict[str, Any] | None = None) -> Path:
    """Write a mapper's state dict with its config (and report) as metadata, atomically."""
    meta = {"kind": "deltaedit_mapper", "mapper_config": dataclasses.asdict(mapper.config), **(report or {})}
    return save_tensors(mapper.state_dict(), meta, Path(path))


def load_trained_mapper(path: str | Path, device: str | torch.device = "cpu") -> tuple[DeltaMapper, dict[str, Any]]:
    """A mapper written by :func:`save_mapper` (any S layout) and its metadata."""
    from ... import weights as W

    tensors, meta = load_tensors(Path(path), "Delta Mapper")
    if meta.get("kind") != "deltaedit_mapper" or "mapper_config" not in meta:
        raise WeightsError(f"{path} is not a Delta Mapper written by `editrt train deltaedit` (no mapper config in "
                           "its metadata); load reference net_face.pth files with load_delta_mapper")
    mapper = DeltaMapper(DeltaMapperConfig(**meta["mapper_config"]))
    W.load_into(mapper, tensors, what=f"Delta Mapper {path}")
    return mapper.eval().requires_grad_(False).to(device), meta


__all__ = ["DeltaTrainConfig", "train_delta_mapper", "mapper_config_for", "sample_codes", "pair_batch",
           "delta_loss", "validation_loss", "save_mapper", "load_trained_mapper"]
