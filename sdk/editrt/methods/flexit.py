"""FlexIT: edit an image by optimising its VQGAN latent towards a CLIP target point.

Algorithm as the reference code runs it (FlexIT src/flexit_editer.py, ``FlexitEditer.__call__`` and ``step``), per image b of a batch:

    P_n   = target_coef*E_T + image_coef*E_I0 - source_coef*E_S     (per CLIP net n, not renormalised)
    clip  = -mean_n( mean_k normalise(E_n(aug_k(x))) . P_n )          (x = soft_clamp(decode(z)))
    lpips = LPIPS(x, I0) at image size
    lat   = ||z - z0||_{2,1} / ||z0||_{2,1}
    loss  = clip + lpips_weight*lpips + latent_weight*lat
    z    <- z - lr * ||z0||_F * g / ||g||_2                          (plain SGD, global grad norm)

Deliberate deviations, each documented in FlexITConfig:
- the l2,1 term has a zero-safe gradient at z = z0 instead of the reference's 1e-6 noise
  (``reference_noise=True`` restores the noise, added to z - z0 as the reference does, seeded);
- ``steps`` counts updates: the output is the decode after ``steps`` updates (the reference
  runs ``max_iter + 1`` forward passes and keeps the decode *before* the last update, the same
  image, so no work is wasted here);
- frozen network weights, the input's CLIP/LPIPS features computed once, and all views of a
  net in one batch (``gpu_augment`` additionally fuses them into one affine warp);
- the eval-mode BatchNorms of the CLIP ResNet towers folded into their convs
  (``ClipNet.fold_batchnorm``; nets FlexIT loads itself, not ``exact_reference``).
A batch of images is optimised jointly but independently: every loss and gradient norm is per
image, so a batch gives the same result as separate calls (up to the random views drawn).

``exact_reference=True`` is the mode for exact comparisons: one image, the noise and views drawn
from torch's global RNG in FlexitEditer.step's order, torchvision's transforms, the lpips
package's forward, and the reference's reductions (``x / x.norm()``, ``pred @ tgt``, python
``sum / len`` over nets, ``g / g.norm()``, ``z - lr * g * ||z0||``), so the trajectory equals the
reference's bit for bit on CPU (tests/test_flexit_exact.py, scripts/make_goldens_flexit.py).
``n_augment=0`` is the reference's ``ncuts=0``: each net sees its deterministic resize + crop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from .. import imageio
from ..config import FlexITConfig
from ..errors import InputError, NumericalError
from ..engines.stages import EngineSet
from ..models.clip import ClipEnsemble, ClipImageTower, ClipTextTower, load_ensemble
from ..models.lpips import PerceptualDistance, load_lpips
from ..models.preprocess import resize_center_crop
from ..models.vqgan import VQGAN, VQGANDecoder, VQGANEncoder, load_vqgan
from . import augment

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Targets:
    """Everything a step needs that does not change during the edit (computed once)."""

    image0: torch.Tensor  # [B, 3, S, S] input in [0, 1]
    z0: torch.Tensor  # [B, C, h, w] initial latent
    z0_l21: torch.Tensor  # [B] ||z0||_{2,1}
    z0_norm: torch.Tensor  # [B] ||z0||_F (step length unit)
    points: list[torch.Tensor]  # per net [B, D] target point P
    text_source: list[torch.Tensor]  # per net [B, D] normalised E_S
    text_target: list[torch.Tensor]  # per net [B, D] normalised E_T
    lpips_target: list[torch.Tensor]  # normalised LPIPS features of image0


@dataclasses.dataclass
class FlexITState:
    """The optimisation state. ``step`` returns a new state; the metrics describe ``z`` of the
    *input* state (losses at z, the image decoded from z), ``z`` is the updated latent."""

    targets: Targets
    z: torch.Tensor  # [B, C, h, w] current latent (detached)
    step: int = 0  # number of updates applied to z
    generator: torch.Generator | None = None
    image: torch.Tensor | None = None  # decode of the latent the metrics refer to
    grad: torch.Tensor | None = None  # normalised gradient used for the update
    metrics: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)  # name -> [B]


@dataclasses.dataclass
class EditResult:
    """Output of :meth:`FlexIT.edit`; agrees with the direction edits' ``StyleEditResult``:
    ``.image`` is the first output as a PIL image, ``.images01`` the outputs as float32 in [0, 1],
    ``.pil()`` the PIL images.

    ``images``: [B, 3, S, S] in [0, 1] after ``steps`` updates; ``history``: one dict per step
    with per-image lists (loss, clip, lpips, latent, sim_source, sim_target); ``snapshots``:
    step -> [B, 3, S, S]; ``step_seconds``: wall time per step.
    """

    images: torch.Tensor
    history: list[dict[str, list[float]]]
    snapshots: dict[int, torch.Tensor]
    config: FlexITConfig
    step_seconds: list[float]
    sources: list[str]
    targets: list[str]

    @property
    def images01(self) -> torch.Tensor:
        """[B, 3, S, S] float32 in [0, 1] (the same tensor as ``images``)."""
        return self.images.float()

    @property
    def image(self) -> Image.Image:
        """The first output as a PIL image (truncating uint8 conversion, as the reference)."""
        return imageio.tensor_to_pil(self.images[0])

    def pil(self) -> list[Image.Image]:
        return [imageio.tensor_to_pil(x) for x in self.images]

    def save(self, path: str | Path, index: int = 0) -> Path:
        return imageio.save_image(self.images[index], path)

    def report(self) -> dict[str, Any]:
        """JSON-serialisable summary: config, first/last losses, time per step."""
        first, last = (self.history[0], self.history[-1]) if self.history else ({}, {})
        times = self.step_seconds
        return {
            "method": "flexit", "steps": len(self.history), "config": self.config.to_dict(),
            "sources": self.sources, "targets": self.targets,
            "first": first, "last": last,
            "seconds_per_step_median": sorted(times)[len(times) // 2] if times else None,
            "seconds_total": sum(times),
        }


class FlexIT:
    """FlexIT editor.

    Args:
        config: a :class:`FlexITConfig` (default: the paper's settings).
        device: torch device for every network and the latent.
        weights: a folder laid out like the ``EDITRT_HOME`` store, or a mapping from checkpoint
            key (``"clip/ViT-B-32"``, ``"vqgan/vqgan_imagenet_f16_1024"``, ``"lpips/vgg"``) to file.
        random_init: seeded random weights for every network (smoke tests; no meaningful edit).
        download: allow downloading missing checkpoints from their public source.
        allow_pickle: allow checkpoints that need full unpickling (trusted files only).
        models: networks handed in as objects (``{"clip": ClipEnsemble, "vqgan": VQGAN, "lpips": ...}``).
        backend: "torch", "onnxruntime", "tensorrt", or an :class:`~editrt.engines.EngineSet`:
            where the forward-only stages run (VQGAN encoder, CLIP text and image towers, final
            decode). The optimisation loop needs gradients and stays in torch (``config.autocast``).
            "auto" is torch here: those stages are a few percent of an edit.
        precision: "fp32" | "fp16" | "bf16" for those stages (artifacts of that precision, built on
            first use; torch: autocast). Default fp32, or the EngineSet's.
    """

    config_class = FlexITConfig

    # Backpropagate each loss term to the decoded image as soon as it is computed (see
    # _losses_and_grad): same gradient, lower peak memory. False: one backward of the whole
    # loss (the benchmarks' "before"; always so when compiled or with exact_reference).
    per_network_backward: bool = True

    def __init__(self, config: FlexITConfig | None = None, *, device: str | torch.device = "cpu",
                 weights=None, random_init: bool = False, seed: int = 0, download: bool = False,
                 allow_pickle: bool = False, models: Mapping[str, Any] | None = None,
                 backend: "str | EngineSet" = "torch", precision: str | None = None):
        self.config = config or FlexITConfig()
        self.device = torch.device(device)
        self.engines = EngineSet.of(backend, precision=precision, device=self.device)  # "auto": torch
        if self.config.exact_reference and self.engines.backend != "torch":
            raise InputError(f"exact_reference reproduces the reference's torch loop: use backend='torch', "
                             f"not {self.engines.backend!r}")
        kw = dict(weights=weights, random_init=random_init, seed=seed, device=self.device, download=download)
        models = dict(models or {})
        self.clip: ClipEnsemble = models.get("clip") or load_ensemble(self.config.clip_models, allow_pickle=allow_pickle, **kw)
        self.vqgan: VQGAN = models.get("vqgan") or load_vqgan(self.config.vqgan, allow_pickle=allow_pickle, **kw)
        self.lpips: PerceptualDistance = models.get("lpips") or load_lpips(self.config.lpips_net, **kw)
        for m in (self.clip, self.vqgan, self.lpips):
            m.eval().requires_grad_(False).to(self.device)
        if models.get("clip") is None and not self.config.exact_reference:
            for net in self.clip:  # loaded here, so never saved: ResNet BatchNorms folded into their convs
                net.fold_batchnorm()
        self._setup_speed()
        for key, nets in (("clip", list(self.clip)), ("vqgan", [self.vqgan])):
            if models.get(key) is None:  # loaded here: artifacts keyed by its files / seed, not hashed
                for net in nets:
                    self.engines.register(net, weights=weights, random_init=random_init, seed=seed)
        # the forward-only stages, run by name through the engine seam
        self.vq_encoder, self.vq_decoder = VQGANEncoder(self.vqgan), VQGANDecoder(self.vqgan)
        self.text_towers = [ClipTextTower(net) for net in self.clip]
        self.image_towers = [ClipImageTower(net) for net in self.clip]

    @property
    def backend(self) -> str:
        return self.engines.backend

    @classmethod
    def specs(cls, config: FlexITConfig | None = None) -> list[str]:
        """The engine specs an edit runs: VQGAN encoder and decoder, each CLIP net's towers."""
        from ..models.clip import canonical_name

        cfg = config or FlexITConfig()
        names = [f"vqgan/{cfg.vqgan}/encoder", f"vqgan/{cfg.vqgan}/decoder"]
        for n in cfg.clip_models:
            names += [f"clip/{canonical_name(n)}/text", f"clip/{canonical_name(n)}/image"]
        return names

    # -- speed switches --------------------------------------------------------------------------
    def _setup_speed(self) -> None:
        cfg, cuda = self.config, self.device.type == "cuda"
        amp = resolve_autocast(cfg, self.device)
        self._amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        # CLIP towers kept in fp32 under autocast: on CPU the ViTs (see cpu_keeps_fp32)
        self._fp32_towers = {id(net) for net in self.clip if self._amp_dtype is not None
                             and not cuda and cpu_keeps_fp32(net)}
        if cfg.channels_last == "on" or (cfg.channels_last == "auto" and
                                         (cuda or (self._amp_dtype is not None and cpu_has_native_bf16()))):
            for m in (self.clip, self.vqgan, self.lpips):
                m.to(memory_format=torch.channels_last)
        self._loss_fn = self._losses
        if cfg.compile != "off":
            mode = "reduce-overhead" if cfg.compile == "cuda_graph" else "default"
            self._loss_fn = torch.compile(self._losses, mode=mode, dynamic=False)

    def _autocast(self):
        if self._amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._amp_dtype)

    def _view_embeddings(self, net, image: torch.Tensor, view_input) -> torch.Tensor:
        """One CLIP tower's unnormalised float embeddings of its views of ``image``: under the
        method's autocast, or in fp32 with autocast off for a tower kept in fp32."""
        if id(net) in self._fp32_towers:
            with torch.autocast(self.device.type, enabled=False):
                return net.encode_image(net.normalize(self._views(net, image.float(), view_input))).float()
        with self._autocast():
            return net.encode_image(net.normalize(self._views(net, image, view_input))).float()

    # -- preparation -----------------------------------------------------------------------------
    def load_images(self, images) -> torch.Tensor:
        """Inputs -> [B, 3, S, S] in [0, 1]: Resize(S) + CenterCrop(S) as the reference."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        if not isinstance(images, (list, tuple)):
            images = [images]
        if not images:
            raise InputError("no image given")
        s = self.config.image_size
        out = []
        for k, img in enumerate(images):
            x = imageio.as_image_tensor(img, what=f"image {k}")
            x = resize_center_crop(x, s).clamp(0, 1)
            out.append(x)
        return torch.stack(out).to(self.device)

    @torch.no_grad()
    def prepare(self, images, source: str | Sequence[str], target: str | Sequence[str], *,
                seed: int | None = 0) -> FlexITState:
        """Encode the inputs and texts once; return the state at step 0 (z = z0).

        ``seed`` seeds the noise and views; with ``exact_reference`` it seeds torch's global RNG
        (``None``: keep its current state)."""
        cfg = self.config
        image0 = self.load_images(images)
        b = image0.shape[0]
        if cfg.exact_reference and b != 1:
            raise InputError(f"exact_reference reproduces the reference's one-image loop; got {b} images: "
                             "edit them one at a time")
        sources = _broadcast_texts(source, b, "source")
        targets = _broadcast_texts(target, b, "target")
        z0 = self.engines.run(self.vq_encoder, image0).float()
        _check_finite(z0, "the input's VQGAN latent")
        # one text batch [sources, targets], as the reference's encode_text([txt1, txt2]): a
        # different batch size can round the embeddings differently
        e_st = self.embed_text(sources + targets)
        e_s, e_t = [e[:b] for e in e_st], [e[b:] for e in e_st]
        e_i = self.embed_image(image0)
        points = [cfg.target_coef * t + cfg.image_coef * i - cfg.source_coef * s for s, t, i in zip(e_s, e_t, e_i)]
        from .. import ops

        tg = Targets(
            image0=image0, z0=z0,
            z0_l21=ops.l21_norm(z0, torch.zeros_like(z0)).float(),
            z0_norm=z0.flatten(1).norm(dim=1),
            points=points, text_source=e_s, text_target=e_t,
            lpips_target=self.lpips.prepare_target(image0))
        if cfg.exact_reference:
            if seed is not None:
                torch.manual_seed(seed)
            return FlexITState(targets=tg, z=z0.clone(), step=0, generator=None)
        gen = torch.Generator().manual_seed(0 if seed is None else seed)
        return FlexITState(targets=tg, z=z0.clone(), step=0, generator=gen)

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> list[torch.Tensor]:
        """Per CLIP net: normalised text embeddings [N, D] fp32 (no prompt template, as FlexIT)."""
        return [F.normalize(self.engines.run(tower, tower.net.tokenize(texts).to(self.device)).float(), dim=-1)
                for tower in self.text_towers]

    @torch.no_grad()
    def embed_image(self, image01: torch.Tensor) -> list[torch.Tensor]:
        """Per CLIP net: normalised embeddings [B, D] fp32 of [0, 1] images (resize/crop/normalise
        in torch, the tower in its engine)."""
        return [F.normalize(self.engines.run(tower, tower.net.preprocess(image01)).float(), dim=-1)
                for tower in self.image_towers]

    # -- one step --------------------------------------------------------------------------------
    def _view_inputs(self, batch: int, gen: torch.Generator) -> list:
        """Per CLIP net: warp matrices for the batched path (sampled here, outside any compiled
        region), a seed for the seeded torchvision path, or None where the views are deterministic
        (n_augment=0) or drawn from the global RNG as they are applied (exact_reference)."""
        cfg, s = self.config, self.config.image_size
        if cfg.n_augment == 0 or cfg.exact_reference:  # deterministic views / drawn while applied
            return [None for _ in self.clip]
        if cfg.gpu_augment:
            return [augment.sample_thetas(batch, cfg.n_augment, s, s, degrees=cfg.rotation_degrees,
                                          scale=cfg.crop_scale, ratio=cfg.crop_ratio, hflip=cfg.hflip,
                                          generator=gen).to(self.device) for _ in self.clip]
        return [int(torch.randint(0, 2**62, (1,), generator=gen)) for _ in self.clip]

    def _views(self, net, image: torch.Tensor, view_input) -> torch.Tensor:
        """[B, 3, S, S] decode -> [B * max(n_augment, 1), 3, s, s] views at the net's size (not
        normalised)."""
        cfg, size = self.config, net.image_size
        if cfg.n_augment == 0:  # the reference's ncuts=0: test_prep without Normalize
            return resize_center_crop(image, size)
        if cfg.exact_reference:
            return augment.global_rng_views(image, cfg.n_augment, size, degrees=cfg.rotation_degrees,
                                            scale=cfg.crop_scale, ratio=cfg.crop_ratio, hflip=cfg.hflip)
        if cfg.gpu_augment:
            return augment.warp(image, view_input, size)
        return augment.reference_views(image, cfg.n_augment, size, degrees=cfg.rotation_degrees,
                                       scale=cfg.crop_scale, ratio=cfg.crop_ratio, hflip=cfg.hflip,
                                       generator=torch.Generator().manual_seed(view_input))

    def _losses(self, z: torch.Tensor, tg: Targets, view_inputs: list,
                noise: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        from .. import ops

        cfg = self.config
        b, exact = z.shape[0], cfg.exact_reference
        if noise is None:
            latent = ops.l21_norm(z, tg.z0).float() / tg.z0_l21
        else:  # the reference's 'l1l2' form (flexit_editer.py step): noise added to the difference
            latent = _l1l2(z - tg.z0 + noise) / _l1l2(tg.z0)
        with self._autocast():
            image = self.vqgan.decode_clamped(z)
            if exact:  # the lpips package's forward on both images, as the reference's LPIPS wrapper
                lp = self.lpips.lp(image, tg.image0, normalize=True).view(b).float()
            else:
                lp = self.lpips.distance(image, tg.lpips_target).float()
            clip_terms, sim_s, sim_t = [], [], []
            dot = _dot_rows if exact else _mul_sum_rows
            for net, point, es, et, vin in zip(self.clip, tg.points, tg.text_source, tg.text_target,
                                               view_inputs):
                emb = self._view_embeddings(net, image, vin)
                # mean of normalised views, not renormalised
                emb = emb / emb.norm(dim=-1, keepdim=True) if exact else F.normalize(emb, dim=-1)
                pred = emb.view(b, max(cfg.n_augment, 1), -1).mean(1)
                clip_terms.append(dot(pred, point))
                sim_s.append(dot(pred, es))
                sim_t.append(dot(pred, et))
        if exact:  # TensorDict.reduce(mean): python sum(x) / len(x) over the nets
            clip = -(sum(clip_terms) / len(clip_terms))
            sim_source, sim_target = sum(sim_s) / len(sim_s), sum(sim_t) / len(sim_t)
        else:
            clip = -torch.stack(clip_terms).mean(0)
            sim_source, sim_target = torch.stack(sim_s).mean(0), torch.stack(sim_t).mean(0)
        loss = clip + cfg.lpips_weight * lp + cfg.latent_weight * latent
        metrics = {"loss": loss, "clip": clip, "lpips": lp, "latent": latent,
                   "sim_source": sim_source, "sim_target": sim_target}
        return loss, {**metrics, "image": image}

    def _losses_and_grad(self, z: torch.Tensor, tg: Targets, view_inputs: list,
                         noise: torch.Tensor | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The losses of :meth:`_losses` and d(sum of losses)/dz, one network's graph at a time.

        Backpropagating the whole loss at once keeps every CLIP net's activations (n_augment
        views each) alive together with the decoder's. Here each term (LPIPS, then each CLIP
        net) is backpropagated to the decoded image as soon as it is computed and its graph
        freed; the summed image gradient then goes through the decoder once. Same gradient
        (chain rule, up to float summation order), same work, and the peak holds the decoder's
        graph plus one network's instead of all of them.
        """
        from .. import ops

        cfg = self.config
        b, n_nets = z.shape[0], len(self.clip)
        if noise is None:
            latent = ops.l21_norm(z, tg.z0).float() / tg.z0_l21
        else:  # the reference's 'l1l2' form, as in _losses
            latent = _l1l2(z - tg.z0 + noise) / _l1l2(tg.z0)
        with self._autocast():
            decoded = self.vqgan.decode_clamped(z)
        image = decoded.detach().requires_grad_(True)
        with self._autocast():
            lp = self.lpips.distance(image, tg.lpips_target).float()
        (image_grad,) = torch.autograd.grad((cfg.lpips_weight * lp).sum(), image)
        image_grad = image_grad.float()
        clip_terms, sim_s, sim_t = [], [], []
        for net, point, es, et, vin in zip(self.clip, tg.points, tg.text_source, tg.text_target, view_inputs):
            emb = F.normalize(self._view_embeddings(net, image, vin), dim=-1)
            pred = emb.view(b, max(cfg.n_augment, 1), -1).mean(1)  # mean of normalised views, not renormalised
            term = (pred * point).sum(-1)
            (g,) = torch.autograd.grad(-term.sum() / n_nets, image)
            image_grad += g.float()
            clip_terms.append(term.detach())
            sim_s.append((pred * es).sum(-1).detach())
            sim_t.append((pred * et).sum(-1).detach())
        outputs, grads = [(cfg.latent_weight * latent).sum()], [None]
        if decoded.requires_grad:  # (a decoder replaced by a constant in tests does not)
            outputs.append(decoded)
            grads.append(image_grad.to(decoded.dtype))
        (grad,) = torch.autograd.grad(outputs, z, grad_outputs=grads)
        clip = -torch.stack(clip_terms).mean(0)
        loss = clip + cfg.lpips_weight * lp.detach() + cfg.latent_weight * latent.detach()
        metrics = {"loss": loss, "clip": clip, "lpips": lp.detach(), "latent": latent.detach(),
                   "sim_source": torch.stack(sim_s).mean(0), "sim_target": torch.stack(sim_t).mean(0)}
        return {**metrics, "image": decoded.detach()}, grad

    def step(self, state: FlexITState) -> FlexITState:
        """One FlexIT step: losses at ``state.z``, normalised gradient, and the next latent."""
        cfg, tg = self.config, state.targets
        gen = None if cfg.exact_reference else state.generator or torch.Generator().manual_seed(0)
        z = state.z.detach().requires_grad_(True)
        noise = None
        if cfg.reference_noise:  # on the CPU, as the reference's randn_like of its CPU latent
            noise = (1e-6 * torch.randn(tuple(z.shape), generator=gen, dtype=z.dtype)).to(z.device)
        from .. import ops

        with ops.use_kernels(cfg.use_kernels):
            views = self._view_inputs(z.shape[0], gen)
            if cfg.compile == "off" and self.per_network_backward and not cfg.exact_reference:
                out, grad = self._losses_and_grad(z, tg, views, noise)
            else:  # one graph for the whole loss (what torch.compile captures)
                loss, out = self._loss_fn(z, tg, views, noise)
                (grad,) = torch.autograd.grad(loss.sum(), z)
        for name in ("clip", "lpips", "latent"):
            _check_finite(out[name], f"the {name} loss at step {state.step}")
        _check_finite(grad, f"the gradient at step {state.step}")
        if cfg.exact_reference:  # one image: g /= g.norm(p=2); z - lr * g * z0.norm().item()
            if cfg.normalize_gradient:
                grad = grad / grad[0].norm(p=2)
            z_next = z.detach() - cfg.lr * grad * tg.z0[0].norm().item()
        else:
            if cfg.normalize_gradient:
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
                grad = grad / norm
            z_next = z.detach() - cfg.lr * tg.z0_norm.view(-1, 1, 1, 1) * grad
        metrics = {k: v.detach() for k, v in out.items() if k != "image"}
        return FlexITState(targets=tg, z=z_next, step=state.step + 1, generator=gen,
                           image=out["image"].detach().float(), grad=grad, metrics=metrics)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent [B, C, h, w] -> soft-clamped image [B, 3, S, S] in [0, 1], fp32 (decoder stage)."""
        return self.engines.run(self.vq_decoder, z).float().clamp(0, 1)

    # -- whole edit ------------------------------------------------------------------------------
    def edit(self, image, source: str | Sequence[str], target: str | Sequence[str], *,
             steps: int | None = None, seed: int | None = 0, snapshots: Sequence[int] | None = None,
             callback: Callable[[FlexITState], bool | None] | None = None,
             progress: bool = False, batch_size: int | None = None) -> EditResult:
        """Edit one image (path, PIL, array, tensor) or a list of them.

        ``source``/``target`` are one text each, or one per image. ``callback(state)`` runs after
        every step; returning True stops early. The result holds the decode after the last
        update, the per-step history and the decodes at ``snapshots`` steps.

        ``batch_size``: images optimised together (default :func:`default_batch_size`: 1 on CPU
        at 256 px and above, where a joint batch is slower per image than one image at a time).
        Chunks run one after the other with the same ``seed``, so on CPU each image's result
        equals its own single-image edit. With a ``callback`` the whole batch runs as one, so
        the callback sees every image.
        """
        steps = self.config.steps if steps is None else int(steps)
        if steps < 0:
            raise InputError(f"steps must be >= 0, got {steps}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        images = self.load_images(image)
        n = images.shape[0]
        sources = _broadcast_texts(source, n, "source")
        targets = _broadcast_texts(target, n, "target")
        chunk = n if callback is not None else \
            min(n, batch_size or default_batch_size(self.device, self.config.image_size) or n)
        parts = [self._edit_batch(images[i:i + chunk], sources[i:i + chunk], targets[i:i + chunk], steps=steps,
                                  seed=seed, snapshots=snapshots, callback=callback, progress=progress)
                 for i in range(0, n, chunk)]
        return parts[0] if len(parts) == 1 else _concat_results(parts)

    def _edit_batch(self, images: torch.Tensor, sources: list[str], targets: list[str], *, steps: int, seed: int | None,
                    snapshots: Sequence[int] | None, callback, progress: bool) -> EditResult:
        """One jointly optimised batch: images [B, 3, S, S] in [0, 1], one text pair per image."""
        snap_steps = set(self.config.snapshot_steps if snapshots is None else snapshots)
        state = self.prepare(images, sources, targets, seed=seed)
        history, snaps, times = [], {}, []
        if 0 in snap_steps:
            snaps[0] = self.decode(state.z).cpu()
        bar = _progress(steps, progress)
        for _ in range(steps):
            t0 = time.perf_counter()
            state = self.step(state)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            times.append(time.perf_counter() - t0)
            history.append({k: v.float().cpu().tolist() for k, v in state.metrics.items()})
            if state.step - 1 in snap_steps and state.step - 1 not in snaps:
                snaps[state.step - 1] = state.image.cpu()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]['loss'][0]:.4f}")
            if callback is not None and callback(state):
                break
        if bar is not None:
            bar.close()
        final = self.decode(state.z)
        _check_finite(final, "the output image")
        _check_not_degenerate(final, images, steps=state.step)
        if state.step in snap_steps:
            snaps[state.step] = final.cpu()
        return EditResult(images=final.cpu(), history=history, snapshots=dict(sorted(snaps.items())),
                          config=self.config, step_seconds=times, sources=sources, targets=targets)


def default_batch_size(device: torch.device | str, image_size: int = 288) -> int | None:
    """Images per jointly optimised FlexIT batch: None (the whole batch) except on CPU at 256 px
    and above, where it is 1.

    At the paper configuration on a 2-core CPU a joint batch of 2 ran at 0.78-0.84x the per-image
    speed of batch 1 and needed 13.3 GB instead of 8.1 GB: one 288 px image already saturates the
    CPU. The tiny 64 px preset does gain from joint batches (benchmarks/cpu_paper.py batch).
    """
    return 1 if torch.device(device).type == "cpu" and image_size >= 256 else None


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls/convolutions natively here (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and \
            torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")
    except (AttributeError, RuntimeError):
        return False


# ``autocast="auto"`` on a CPU with native bf16, for images of CPU_AUTO_BF16_FROM_PX and up. At
# the paper configuration (benchmarks/cpu_paper.py flexit, 8 views, one thread) bf16 with
# channels_last and the ViT kept in fp32 ran a step 3.5x faster than the reference loop (fp32:
# 1.6x); at 64 px it gained nothing (276 vs 273 ms a step), hence the size threshold. Over a full
# 160-step paper edit from the same latent, seed and views (cpu_paper.py drift), the bf16 output
# differed from fp32's by 0.039 mean abs, 1.12x the 0.035 by which fp32 differs from itself when
# only the summation order changes (channels_last): the optimisation amplifies any round-off to
# that level within ~60 steps. Scored in fp32 with 32 fixed views per net, its final loss was
# -0.18444 against fp32's -0.18439 (fp32 channels_last: -0.18462), its target-similarity gain
# 98% of fp32's. Within CPU_BF16_DRIFT_FACTOR, so ``auto`` picks bf16 there; autocast="off" keeps
# fp32. (Random weights: trained networks were not measured.)
CPU_AUTO_AUTOCAST = "bf16"
CPU_AUTO_BF16_FROM_PX = 256
# The bound bf16 must meet at the end of a full edit, as a multiple of fp32's own summation-order
# spread (the benchmark's verdict): its final image's distance from fp32 and its final loss
# excess over fp32 (both scored in fp32) at most this times those of fp32 channels_last, and
# its target-similarity gain at least CPU_BF16_MIN_GAIN of fp32's.
CPU_BF16_DRIFT_FACTOR = 1.5
CPU_BF16_MIN_GAIN = 0.95


def cpu_keeps_fp32(net) -> bool:
    """Whether CLIP tower ``net`` stays fp32 when FlexIT runs under CPU autocast: the ViTs. At the
    paper configuration (benchmarks/cpu_paper.py flexit --networks, one thread) bf16 made
    ViT-B/32's 8 views slower (forward 1.18 -> 2.43 s, backward 1.07 -> 1.47 s) while the ResNets
    and the VQGAN decoder gained 1.6-3.3x. On CUDA every tower follows autocast."""
    return net.config.vision.patch_size is not None


def resolve_autocast(cfg: FlexITConfig, device: torch.device | str) -> str:
    """``cfg.autocast`` -> "off" | "bf16" | "fp16" for an edit with ``cfg`` on ``device``.

    ``auto``: off under ``exact_reference`` (the comparison is with the reference's fp32 loop);
    else bf16 on CUDA; on CPU :data:`CPU_AUTO_AUTOCAST` from :data:`CPU_AUTO_BF16_FROM_PX` when
    :func:`cpu_has_native_bf16`, else off (emulated bf16 is slower than fp32).
    """
    if cfg.autocast != "auto":
        return cfg.autocast
    if cfg.exact_reference:
        return "off"
    if torch.device(device).type == "cuda":
        return "bf16"
    return CPU_AUTO_AUTOCAST if cfg.image_size >= CPU_AUTO_BF16_FROM_PX and cpu_has_native_bf16() else "off"


def _concat_results(parts: list[EditResult]) -> EditResult:
    """Chunks of one edit (same steps, no callback) -> one result in input order."""
    history = [{k: [v for p in parts for v in p.history[i][k]] for k in parts[0].history[i]}
               for i in range(len(parts[0].history))]
    snaps = {k: torch.cat([p.snapshots[k] for p in parts]) for k in parts[0].snapshots}
    return EditResult(images=torch.cat([p.images for p in parts]), history=history, snapshots=snaps,
                      config=parts[0].config,
                      step_seconds=[sum(ts) for ts in zip(*(p.step_seconds for p in parts))],
                      sources=[t for p in parts for t in p.sources], targets=[t for p in parts for t in p.targets])
def _l1l2(x: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B]: the reference's ``x.pow(2).sum(1).sqrt().sum()`` per image (its
    gradient is NaN where a position of x is exactly 0, hence the noise)."""
    return x.pow(2).sum(1).sqrt().flatten(1).sum(1).float()


def _mul_sum_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _dot_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise ``a[i] @ b[i]`` (torch.dot, the reference's ``pred @ tgt``) -> [B]."""
    return torch.stack([x @ y for x, y in zip(a, b)])




def _broadcast_texts(texts: str | Sequence[str], n: int, what: str) -> list[str]:
    if isinstance(texts, str):
        texts = [texts] * n
    texts = list(texts)
    if len(texts) == 1 and n > 1:
        texts = texts * n
    if len(texts) != n:
        raise InputError(f"{len(texts)} {what} texts for {n} images: give one, or one per image")
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise InputError(f"empty {what} prompt: describe the {what} image content")
    return texts


def _check_finite(x: torch.Tensor, what: str) -> None:
    if not torch.isfinite(x).all():
        raise NumericalError(f"non-finite values in {what}; try a lower lr, autocast='off', or check the weights")


def _check_not_degenerate(final: torch.Tensor, inputs: torch.Tensor, *, steps: int) -> None:
    """An output of one flat colour from an input that was not flat: the optimisation diverged
    (a step length far beyond the latent's range, e.g. ``lr=1e30``), which must not pass as an edit."""
    if not steps:
        return
    for i, (out, src) in enumerate(zip(final, inputs)):
        if float(src.max() - src.min()) >= 1 / 255:
            imageio.check_not_degenerate(out, what=f"the edited image{f' {i}' if final.shape[0] > 1 else ''}")


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="flexit", unit="step", leave=False)


__all__ = ["FlexIT", "FlexITConfig", "FlexITState", "Targets", "EditResult", "default_batch_size",
           "resolve_autocast", "cpu_has_native_bf16", "cpu_keeps_fp32"]
