"""The trained toy-world models shipped with the package, and FlexIT's settings for them.

Files (under ``editrt/data/toy/``, written by ``scripts/train_toy.py``):

- ``clip_tiny.safetensors``: open_clip state_dict of CLIP ``tiny`` (fp16 storage, loaded as fp32)
- ``vqgan_tiny.safetensors``: taming VQModel state_dict of VQGAN ``tiny`` (fp16 storage)
- ``classifier.safetensors``: :class:`~editrt.toy.classifier.ToyClassifier` (fp32)
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


__all__ = ["TOY_FLEXIT", "ToyModels", "load_toy_models", "load_classifier", "available", "manifest",
           "weights_mapping", "toy_dir", "WEIGHT_FILES"]
