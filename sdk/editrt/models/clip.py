"""CLIP image and text towers (open_clip architectures), single nets and ensembles.

Architectures are open_clip's (``RN50``, ``RN101``, ``RN50x4``, ``RN50x16``, ``ViT-B-32``,
``ViT-B-16``) with QuickGELU as in OpenAI's release, plus ``tiny`` for tests and the toy world.
Weights: OpenAI's ``.pt`` (a TorchScript archive, read for its tensors only) or any open_clip
state_dict (``.pt``/``.bin``/``.safetensors``). Names with a slash (``ViT-B/32``, as the
reference code writes them) are accepted.

Deviation from the references: OpenAI's loader casts CLIP to fp16 on CUDA and FlexIT
backpropagates through those fp16 weights. We keep fp32 weights and use autocast where the
method enables it, which is at least as accurate (see REFERENCES.md §6).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import weights as W
from ..errors import InputError, WeightsError
from .registry import ModelSpec, TensorSpec, register_provider

log = logging.getLogger(__name__)

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# Tiny open_clip config: a real ViT + text transformer, small enough for CPU tests and for the
# toy world (trained on 64 px images). Vocabulary and context stay CLIP's so the tokenizer is real.
TINY_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

CLIP_NAMES = ("RN50", "RN101", "RN50x4", "RN50x16", "ViT-B-32", "ViT-B-16", "tiny")


def canonical_name(name: str) -> str:
    """``ViT-B/32`` -> ``ViT-B-32``; unknown names raise InputError."""
    canon = name.replace("/", "-")
    if canon not in CLIP_NAMES:
        raise InputError(f"unknown CLIP model {name!r}; known: {', '.join(CLIP_NAMES)}")
    return canon


def model_config(name: str) -> dict:
    name = canonical_name(name)
    if name == "tiny":
        import copy

        return copy.deepcopy(TINY_CFG)
    from open_clip.factory import get_model_config

    return get_model_config(name)


def _register_known() -> None:
    from open_clip.pretrained import get_pretrained_url

    for name in CLIP_NAMES:
        if name == "tiny":
            W.register_known(W.KnownFile("clip/tiny", "clip/tiny.safetensors", None,
                                         "tiny CLIP has no public weights; train one with "
                                         "scripts/train_toy.py or use random_init=True"))
            continue
        W.register_known(W.KnownFile(
            f"clip/{name}", f"clip/{name}.pt", get_pretrained_url(name, "openai") or None,
            f"place OpenAI's {name}.pt (or an open_clip state_dict) there"))


_register_known()


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
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
    if path.suffix != ".safetensors" and path.is_file() and _is_torchscript_archive(path):
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
    for meta in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(meta, None)
    return sd


class ClipNet(nn.Module):
    """One CLIP network: text and image towers, tokenizer and preprocessing constants.

    ``encode_image`` takes images already normalised at ``image_size``; ``preprocess`` turns
    [0, 1] RGB tensors of any size into such images (resize shorter side, center crop,
    normalise), as FlexIT's deterministic ``test_prep``.
    """

    def __init__(self, name: str, model: nn.Module, mean=OPENAI_MEAN, std=OPENAI_STD):
        super().__init__()
        from open_clip.tokenizer import SimpleTokenizer

        self.name = name
        self.model = model
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.context_length = int(model.context_length)
        self.embed_dim = int(model.text_projection.shape[1])
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
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
        """[N, ctx] int token ids -> unnormalised embeddings [N, embed_dim]."""
        return self.model.encode_text(tokens.to(self.mean.device))

    @torch.no_grad()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings [N, D] (no prompt template, as FlexIT)."""
        return F.normalize(self.encode_text(self.tokenize(texts)).float(), dim=-1)

    # -- image --------------------------------------------------------------------------------
    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean.to(x01.dtype)) / self.std.to(x01.dtype)

    def resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Resize the shorter side to ``image_size`` (bilinear, antialiased) and center crop."""
        from torchvision.transforms.v2 import functional as TF

        s = self.image_size
        if min(x.shape[-2:]) != s:
            x = TF.resize(x, s, antialias=True)
        if tuple(x.shape[-2:]) != (s, s):
            x = TF.center_crop(x, [s, s])
        return x

    def preprocess(self, x01: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [0, 1] -> normalised [N, 3, S, S]."""
        return self.normalize(self.resize_crop(x01))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images [N, 3, S, S] -> unnormalised embeddings [N, D]."""
        return self.model.encode_image(x)

    def embed_image(self, x01: torch.Tensor) -> torch.Tensor:
        """[0, 1] images of any size -> normalised embeddings [N, D]."""
        return F.normalize(self.encode_image(self.preprocess(x01)).float(), dim=-1)


def build_clip(name: str) -> nn.Module:
    """The open_clip ``CLIP`` module of ``name`` with fresh (seed-dependent) weights."""
    from open_clip.model import CLIP

    return CLIP(**model_config(name), quick_gelu=True)


def load_clip(name: str, *, weights: W.WeightsArg = None, path: str | Path | None = None,
              random_init: bool = False, seed: int = 0, device: str | torch.device = "cpu",
              download: bool = False, allow_pickle: bool = False) -> ClipNet:
    """Build CLIP ``name`` and load its weights (or seeded random ones when ``random_init``).

    The returned net is in eval mode with ``requires_grad`` off: FlexIT differentiates with
    respect to its input only.
    """
    name = canonical_name(name)
    with W.seeded(seed):
        model = build_clip(name)
    if not random_init:
        ckpt = W.resolve(f"clip/{name}", path=path, weights=weights, download=download)
        sd = read_clip_state_dict(ckpt, allow_pickle=allow_pickle)
        if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
            sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
        W.load_into(model, sd, what=f"CLIP {name} ({ckpt})",
                    ignore_prefixes=("logit_bias",) if getattr(model, "logit_bias", None) is None else ())
        log.info("loaded CLIP %s from %s", name, ckpt)
    net = ClipNet(name, model).eval().requires_grad_(False)
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
    """Export wrapper: int32 token ids [B, ctx] -> unnormalised embedding [B, D].

    int32 ids because ONNX Runtime lacks ArgMax on int64 (the EOT pooling); see ANCHORS.md §7.
    """

    def __init__(self, net: ClipNet):
        super().__init__()
        self.net = net
        self.spec_name = f"clip/{net.name}/text"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.net.encode_text(tokens)


def _specs():
    for name in CLIP_NAMES:
        cfg = model_config(name)
        size = cfg["vision_cfg"]["image_size"]
        ctx = cfg["text_cfg"]["context_length"]
        dim = cfg["embed_dim"]

        def build_image(weights=None, random_init=False, seed=0, _n=name, **kw):
            return ClipImageTower(load_clip(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

        def build_text(weights=None, random_init=False, seed=0, _n=name, **kw):
            return ClipTextTower(load_clip(_n, weights=weights, random_init=random_init, seed=seed, **kw)).eval()

        def sample_text(seed=0, B=2, _ctx=ctx, **_):
            gen = torch.Generator().manual_seed(seed)
            tokens = torch.zeros(B, _ctx, dtype=torch.int32)
            for i in range(B):  # SOT, random words, EOT (the highest id, found by argmax)
                n = int(torch.randint(1, _ctx - 2, (1,), generator=gen))
                tokens[i, 0] = 49406
                tokens[i, 1:n + 1] = torch.randint(1, 49000, (n,), generator=gen, dtype=torch.int32)
                tokens[i, n + 1] = 49407
            return {"tokens": tokens}

        yield ModelSpec(
            name=f"clip/{name}/image", build=build_image,
            inputs=(TensorSpec("image", ("B", 3, size, size)),),
            outputs=(TensorSpec("embedding", ("B", dim)),),
            profile={"B": (1, 8, 32)}, fp32_ops=("LayerNormalization", "Softmax"),
            description=f"CLIP {name} image tower (normalised input at {size} px)")
        yield ModelSpec(
            name=f"clip/{name}/text", build=build_text,
            inputs=(TensorSpec("tokens", ("B", ctx), torch.int32),),
            outputs=(TensorSpec("embedding", ("B", dim)),),
            profile={"B": (1, 2, 160)}, sample=sample_text,
            fp32_ops=("LayerNormalization", "Softmax"),
            description=f"CLIP {name} text tower (int32 token ids)")


register_provider(_specs)

__all__ = ["ClipNet", "ClipEnsemble", "load_clip", "load_ensemble", "read_clip_state_dict",
           "canonical_name", "CLIP_NAMES", "OPENAI_MEAN", "OPENAI_STD", "TINY_CFG"]
