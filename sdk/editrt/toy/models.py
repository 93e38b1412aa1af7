"""The trained toy-world models shipped with the package, and FlexIT's settings for them.

Files (under ``editrt/data/toy/``, written by ``scripts/train_toy.py``):

- ``clip_tiny.safetensors``: open_clip state_dict of CLIP ``tiny`` (fp16 storage, loaded as fp32)
- ``vqgan_tiny.safetensors``: taming VQModel state_dict of VQGAN ``tiny`` (fp16 storage)
- ``classifier.safetensors``: :class:`~editrt.toy.classifier.ToyClassifier` (fp32)
- ``stylegan2_toy.safetensors`` + ``stylegan2_toy_encoder.safetensors``: the toy StyleGAN2 and its
  encoder (:mod:`editrt.toy.stylegan`); ``stylegan2_toy_{stats,fs3,corpus}.safetensors`` and
  ``deltaedit_toy.safetensors``: its channel statistics, relevance matrix, FEU corpus and Delta
  Mapper, made by ``editrt relevance`` / ``editrt corpus build`` / ``editrt train deltaedit``
  (``scripts/train_toy.py --only style-files``; the manifest records each command)
- ``manifest.json``: training settings, seeds, held-out scores and the files' sha256

LPIPS has no trained trunk in the toy world (its trunks are ImageNet networks, which cannot be
downloaded here): FlexIT's perceptual term and the protocol's LPIPS metric both use LPIPS-alex
with the package's real linear heads over a *seeded random* trunk, a different seed for each
(the paper optimises with VGG and measures with AlexNet to avoid that bias; VGG costs twice
FlexIT's whole toy step on a CPU). Random conv
features still measure low-level structure (Zhang et al. 2018, LPIPS paper §5), which is what
the toy world needs; the numbers are not comparable with ImageNet LPIPS.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import torch

from ..config import FlexITConfig
from ..errors import WeightsError

CLIP_FILE = "clip_tiny.safetensors"
VQGAN_FILE = "vqgan_tiny.safetensors"
CLASSIFIER_FILE = "classifier.safetensors"
# The StyleGAN2 family's toy world (editrt.toy.stylegan; the last four made with editrt's own commands,
# see manifest.json "commands")
STYLEGAN2_FILE = "stylegan2_toy.safetensors"  # StyleGAN2 "toy" state dict (rosinality keys, fp32)
ENCODER_FILE = "stylegan2_toy_encoder.safetensors"  # ToyStyleEncoder (toy image -> z posterior)
STATS_FILE = "stylegan2_toy_stats.safetensors"  # S channel statistics (editrt relevance)
FS3_FILE = "stylegan2_toy_fs3.safetensors"  # relevance matrix with the toy CLIP (editrt relevance)
CORPUS_FILE = "stylegan2_toy_corpus.safetensors"  # FEU corpus of generator samples (editrt corpus build)
MAPPER_FILE = "deltaedit_toy.safetensors"  # Delta Mapper (editrt train deltaedit)
STYLE_FILES = (STYLEGAN2_FILE, ENCODER_FILE, STATS_FILE, FS3_FILE, CORPUS_FILE, MAPPER_FILE)
MANIFEST_FILE = "manifest.json"
WEIGHT_FILES = (CLIP_FILE, VQGAN_FILE, CLASSIFIER_FILE)
LPIPS_METRIC_SEED = 12  # random LPIPS-alex trunk of the protocol's LPIPS metric (FlexIT's is LPIPS "toy")

# FlexIT on the toy world: the tiny networks at 64 px. The paper's loss weights, target point
# and step rule are kept; set for the toy world: steps, lr, views per step and LPIPS "toy".
TOY_FLEXIT = FlexITConfig.preset("toy")


def toy_dir() -> Path:
    """Folder of the shipped toy weights (inside the installed package)."""
    return Path(str(resources.files("editrt") / "data" / "toy"))


def available(folder: str | Path | None = None) -> bool:
    folder = Path(folder) if folder else toy_dir()
    return all((folder / f).is_file() for f in WEIGHT_FILES)


def manifest(folder: str | Path | None = None) -> dict:
    path = (Path(folder) if folder else toy_dir()) / MANIFEST_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def weights_mapping(folder: str | Path | None = None) -> dict[str, str]:
    """``weights=`` mapping for :class:`~editrt.methods.flexit.FlexIT` and the model loaders."""
    folder = Path(folder) if folder else toy_dir()
    if not available(folder):
        missing = [f for f in WEIGHT_FILES if not (folder / f).is_file()]
        raise WeightsError(f"toy-world weights missing in {folder}: {', '.join(missing)}. "
                           "Train them with `python scripts/train_toy.py` (a few minutes on a CPU).")
    return {"clip/tiny": str(folder / CLIP_FILE), "vqgan/tiny": str(folder / VQGAN_FILE)}


def style_weights_mapping(folder: str | Path | None = None) -> dict[str, str]:
    """``weights=`` mapping of the toy generator and the toy CLIP (StyleGAN2 ``toy``, CLIP ``tiny``)."""
    folder = Path(folder) if folder else toy_dir()
    missing = [f for f in (STYLEGAN2_FILE, CLIP_FILE) if not (folder / f).is_file()]
    if missing:
        raise WeightsError(f"toy-world weights missing in {folder}: {', '.join(missing)}. Train them with "
                           "`python scripts/train_toy.py --only clip` / `--only stylegan2`.")
    return {"stylegan2/toy": str(folder / STYLEGAN2_FILE), "clip/tiny": str(folder / CLIP_FILE)}


def style_available(folder: str | Path | None = None) -> bool:
    folder = Path(folder) if folder else toy_dir()
    return available(folder) and all((folder / f).is_file() for f in STYLE_FILES)


@dataclasses.dataclass
class ToyStyleWorld:
    """The StyleGAN2 family's toy world: generator, its encoder, CLIP, the judges and the
    precomputed files every direction method needs (paths, loaded by the methods themselves)."""

    generator: torch.nn.Module  # StyleGAN2 "toy" (32 px)
    encoder: torch.nn.Module  # ToyStyleEncoder (inversion of toy images)
    clip: torch.nn.Module  # ClipNet of the trained tiny CLIP
    classifier: torch.nn.Module
    lpips_metric: torch.nn.Module
    mapper: torch.nn.Module  # trained Delta Mapper of the toy generator's S layout
    stats: Path
    fs3: Path
    corpus: Path

    def invert(self, images01: torch.Tensor):
        """Toy images [B, 3, H, W] in [0, 1] -> StyleCodes (encoder posterior mean, through the mapping)."""
        return self.generator.styles_from_w(self.encoder.invert(self.generator, images01))


def load_toy_style(folder: str | Path | None = None, device: str | torch.device = "cpu") -> ToyStyleWorld:
    """Load the shipped (or ``folder``'s) StyleGAN2 toy world; a clear WeightsError when absent."""
    from .. import weights as W
    from ..methods.stylespace.deltaedit_training import load_trained_mapper
    from ..models.clip import load_clip
    from ..models.lpips import load_lpips
    from ..models.stylegan2 import StyleGAN2
    from .stylegan import ToyStyleEncoder

    folder = Path(folder) if folder else toy_dir()
    missing = [f for f in (*WEIGHT_FILES, *STYLE_FILES) if not (folder / f).is_file()]
    if missing:
        raise WeightsError(f"toy-world files missing in {folder}: {', '.join(missing)}. Make them with "
                           "`python scripts/train_toy.py --only stylegan2` and the commands in its manifest.")
    mapping = style_weights_mapping(folder)
    G = StyleGAN2.load("toy", weights=mapping, device=device)
    encoder = ToyStyleEncoder(G.style_dim)
    W.load_into(encoder, W.load_checkpoint(folder / ENCODER_FILE), what=f"toy encoder ({folder / ENCODER_FILE})")
    return ToyStyleWorld(
        generator=G, encoder=encoder.eval().requires_grad_(False).to(device),
        clip=load_clip("tiny", weights=mapping, device=device),
        classifier=load_classifier(folder / CLASSIFIER_FILE, device=device),
        lpips_metric=load_lpips("alex", random_init=True, seed=LPIPS_METRIC_SEED, device=device),
        mapper=load_trained_mapper(folder / MAPPER_FILE, device=device)[0],
        stats=folder / STATS_FILE, fs3=folder / FS3_FILE, corpus=folder / CORPUS_FILE)


@dataclasses.dataclass
class ToyModels:
    """Everything the toy world runs: FlexIT's three networks and the protocol's judges."""

    clip: torch.nn.Module  # ClipEnsemble of the trained tiny CLIP
    vqgan: torch.nn.Module  # trained tiny VQGAN
    lpips: torch.nn.Module  # FlexIT's perceptual term (LPIPS-alex, random trunk)
    classifier: torch.nn.Module  # ToyClassifier (accuracy + SFID features)
    lpips_metric: torch.nn.Module  # LPIPS-alex, random trunk (the protocol's LPIPS)

    def flexit_models(self) -> dict[str, torch.nn.Module]:
        return {"clip": self.clip, "vqgan": self.vqgan, "lpips": self.lpips}


def load_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    from .. import weights as W
    from .classifier import ToyClassifier

    path = Path(path) if path else toy_dir() / CLASSIFIER_FILE
    model = ToyClassifier()
    W.load_into(model, W.load_checkpoint(path), what=f"toy classifier ({path})")
    return model.eval().requires_grad_(False).to(device)


def load_toy_models(folder: str | Path | None = None, device: str | torch.device = "cpu") -> ToyModels:
    """Load the shipped (or ``folder``'s) toy models; a clear WeightsError when absent."""
    from ..models.clip import ClipEnsemble, load_clip
    from ..models.lpips import load_lpips
    from ..models.vqgan import load_vqgan

    folder = Path(folder) if folder else toy_dir()
    mapping = weights_mapping(folder)
    return ToyModels(
        clip=ClipEnsemble([load_clip("tiny", weights=mapping, device=device)]),
        vqgan=load_vqgan("tiny", weights=mapping, device=device),
        lpips=load_lpips("toy", device=device),
        classifier=load_classifier(folder / CLASSIFIER_FILE, device=device),
        lpips_metric=load_lpips("alex", random_init=True, seed=LPIPS_METRIC_SEED, device=device))


__all__ = ["TOY_FLEXIT", "ToyModels", "ToyStyleWorld", "load_toy_style", "style_weights_mapping",
           "style_available", "STYLE_FILES", "load_toy_models", "load_classifier", "available", "manifest",
           "weights_mapping", "toy_dir", "WEIGHT_FILES"]
