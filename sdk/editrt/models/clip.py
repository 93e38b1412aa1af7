"""CLIP image and text towers (any open_clip architecture), single nets and ensembles.

Architectures (``name``):

- any open_clip model-config name (``ViT-B-32``, ``ViT-L-14-336``, ``RN50x4``, ``ViT-B-32-quickgelu``,
  ... as ``open_clip.list_models()``); OpenAI's spellings are accepted (``ViT-B/32``,
  ``ViT-L/14@336px``);
- a path to an open_clip model-config JSON (``model_configs/*.json``, or a Hugging Face
  ``open_clip_config.json`` with ``model_cfg`` and ``preprocess_cfg``);
- ``"auto"``: inferred from an OpenAI-layout state dict, as OpenAI ``clip/model.py``
  ``build_model`` infers widths, depths and heads from tensor shapes;
- ``"tiny"``: a small real ViT + text transformer for tests and the toy world (shipped trained
  weights under ``editrt/data/toy``).

Activation: open_clip's rule, the name's config decides (``ViT-B-32`` plain GELU as the
LAION/DataComp weights, ``-quickgelu`` names QuickGELU), with OpenAI's release as open_clip's
``pretrained="openai"`` treats it: for the architectures OpenAI published, an OpenAI TorchScript
``.pt`` (the store's file for these names) and seeded random stand-ins use QuickGELU. OpenAI
weights saved as a plain state dict need the ``-quickgelu`` name (as in open_clip). ``"auto"``
builds QuickGELU, as ``build_model``.

Weights: OpenAI's ``.pt`` (a TorchScript archive, read for its tensors only) or any open_clip
state_dict (``.pt``/``.bin``/``.safetensors``).

Deviation from the references: OpenAI's loader casts CLIP to fp16 on CUDA and FlexIT
backpropagates through those fp16 weights. We keep fp32 weights and use autocast where the
method enables it, which is at least as accurate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import weights as W
from ..errors import InputError, WeightsError
from .arch import ArchConfig
from .preprocess import Preprocess, resize_center_crop
from .registry import ModelSpec, TensorSpec, register_family_specs, register_provider

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Architectures OpenAI released (``clip.available_models()``), in open_clip spelling.
OPENAI_RELEASES = ("RN50", "RN101", "RN50x4", "RN50x16", "RN50x64", "ViT-B-32", "ViT-B-16", "ViT-L-14",
                   "ViT-L-14-336")
# Names that get export specs (the references' nets and the toy one); any other name loads too.
CLIP_NAMES = ("RN50", "RN101", "RN50x4", "RN50x16", "ViT-B-32", "ViT-B-16", "tiny")
AUTO = "auto"
_QUICKGELU = "-quickgelu"


def _freeze(extra: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in extra.items()))


def _thaw(extra: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in extra}


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig(ArchConfig):
    """open_clip ``CLIPVisionCfg``: a ViT (``patch_size`` set) or a ModifiedResNet (``layers`` a 4-tuple)."""

    image_size: int = 224  # input side, pixels
    layers: int | tuple[int, ...] = 12  # ViT depth, or the ResNet's blocks per stage
    width: int = 768  # ViT width, or the ResNet's stem width
    patch_size: int | None = 32  # ViT patch side; None for ResNets
    head_width: int = 64  # channels per attention head
    extra: tuple[tuple[str, str], ...] = ()  # other CLIPVisionCfg fields, (name, JSON value)


@dataclasses.dataclass(frozen=True)
class ClipTextConfig(ArchConfig):
    """open_clip ``CLIPTextCfg`` (CLIP's BPE vocabulary and causal text transformer)."""

    context_length: int = 77
    vocab_size: int = 49408
    width: int = 512
    heads: int = 8
    layers: int = 12
    extra: tuple[tuple[str, str], ...] = ()  # other CLIPTextCfg fields, (name, JSON value)


@dataclasses.dataclass(frozen=True)
class ClipConfig(ArchConfig):
    """A CLIP architecture and its input pre-processing."""

    embed_dim: int = 512  # joint embedding width
    vision: ClipVisionConfig = ClipVisionConfig()
    text: ClipTextConfig = ClipTextConfig()
    quick_gelu: bool = False  # OpenAI's activation; open_clip's default is nn.GELU
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    custom_text: bool = False  # open_clip CustomTextCLIP (text tower not under the CLIP root)
    extra: tuple[tuple[str, str], ...] = ()  # other top-level open_clip keys, (name, JSON value)

    @classmethod
    def from_open_clip(cls, cfg: Mapping[str, Any], *, mean: Sequence[float] | None = None,
                       std: Sequence[float] | None = None) -> "ClipConfig":
        """From an open_clip model-config dict (``model_configs/<name>.json``)."""
        cfg = dict(cfg)
        if "multimodal_cfg" in cfg:
            raise InputError("CoCa models (multimodal_cfg) are captioners, not CLIP dual encoders")
        try:
            v, t = dict(cfg.pop("vision_cfg")), dict(cfg.pop("text_cfg"))
            embed_dim = int(cfg.pop("embed_dim"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"not an open_clip model config (needs embed_dim, vision_cfg, text_cfg): {exc}") from None
        if t.get("hf_model_name") or t.get("hf_tokenizer_name") or v.get("timm_model_name"):
            raise InputError("open_clip configs with Hugging Face text towers or timm image towers are not "
                             "supported (their tokenizers and weights come from other hubs)")
        layers = v.pop("layers", 12)
        vision = ClipVisionConfig(
            image_size=int(v.pop("image_size", 224)),
            layers=tuple(layers) if isinstance(layers, (list, tuple)) else int(layers),
            width=int(v.pop("width", 768)), patch_size=v.pop("patch_size", None),
            head_width=int(v.pop("head_width", 64)), extra=_freeze(v))
        text = ClipTextConfig(**{k: int(t.pop(k)) for k in ("context_length", "vocab_size", "width", "heads", "layers")
                                 if k in t}, extra=_freeze(t))
        return cls(embed_dim=embed_dim, vision=vision, text=text, quick_gelu=bool(cfg.pop("quick_gelu", False)),
                   mean=tuple(mean or OPENAI_MEAN), std=tuple(std or OPENAI_STD),
                   custom_text=bool(cfg.pop("custom_text", False)), extra=_freeze(cfg))

    def to_open_clip(self) -> dict[str, Any]:
        """The keyword arguments of open_clip's ``CLIP`` / ``CustomTextCLIP`` (without quick_gelu)."""
        v, t = self.vision, self.text
        vision = {"image_size": v.image_size, "layers": list(v.layers) if isinstance(v.layers, tuple) else v.layers,
                  "width": v.width, "head_width": v.head_width, **_thaw(v.extra)}
        if v.patch_size is not None:
            vision["patch_size"] = v.patch_size
        text = {"context_length": t.context_length, "vocab_size": t.vocab_size, "width": t.width,
                "heads": t.heads, "layers": t.layers, **_thaw(t.extra)}
        return {"embed_dim": self.embed_dim, "vision_cfg": vision, "text_cfg": text, **_thaw(self.extra)}

    @property
    def preprocess(self) -> Preprocess:
        """FlexIT ``test_prep`` / open_clip's eval transform: shorter side, centre crop, mean/std."""
        return Preprocess(self.vision.image_size, self.mean, self.std, "shorter_side_center_crop")


# Tiny config: a real ViT + text transformer, small enough for CPU tests and for the toy world
# (trained on 64 px images). Vocabulary and context stay CLIP's so the tokenizer is real.
TINY_CONFIG = ClipConfig(
    embed_dim=64, quick_gelu=True,
    vision=ClipVisionConfig(image_size=64, layers=2, width=64, patch_size=8, head_width=32),
    text=ClipTextConfig(context_length=77, vocab_size=49408, width=64, heads=2, layers=2))


def canonical_name(name: str) -> str:
    """OpenAI spellings -> open_clip's: ``ViT-B/32`` -> ``ViT-B-32``, ``ViT-L/14@336px`` -> ``ViT-L-14-336``."""
    return re.sub(r"@(\d+)px$", r"-\1", str(name).strip()).replace("/", "-")


def _open_clip_names() -> list[str]:
    from open_clip.factory import list_models

    return list_models()


def _read_config_json(path: Path) -> ClipConfig:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"CLIP model config {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"CLIP model config {path} must hold a JSON object")
    pre = data.get("preprocess_cfg") or {}
    cfg = data.get("model_cfg", data)  # Hugging Face open_clip_config.json wraps the model config
    try:
        return ClipConfig.from_open_clip(cfg, mean=pre.get("mean"), std=pre.get("std"))
    except InputError as exc:
        raise InputError(f"CLIP model config {path}: {exc}") from None


def model_config(name: str) -> ClipConfig:
    """The architecture of ``name`` (see the module docstring); ``"auto"`` has none until a checkpoint."""
    if str(name).endswith(".json"):
        return _read_config_json(Path(name).expanduser())
    canon = canonical_name(name)
    if canon == "tiny":
        return TINY_CONFIG
    if canon == AUTO:
        raise InputError("CLIP 'auto' has no fixed architecture: it is inferred from the checkpoint")
    names = _open_clip_names()
    if canon not in names:
        close = [n for n in names if n.lower().startswith(canon.lower().split("-")[0])][:8]
        raise InputError(f"unknown CLIP model {name!r}: not an open_clip architecture, a model-config .json "
                         f"or 'auto' (infer from an OpenAI-layout checkpoint). Similar: {', '.join(close) or '-'}; "
                         "all: open_clip.list_models()")
    from open_clip.factory import get_model_config

    return ClipConfig.from_open_clip(get_model_config(canon))


def store_key(name: str) -> str:
    """Checkpoint key of ``name``: ``clip/<name>``; a ``-quickgelu`` name shares OpenAI's file."""
    if str(name).endswith(".json"):
        return f"clip/{Path(name).stem}"
    canon = canonical_name(name)
    base = canon[: -len(_QUICKGELU)] if canon.endswith(_QUICKGELU) else canon
    return f"clip/{base if base in OPENAI_RELEASES else canon}"


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> ClipConfig:
    """Architecture of an OpenAI-layout CLIP state dict (OpenAI ``clip/model.py`` ``build_model``).

    Raises WeightsError when the keys are not those of a CLIP model.
    """
    try:
        if "visual.proj" in sd:  # ViT
            width = sd["visual.conv1.weight"].shape[0]
            patch = sd["visual.conv1.weight"].shape[-1]
            grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = ClipVisionConfig(image_size=patch * grid, patch_size=patch, width=width, head_width=64,
                                      layers=_count(sd, r"visual\.transformer\.resblocks\.(\d+)\.attn\.in_proj_weight"))
        else:  # ModifiedResNet
            stages = tuple(_count(sd, rf"visual\.layer{i}\.(\d+)\.") for i in range(1, 5))
            grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = ClipVisionConfig(image_size=grid * 32, layers=stages, patch_size=None, head_width=64,
                                      width=sd["visual.layer1.0.conv1.weight"].shape[0])
        width = sd["ln_final.weight"].shape[0]
        text = ClipTextConfig(context_length=sd["positional_embedding"].shape[0],
                              vocab_size=sd["token_embedding.weight"].shape[0], width=width, heads=width // 64,
                              layers=_count(sd, r"transformer\.resblocks\.(\d+)\."))
        return ClipConfig(embed_dim=sd["text_projection"].shape[1], vision=vision, text=text, quick_gelu=True)
    except (KeyError, IndexError, AttributeError) as exc:
        raise WeightsError(f"cannot infer a CLIP architecture: the checkpoint lacks the OpenAI-layout key "
                           f"{exc} (expected visual.*, transformer.*, token_embedding, text_projection)") from None


def is_torchscript_archive(path: str | Path) -> bool:
    path = Path(path)
    if path.suffix == ".safetensors" or not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in zf.namelist())


def read_clip_state_dict(path: str | Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP checkpoint in open_clip naming.

    OpenAI's release files are TorchScript archives: only their tensors are read (TorchScript
    code is never run as Python). open_clip checkpoints may wrap the dict in ``state_dict`` and
    prefix ``module.``.
    """
    path = Path(path)
    if is_torchscript_archive(path):
        try:
            sd = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{path} looks like a TorchScript CLIP archive but cannot be read: {exc}") from None
    else:
        sd = W.load_checkpoint(path, allow_pickle=allow_pickle)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise WeightsError(f"{path} holds no CLIP state_dict")
    sd = {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}
    for meta in ("input_resolution", "context_length", "vocab_size", "attn_mask"):  # metadata, derived mask
        sd.pop(meta, None)
    return sd


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """[N, ctx] token ids -> [N, L]: drop the padding columns after the longest prompt's
    end-of-text token (the highest id, as CLIP's argmax pooling finds it). Templated prompts are
    10-20 tokens of 77, so the text tower does 4-7x less work (see ``ClipNet.encode_text``)."""
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        return tokens
    last = int(tokens.argmax(dim=1).max()) + 1
    return tokens[:, :max(last, 2)]


def _causal_mask(n: int, full: torch.Tensor) -> torch.Tensor:
    """CLIP's additive causal mask for n positions: -inf above the diagonal (OpenAI CLIP model.py
    ``build_attention_mask``), the top-left n x n block of ``full``. Built, not sliced: a slice
    of the 77 x 77 buffer is contiguous only at n = 77, and export tracing guards on that."""
    return torch.full((n, n), float("-inf"), dtype=full.dtype, device=full.device).triu(1)


class ClipNet(nn.Module):
    """One CLIP network: text and image towers, tokenizer and preprocessing constants.

    ``encode_image`` takes images already normalised at ``image_size``; ``preprocess`` turns
    [0, 1] RGB tensors of any size into such images (resize shorter side, center crop,
    normalise), as FlexIT's deterministic ``test_prep``.
    """

    def __init__(self, name: str, model: nn.Module, config: ClipConfig):
        super().__init__()
        from open_clip.tokenizer import SimpleTokenizer

        self.name = name
        self.model = model
        self.config = config
        self.image_size = int(config.vision.image_size)
        self.context_length = int(config.text.context_length)
        self.embed_dim = int(config.embed_dim)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), persistent=False)
        self._tokenizer = SimpleTokenizer(context_length=self.context_length)

    # -- text ---------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids [N, context_length] (int64). Empty or over-long prompts raise InputError."""
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"empty prompt {t!r}: give a text describing the image")
            n = len(self._tokenizer.encode(t)) + 2  # + start and end tokens
            if n > self.context_length:
                raise InputError(f"prompt too long for CLIP ({n} tokens > {self.context_length}): "
                                 f"{t[:60]!r}{'...' if len(t) > 60 else ''}")
        return self._tokenizer(list(texts))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """[N, L] int token ids, L <= context_length -> unnormalised embeddings [N, embed_dim].

        open_clip's ``CLIP.encode_text`` (OpenAI CLIP model.py) on the first L positions: the
        position embeddings and the causal mask are sliced to L, which at L = context_length is
        the same ops on the same values (bit for bit the full-context encoding). A shorter L
        (:func:`trim_padding`) gives the same embedding: under CLIP's causal mask a position
        attends to earlier ones alone, so the end-of-text token read by the pooling never sees
        the padding after it. No branch depends on L, so the exported graph keeps L symbolic.
        """
        tokens = tokens.to(self.mean.device)
        m = self.model
        n = tokens.shape[1]
        if n > self.context_length:
            raise InputError(f"{n} tokens per prompt exceed CLIP's context length {self.context_length}")
        if getattr(m, "attn_mask", None) is None:
            # no causal mask: every position sees the padding, so restore it
            return m.encode_text(F.pad(tokens, (0, self.context_length - n)))
        from open_clip.transformer import text_global_pool

        cast_dtype = m.transformer.get_cast_dtype()
        x = m.token_embedding(tokens).to(cast_dtype) + m.positional_embedding[:n].to(cast_dtype)
        x = m.ln_final(m.transformer(x, attn_mask=_causal_mask(n, m.attn_mask)))
        x = text_global_pool(x, tokens, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings [N, D] (no prompt template, as FlexIT). Full 77-token rows:
        FlexIT's exact-reference mode compares these bit for bit, and two prompts cost little."""
        return F.normalize(self.encode_text(self.tokenize(texts)).float(), dim=-1)

    # -- image --------------------------------------------------------------------------------
    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean.to(x01.dtype)) / self.std.to(x01.dtype)

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> normalised [N, 3, S, S] (shorter side, centre crop)."""
        return self.normalize(resize_center_crop(x01, self.image_size))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [N, 3, S, S] -> unnormalised embeddings [N, D]."""
        return self.model.encode_image(x)

    @torch.no_grad()
    def fold_batchnorm(self) -> int:
        """Fold every eval-mode BatchNorm of the image tower into the conv before it
        (``torch.nn.utils.fusion.fuse_conv_bn_eval``), in place; returns how many were folded.

        The ResNet towers (open_clip ``ModifiedResNet``) follow each conv with a BatchNorm,
        which in eval mode is a per-channel affine map: folded, the tower computes the same
        function (round-off level) with one full-size pass less per conv, forward and backward.
        The module's state_dict then has conv biases and no ``bn*`` entries, so fold only nets
        that are not saved as checkpoints afterwards. Other towers (ViTs) are left as they are
        (returns 0).
        """
        from open_clip.modified_resnet import ModifiedResNet
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        if not isinstance(self.model.visual, ModifiedResNet):
            return 0
        if self.training:
            raise InputError("fold_batchnorm needs an eval-mode net (BatchNorm folds only with frozen statistics)")
        # in ModifiedResNet each BatchNorm is the child right after its conv: conv1/bn1, conv2/bn2,
        # ... and the downsample Sequential's ("0", conv), ("1", bn)
        pairs = []
        for module in self.model.visual.modules():
            children = list(module.named_children())
            pairs += [(module, a, b) for a, b in zip(children, children[1:])
                      if isinstance(a[1], nn.Conv2d) and isinstance(b[1], nn.BatchNorm2d)]
        total = sum(isinstance(m, nn.BatchNorm2d) for m in self.model.visual.modules())
        if len(pairs) != total:
            raise InputError(f"CLIP {self.name}: {total - len(pairs)} of {total} BatchNorm layers do not "
                             "follow a conv; nothing folded")
        for module, (conv_name, conv), (bn_name, bn) in pairs:
            setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
            setattr(module, bn_name, nn.Identity())
        return len(pairs)

    def embed_image(self, x01: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> normalised embeddings [N, D]."""
        return F.normalize(self.encode_image(self.preprocess(x01)).float(), dim=-1)


def build_clip(config: ClipConfig | str) -> nn.Module:
    """The open_clip ``CLIP`` (or ``CustomTextCLIP``) module of ``config`` with fresh weights."""
    from open_clip.model import CLIP, CustomTextCLIP

    cfg = model_config(config) if isinstance(config, str) else config
    cls = CustomTextCLIP if cfg.custom_text else CLIP
    try:
        return cls(**cfg.to_open_clip(), quick_gelu=cfg.quick_gelu)
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise InputError(f"open_clip cannot build this CLIP architecture: {exc}") from None


def load_clip(name: str, *, weights: W.WeightsArg = None, path: str | Path | None = None,
              random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
              download: bool = False, allow_pickle: bool = False) -> ClipNet:
    """Build CLIP ``name`` (see the module docstring) and load its weights (or seeded random
    ones when ``random_init``).

    The returned net is in eval mode with ``requires_grad`` off: FlexIT differentiates with
    respect to its input only. Raises InputError for an unknown architecture and WeightsError
    for a missing, unreadable or mismatching checkpoint.
    """
    auto = canonical_name(name) == AUTO
    if auto and random_init:
        raise InputError("CLIP 'auto' infers the architecture from a checkpoint; it cannot be random_init")
    cfg = None if auto else model_config(name)
    label = Path(name).stem if str(name).endswith(".json") else canonical_name(name)
    ckpt, sd = None, None
    if not random_init:
        ckpt = W.resolve(store_key(name), path=path, weights=weights, download=download)
        sd = read_clip_state_dict(ckpt, allow_pickle=allow_pickle)
    if cfg is None:
        cfg = config_from_state_dict(sd)
        label = Path(ckpt).stem
    elif (canonical_name(name) in OPENAI_RELEASES and not cfg.quick_gelu
          and (random_init or is_torchscript_archive(ckpt))):
        cfg = dataclasses.replace(cfg, quick_gelu=True)  # OpenAI's release (open_clip pretrained="openai")
    with W.seeded(seed):
        model = build_clip(cfg)
    if sd is not None:
        if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
            sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
        W.load_into(model, sd, what=f"CLIP {label} ({ckpt})",
                    ignore_prefixes=("logit_bias",) if getattr(model, "logit_bias", None) is None else ())
        log.info("loaded CLIP %s from %s (%s)", label, ckpt, "QuickGELU" if cfg.quick_gelu else "GELU")
    net = ClipNet(label, model, cfg).eval().requires_grad_(False)
    return net.to(device)


class ClipEnsemble(nn.Module):
    """Several CLIP nets, each with its own input size and normalisation (FlexIT uses 3 or 5)."""

    def __init__(self, nets: Sequence[ClipNet]):
        super().__init__()
        if not nets:
            raise InputError("a CLIP ensemble needs at least one network")
        self.nets = nn.ModuleList(nets)

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nets]

    def embed_text(self, texts: Sequence[str]) -> list[torch.Tensor]:
        return [net.embed_text(texts) for net in self.nets]

    @torch.no_grad()
    def embed_image(self, x01: torch.Tensor) -> list[torch.Tensor]:
        return [net.embed_image(x01) for net in self.nets]

    def __iter__(self):
        return iter(self.nets)

    def __len__(self) -> int:
        return len(self.nets)


def load_ensemble(names: Sequence[str], **kwargs) -> ClipEnsemble:
    return ClipEnsemble([load_clip(n, **kwargs) for n in names])


# -- export specs -------------------------------------------------------------------------------

class ClipImageTower(nn.Module):
    """Export wrapper: normalised image [B, 3, S, S] -> unnormalised embedding [B, D]."""

    def __init__(self, net: ClipNet):
        super().__init__()
        self.net = net
        self.spec_name = f"clip/{net.name}/image"

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.encode_image(image)


class ClipTextTower(nn.Module):
    """Export wrapper: int32 token ids [B, T], T <= ctx -> unnormalised embedding [B, D].

    int32 ids because ONNX Runtime lacks ArgMax on int64 (the EOT pooling).
    """

    def __init__(self, net: ClipNet):
        super().__init__()
        self.net = net
        self.spec_name = f"clip/{net.name}/text"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(tokens)


def _specs():
    for name in CLIP_NAMES:
        yield from specs_for(name)


def specs_for(name: str):
    """The image and text tower specs of any CLIP architecture name (registry's on-demand lookup)."""
    cfg = model_config(name)
    name = canonical_name(name)
    size, ctx, dim = cfg.vision.image_size, cfg.text.context_length, cfg.embed_dim
    def build_image(weights=None, random_init=False, seed=0, _n=name, **kw):
        return ClipImageTower(load_clip(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

    def build_text(weights=None, random_init=False, seed=0, _n=name, **kw):
        return ClipTextTower(load_clip(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

    def sample_text(seed=0, B=2, T=ctx, **_):
        gen = torch.Generator().manual_seed(seed)
        tokens = torch.zeros(B, T, dtype=torch.int32)
        for i in range(B):  # SOT, random words, EOT (the highest id, found by argmax)
            n = int(torch.randint(0, T - 1, (1,), generator=gen))
            tokens[i, 0] = 49406
            tokens[i, 1:n + 1] = torch.randint(1, 49000, (n,), generator=gen, dtype=torch.int32)
            tokens[i, n + 1] = 49407
        return {"tokens": tokens}

    yield ModelSpec(
        name=f"clip/{name}/image", build=build_image,
        inputs=(TensorSpec("image", ("B", 3, size, size)),),
        outputs=(TensorSpec("embedding", ("B", dim)),),
        profile={"B": (1, 8, 32)}, fp32_ops=("LayerNormalization", "Softmax"),
        description=f"CLIP {name} image tower (normalised input at {size} px)", preprocess=cfg.preprocess)
    yield ModelSpec(
        name=f"clip/{name}/text", build=build_text,
        inputs=(TensorSpec("tokens", ("B", "T"), torch.int32),),
        outputs=(TensorSpec("embedding", ("B", dim)),),
        # T: tokens per row, up to the context length (trim_padding's rows: 2 = start and end
        # token at least, ~12-19 for templated prompts); full rows by default, as tokenize gives
        axes={"B": 2, "T": ctx}, profile={"B": (1, 2, 160), "T": (2, 16, ctx)}, sample=sample_text,
        fp32_ops=("LayerNormalization", "Softmax"),
        description=f"CLIP {name} text tower (int32 token ids)")


register_provider(_specs)
register_family_specs("clip", specs_for)

__all__ = ["ClipNet", "ClipEnsemble", "trim_padding", "ClipConfig", "ClipVisionConfig", "ClipTextConfig", "load_clip",
           "load_ensemble", "build_clip", "read_clip_state_dict", "config_from_state_dict", "model_config",
           "store_key", "canonical_name", "CLIP_NAMES", "OPENAI_RELEASES", "OPENAI_MEAN", "OPENAI_STD",
           "TINY_CONFIG"]
