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
import copy
import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import weights as W
from ..errors import InputError, WeightsError
from .registry import ModelSpec, TensorSpec, register_provider

log = logging.getLogger(__name__)

_F16_DDCONFIG = {
    "double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3,
    "ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
    "dropout": 0.0,
}

# name -> taming VQModel params (the `model.params` block of model.yaml)
VQGAN_CONFIGS: dict[str, dict[str, Any]] = {
    "vqgan_imagenet_f16_1024": {"embed_dim": 256, "n_embed": 1024, "ddconfig": _F16_DDCONFIG},
    "vqgan_imagenet_f16_16384": {"embed_dim": 256, "n_embed": 16384, "ddconfig": _F16_DDCONFIG},
    # f8 autoencoder for 64 px images: 8x8 latents, small enough to train on a CPU (toy world)
    "tiny": {"embed_dim": 32, "n_embed": 256, "ddconfig": {
        "double_z": False, "z_channels": 32, "resolution": 64, "in_channels": 3, "out_ch": 3,
        "ch": 32, "ch_mult": [1, 2, 2, 4], "num_res_blocks": 1, "attn_resolutions": [8],
        "dropout": 0.0}},
}

_SOURCES = {  # public checkpoints (taming-transformers README; FlexIT install.sh)
    "vqgan_imagenet_f16_1024": "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/files/?p=%2F",
    "vqgan_imagenet_f16_16384": "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2F",
}


def _register_known() -> None:
    for name in VQGAN_CONFIGS:
        src = _SOURCES.get(name)
        how = (f"download last.ckpt and model.yaml of {name} from taming-transformers" if src else
               "tiny VQGAN has no public weights; train one with scripts/train_toy.py or use random_init=True")
        W.register_known(W.KnownFile(f"vqgan/{name}", f"vqgan/{name}/last.ckpt",
                                     src and src + "ckpts%2Flast.ckpt&dl=1", how))
        W.register_known(W.KnownFile(f"vqgan/{name}/config", f"vqgan/{name}/model.yaml",
                                     src and src + "configs%2Fmodel.yaml&dl=1", how))


_register_known()


def soft_clamp(x: torch.Tensor, beta: float = 5.0) -> torch.Tensor:
    """FlexIT's smooth clamp of [0,1]-ish values into [0,1] (REFERENCES.md §1.3 step 3).

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

    def __init__(self, embed_dim: int, n_embed: int, ddconfig: dict[str, Any]):
        super().__init__()
        self.name: str | None = None  # config name, set by load_vqgan (names the export specs)
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import VectorQuantizer

        self.ddconfig = copy.deepcopy(ddconfig)
        self.encoder = Encoder(**ddconfig)
        with contextlib.redirect_stdout(io.StringIO()):  # taming's Decoder prints the z shape
            self.decoder = Decoder(**ddconfig)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)  # kept for key parity
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        self.embed_dim = embed_dim
        self.downsample = 2 ** (len(ddconfig["ch_mult"]) - 1)

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


def read_model_yaml(path: str | Path) -> dict[str, Any]:
    """``model.params`` of a taming ``model.yaml``."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.to_container(OmegaConf.load(str(path)), resolve=True)
        params = cfg["model"]["params"]
        return {"embed_dim": params["embed_dim"], "n_embed": params["n_embed"], "ddconfig": params["ddconfig"]}
    except Exception as exc:  # noqa: BLE001
        raise WeightsError(f"{path} is not a taming VQGAN model.yaml (model.params with embed_dim, "
                           f"n_embed, ddconfig): {exc}") from None


def load_vqgan(name: str = "vqgan_imagenet_f16_1024", *, weights: W.WeightsArg = None,
               path: str | Path | None = None, config_path: str | Path | None = None,
               random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
               download: bool = False, allow_pickle: bool = False) -> VQGAN:
    """Build VQGAN ``name`` (config from the registry, or the checkpoint's model.yaml when found)
    and load its weights; eval mode, ``requires_grad`` off."""
    if name not in VQGAN_CONFIGS:
        raise InputError(f"unknown VQGAN {name!r}; known: {', '.join(VQGAN_CONFIGS)}")
    params = copy.deepcopy(VQGAN_CONFIGS[name])
    ckpt = None
    if not random_init:
        ckpt = W.resolve(f"vqgan/{name}", path=path, weights=weights, download=download)
        yaml_path = Path(config_path) if config_path else ckpt.with_name("model.yaml")
        if yaml_path.exists():
            params = read_model_yaml(yaml_path)
    with W.seeded(seed):
        try:
            model = VQGAN(**params)
        except (TypeError, ValueError, KeyError) as exc:
            raise WeightsError(f"VQGAN config for {name} cannot be built ({exc}); check model.yaml") from None
    if ckpt is not None:
        state = W.load_checkpoint(ckpt, allow_pickle=allow_pickle)
        sd = state.get("state_dict", state) if isinstance(state, dict) else None
        if not isinstance(sd, dict):
            raise WeightsError(f"{ckpt} holds no VQGAN state_dict")
        W.load_into(model, sd, what=f"VQGAN {name} ({ckpt})", ignore_prefixes=("loss.",))
        log.info("loaded VQGAN %s from %s", name, ckpt)
    # a model.yaml with another architecture than the registered config has no export spec
    model.name = name if params == VQGAN_CONFIGS[name] else None
    return model.eval().requires_grad_(False).to(device)


def save_taming_checkpoint(model: VQGAN, folder: str | Path, n_embed: int | None = None) -> Path:
    """Write ``last.ckpt`` + ``model.yaml`` in taming's layout (used by tests and the toy world)."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_embed = n_embed or model.quantize.n_e
    cfg = {"model": {"target": "taming.models.vqgan.VQModel", "params": {
        "embed_dim": model.embed_dim, "n_embed": n_embed, "ddconfig": model.ddconfig}}}
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
    for name, params in VQGAN_CONFIGS.items():
        dd = params["ddconfig"]
        f = 2 ** (len(dd["ch_mult"]) - 1)
        size = 288 if name != "tiny" else 64  # FlexIT's resolution; the toy world's
        lat = size // f

        def build_enc(weights=None, random_init=False, seed=0, _n=name, **kw):
            return VQGANEncoder(load_vqgan(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

        def build_dec(weights=None, random_init=False, seed=0, _n=name, **kw):
            return VQGANDecoder(load_vqgan(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

        norm_ops = ("GroupNormalization", "InstanceNormalization", "Softmax")
        yield ModelSpec(
            name=f"vqgan/{name}/encoder", build=build_enc,
            inputs=(TensorSpec("image", ("B", 3, size, size)),),
            outputs=(TensorSpec("latent", ("B", params["embed_dim"], lat, lat)),),
            profile={"B": (1, 1, 8)}, fp32_ops=norm_ops,
            description=f"VQGAN {name} encoder + quant_conv at {size} px")
        yield ModelSpec(
            name=f"vqgan/{name}/decoder", build=build_dec,
            inputs=(TensorSpec("latent", ("B", params["embed_dim"], lat, lat)),),
            outputs=(TensorSpec("image", ("B", 3, size, size)),),
            profile={"B": (1, 1, 8)}, fp32_ops=norm_ops,
            description=f"VQGAN {name} post_quant_conv + decoder + soft_clamp at {size} px")


register_provider(_specs)

__all__ = ["VQGAN", "VQGAN_CONFIGS", "load_vqgan", "soft_clamp", "read_model_yaml", "save_taming_checkpoint"]
