"""The taming-transformers VQGAN as FlexIT uses it: a continuous latent, no quantisation.

Built from taming's ``Encoder``/``Decoder``/``VectorQuantizer`` modules without
pytorch_lightning, with exactly the state_dict keys of taming's ``VQModel`` (encoder.*,
decoder.*, quantize.*, quant_conv.*, post_quant_conv.*), so a real ``last.ckpt`` +
``model.yaml`` loads. The training-only ``loss.*`` entries of a checkpoint are ignored.

``encode``: [0,1] image -> ``quant_conv(encoder(2x-1))`` (pre-quantisation latent, as FlexIT).
``decode``: latent -> ``(decoder(post_quant_conv(z)) + 1) / 2``; ``decode_clamped`` adds
FlexIT's ``soft_clamp(beta=5)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .. import weights as W
from ..errors import InputError, WeightsError
from ..known_files import VQGAN_CHECKPOINT_LAYOUTS
from .arch import ArchConfig
from .preprocess import Preprocess
from .registry import ModelSpec, TensorSpec, register_provider

log = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class TamingDDConfig(ArchConfig):
    """taming ``ddconfig`` (``Encoder``/``Decoder`` arguments); defaults are the ImageNet f16 models."""

    double_z: bool = False
    z_channels: int = 256  # encoder output / decoder input channels
    resolution: int = 256  # training resolution (sets where attention sits)
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128  # base width
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # width multipliers; downsampling 2 ** (len - 1)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.0

    def as_kwargs(self) -> dict[str, Any]:
        return {**self.to_dict()}


@dataclasses.dataclass(frozen=True)
class VQGANConfig(ArchConfig):
    """taming ``VQModel`` params (the ``model.params`` block of model.yaml, without the loss)."""

    embed_dim: int = 256  # latent channels
    n_embed: int = 1024  # codebook size (kept for key parity; FlexIT never quantises)
    ddconfig: TamingDDConfig = TamingDDConfig()
    image_size: int = 288  # resolution of the export specs (FlexIT's)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ddconfig.ch_mult) - 1)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, image_size: int = 288) -> "VQGANConfig":
        """From a model.yaml ``model.params`` mapping (extra keys such as ``lossconfig`` ignored)."""
        dd = dict(params["ddconfig"])
        fields = {f.name for f in dataclasses.fields(TamingDDConfig)}
        unknown = sorted(set(dd) - fields)
        if unknown:
            raise InputError(f"ddconfig has keys taming's Encoder/Decoder do not take: {unknown}")
        for k in ("ch_mult", "attn_resolutions"):
            if k in dd:
                dd[k] = tuple(dd[k])
        return cls(embed_dim=int(params["embed_dim"]), n_embed=int(params["n_embed"]),
                   ddconfig=TamingDDConfig(**dd), image_size=image_size)


# name -> architecture (f16 ImageNet models as released; a tiny f8 model for 64 px images,
# 8x8 latents, small enough to train on a CPU: the toy world's)
VQGAN_CONFIGS: dict[str, VQGANConfig] = {
    "vqgan_imagenet_f16_1024": VQGANConfig(embed_dim=256, n_embed=1024),
    "vqgan_imagenet_f16_16384": VQGANConfig(embed_dim=256, n_embed=16384),
    "tiny": VQGANConfig(embed_dim=32, n_embed=256, image_size=64, ddconfig=TamingDDConfig(
        z_channels=32, resolution=64, ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=1, attn_resolutions=(8,))),
}

# Where a taming checkpoint sits inside a folder (the store, the release folders, taming's logs)
CHECKPOINT_LAYOUTS = VQGAN_CHECKPOINT_LAYOUTS


def soft_clamp(x: torch.Tensor, beta: float = 5.0) -> torch.Tensor:
    """FlexIT's smooth clamp of [0,1]-ish values into [0,1] (FlexIT src/vqc_core.py ``soft_clamp``).

    ``x = 2x-1; x = tanh(x**b); x = relu(x)**(1/b) - relu(-x)**(1/b); (x+1)/2``. The root's
    gradient is infinite at exactly 0 (the reference then yields NaN); here it is 0 there.
    """
    t = torch.tanh((2 * x - 1) ** beta)
    pos, neg = torch.relu(t), torch.relu(-t)
    inv = 1.0 / beta
    root_pos = torch.where(pos > 0, torch.where(pos > 0, pos, 1.0) ** inv, 0.0)
    root_neg = torch.where(neg > 0, torch.where(neg > 0, neg, 1.0) ** inv, 0.0)
    return (root_pos - root_neg + 1) / 2


class VQGAN(nn.Module):
    """Lightning-free taming ``VQModel`` with FlexIT's continuous encode/decode."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.name: str | None = None  # config name, set by load_vqgan (names the export specs)
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import VectorQuantizer

        self.config = config
        dd = config.ddconfig.as_kwargs()
        self.encoder = Encoder(**dd)
        with contextlib.redirect_stdout(io.StringIO()):  # taming's Decoder prints the z shape
            self.decoder = Decoder(**dd)
        self.quantize = VectorQuantizer(config.n_embed, config.embed_dim, beta=0.25)  # kept for key parity
        self.quant_conv = nn.Conv2d(config.ddconfig.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.ddconfig.z_channels, 1)
        self.embed_dim = config.embed_dim
        self.downsample = config.downsample

    def latent_shape(self, image_size: int) -> tuple[int, int, int]:
        if image_size % self.downsample:
            raise InputError(f"image size {image_size} is not a multiple of the VQGAN factor {self.downsample}")
        s = image_size // self.downsample
        return (self.embed_dim, s, s)

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] in [0,1] -> continuous latent [B, embed_dim, H/f, W/f]."""
        return self.quant_conv(self.encoder(2 * x01 - 1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> image, ``(decoder + 1) / 2`` (not clamped)."""
        return (self.decoder(self.post_quant_conv(z)) + 1) / 2

    def decode_clamped(self, z: torch.Tensor) -> torch.Tensor:
        return soft_clamp(self.decode(z))


def read_model_yaml(path: str | Path, *, image_size: int = 288) -> VQGANConfig:
    """The architecture in a taming ``model.yaml`` (``model.params``).

    Only ``embed_dim``, ``n_embed`` and ``ddconfig`` are read: the public files' ``lossconfig``
    (``VQLPIPSWithDiscriminator``, training only) is neither imported nor built.
    """
    import yaml

    try:
        cfg = yaml.safe_load(Path(path).read_text())
        return VQGANConfig.from_params(cfg["model"]["params"], image_size=image_size)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is not such a yaml
        raise WeightsError(f"{path} is not a taming VQGAN model.yaml (model.params with embed_dim, "
                           f"n_embed, ddconfig): {type(exc).__name__}: {exc}") from None


def find_checkpoint_in_folder(folder: str | Path, name: str) -> Path | None:
    folder = Path(folder).expanduser()
    for rel in CHECKPOINT_LAYOUTS:
        if (folder / rel.format(name=name)).is_file():
            return folder / rel.format(name=name)
    return None


def find_model_yaml(ckpt: Path) -> Path | None:
    """``model.yaml`` beside the checkpoint, or in ``configs/`` of it or of its parent folder;
    else the newest taming ``configs/*-project.yaml`` of a log folder."""
    parents = [ckpt.parent, ckpt.parent.parent]
    for c in [p / "model.yaml" for p in parents] + [p / "configs" / "model.yaml" for p in parents]:
        if c.is_file():
            return c
    projects = sorted(ckpt.parent.parent.glob("configs/*-project.yaml"))  # names start with a timestamp
    return projects[-1] if projects else None


def _locate(name: str, weights: W.WeightsArg, path: str | Path | None, download: bool) -> tuple[Path, Path | None]:
    """(checkpoint, model.yaml or None) for ``name`` from path / weights / the store."""
    key = f"vqgan/{name}"
    ckpt = None
    if path is not None and Path(path).expanduser().is_dir():
        ckpt = find_checkpoint_in_folder(path, name)
        if ckpt is None:
            raise WeightsError(f"no VQGAN checkpoint in {path}: looked for "
                               + ", ".join(r.format(name=name) for r in CHECKPOINT_LAYOUTS))
    elif path is None and weights is not None and not isinstance(weights, Mapping) and Path(weights).is_file():
        ckpt = Path(weights).expanduser()
    if ckpt is None:  # the folder layouts are the KnownFile's (weights.resolve tries them)
        ckpt = W.resolve(key, path=path, weights=weights, download=download)
    yaml_path = None
    if isinstance(weights, Mapping) and f"{key}/config" in weights:
        yaml_path = Path(weights[f"{key}/config"]).expanduser()
    elif ckpt.suffix != ".safetensors":
        yaml_path = find_model_yaml(ckpt)
    return ckpt, yaml_path


def load_vqgan(name: str = "vqgan_imagenet_f16_1024", *, weights: W.WeightsArg = None,
               path: str | Path | None = None, random_init: bool = False, seed: int = 0,
               device: str | torch.device = "cpu", download: bool = False, allow_pickle: bool = False) -> VQGAN:
    """Build VQGAN ``name`` and load its weights; eval mode, ``requires_grad`` off.

    The checkpoint comes from ``path`` (a file or a folder), ``weights`` (a folder in any of
    :data:`CHECKPOINT_LAYOUTS`, a file, or a ``{"vqgan/<name>": ckpt, "vqgan/<name>/config":
    yaml}`` mapping) or the store; its ``model.yaml`` (found by :func:`find_model_yaml`), when
    present, gives the architecture, else the registry's. Training-only ``loss.*`` weights and
    Lightning training state (callbacks, optimiser) are skipped without being unpickled as code.
    """
    if name not in VQGAN_CONFIGS:
        raise InputError(f"unknown VQGAN {name!r}; known: {', '.join(VQGAN_CONFIGS)}")
    config = VQGAN_CONFIGS[name]
    ckpt = None
    if not random_init:
        ckpt, yaml_path = _locate(name, weights, path, download)
        if yaml_path is not None:
            config = read_model_yaml(yaml_path, image_size=config.image_size)
    with W.seeded(seed):
        try:
            model = VQGAN(config)
        except (TypeError, ValueError, KeyError, AssertionError) as exc:
            raise WeightsError(f"VQGAN config for {name} cannot be built ({exc}); check model.yaml") from None
    if ckpt is not None:
        state = W.load_checkpoint(ckpt, allow_pickle=allow_pickle, stub_globals=LIGHTNING_TRAINING_STATE)
        sd = state.get("state_dict", state) if isinstance(state, dict) else None
        if not isinstance(sd, dict):
            raise WeightsError(f"{ckpt} holds no VQGAN state_dict")
        W.load_into(model, sd, what=f"VQGAN {name} ({ckpt})", ignore_prefixes=("loss.",))
        log.info("loaded VQGAN %s from %s", name, ckpt)
    # a model.yaml with another architecture than the registered config has no export spec
    model.name = name if config == VQGAN_CONFIGS[name] else None
    return model.eval().requires_grad_(False).to(device)


# Lightning checkpoints pickle their callbacks' classes as dict keys (``callbacks``); they are
# training state, read as inert placeholders so that weights-only loading accepts the file.
LIGHTNING_TRAINING_STATE = ("pytorch_lightning.", "lightning.")


def save_taming_checkpoint(model: VQGAN, folder: str | Path, n_embed: int | None = None) -> Path:
    """Write ``last.ckpt`` + ``model.yaml`` in taming's layout (used by tests and the toy world)."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_embed = n_embed or model.quantize.n_e
    cfg = {"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": model.embed_dim, "n_embed": n_embed, "ddconfig": model.config.ddconfig.to_dict()}}}
    (folder / "model.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": model.state_dict(), "global_step": 0}, folder / "last.ckpt")
    return folder / "last.ckpt"


# -- export specs -------------------------------------------------------------------------------

class VQGANEncoder(nn.Module):
    """Export wrapper: image [B,3,H,W] in [0,1] -> latent."""

    def __init__(self, vq: VQGAN):
        super().__init__()
        self.vq = vq
        self.spec_name = f"vqgan/{vq.name}/encoder" if vq.name else None

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.vq.encode(image)


class VQGANDecoder(nn.Module):
    """Export wrapper: latent -> soft-clamped image in [0,1] (FlexIT's final decode)."""

    def __init__(self, vq: VQGAN):
        super().__init__()
        self.vq = vq
        self.spec_name = f"vqgan/{vq.name}/decoder" if vq.name else None

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vq.decode_clamped(latent)


def _specs():
    for name, cfg in VQGAN_CONFIGS.items():
        size = cfg.image_size  # FlexIT's resolution; the toy world's
        lat = size // cfg.downsample

        def build_enc(weights=None, random_init=False, seed=0, _n=name, **kw):
            return VQGANEncoder(load_vqgan(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

        def build_dec(weights=None, random_init=False, seed=0, _n=name, **kw):
            return VQGANDecoder(load_vqgan(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

        norm_ops = ("GroupNormalization", "InstanceNormalization", "Softmax")
        yield ModelSpec(
            name=f"vqgan/{name}/encoder", build=build_enc,
            inputs=(TensorSpec("image", ("B", 3, size, size)),),
            outputs=(TensorSpec("latent", ("B", cfg.embed_dim, lat, lat)),),
            profile={"B": (1, 1, 8)}, fp32_ops=norm_ops,
            description=f"VQGAN {name} encoder + quant_conv at {size} px",
            # the wrapper maps [0, 1] to [-1, 1] itself (2x - 1): the spec input is the [0, 1] image
            preprocess=Preprocess(size, resize="shorter_side_center_crop"))
        yield ModelSpec(
            name=f"vqgan/{name}/decoder", build=build_dec,
            inputs=(TensorSpec("latent", ("B", cfg.embed_dim, lat, lat)),),
            outputs=(TensorSpec("image", ("B", 3, size, size)),),
            profile={"B": (1, 1, 8)}, fp32_ops=norm_ops,
            description=f"VQGAN {name} post_quant_conv + decoder + soft_clamp at {size} px")


register_provider(_specs)

__all__ = ["VQGAN", "VQGANConfig", "TamingDDConfig", "VQGAN_CONFIGS", "CHECKPOINT_LAYOUTS", "load_vqgan",
           "soft_clamp", "read_model_yaml", "find_checkpoint_in_folder", "find_model_yaml", "save_taming_checkpoint"]
