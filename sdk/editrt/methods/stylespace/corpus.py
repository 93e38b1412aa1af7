"""The CLIP image-embedding corpus of StyleCLIP-FEU (retrieval of positive/negative images).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError, WeightsError
from ...models.preprocess import resize_center_crop
from .identity import generator_device, generator_fingerprint, generator_name
from .provenance import load_tensors, save_tensors, utc_now

if TYPE_CHECKING:  # pragma: no cover
    from ...models.clip import ClipNet
    from ...models.stylegan2 import StyleGAN2

log = logging.getLogger(__name__)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


@dataclasses.dataclass
class CorpusIndex:
    """CLIP image embeddings of a corpus (unit rows, float32 [N, D]) with their provenance.

    ``items`` name each image (file paths relative to the folder, or ``seed:<i>`` for generator
    samples); ``s_codes`` keeps the conv-view S codes [N, C_conv] of generator samples.
    """

    embeddings: torch.Tensor
    clip_model: str
    items: list[str]
    provenance: dict[str, Any]
    s_codes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def check_clip(self, clip_model: str) -> None:
        if clip_model != self.clip_model:
            raise InputError(f"corpus index was built with CLIP {self.clip_model!r}; this edit uses "
                             f"{clip_model!r}. Embeddings of different CLIP models are not comparable: "
                             "rebuild the index with `editrt corpus build`.")

    def save(self, path: str | os.PathLike) -> Path:
        tensors = {"embeddings": self.embeddings.float()}
        if self.s_codes is not None:
            tensors["s_codes"] = self.s_codes.float()
        meta = {"kind": "corpus_index", "clip_model": self.clip_model, "items": self.items, **self.provenance}
        return save_tensors(tensors, meta, Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike, *, clip_model: str | None = None) -> "CorpusIndex":
        tensors, meta = load_tensors(Path(path), "corpus index")
        if meta.get("kind") != "corpus_index" or "embeddings" not in tensors:
            raise WeightsError(f"{path} is not an editrt corpus index")
        meta = dict(meta)
        index = cls(tensors["embeddings"].float(), meta.pop("clip_model"), list(meta.pop("items")),
                    meta, tensors.get("s_codes"))
        if len(index) == 0:
            raise InputError(f"corpus index {path} is empty")
        if clip_model is not None:
            index.check_clip(clip_model)
        return index

    def retrieve(self, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices of the ``k`` most and ``k`` least cosine-similar images to ``query`` [D]."""
        n = len(self)
        if n == 0:
            raise InputError("the corpus index is empty: build it from a folder with images or from generator samples")
        if k < 1 or 2 * k > n:
            raise InputError(f"k={k} needs at least {2 * k} corpus images ({k} positives + {k} negatives); "
                             f"the corpus has {n}. Lower k or build a larger corpus.")
        if query.shape[-1] != self.embeddings.shape[1]:
            raise InputError(f"query of size {query.shape[-1]} does not match the corpus embeddings "
                             f"({self.embeddings.shape[1]})")
        sims = F.normalize(self.embeddings, dim=-1) @ F.normalize(query.float().cpu(), dim=-1)
        order = torch.argsort(sims, descending=True, stable=True)
        return order[:k], order[-k:].flip(0)


def _embed_batches(clip: "ClipNet", batches, total: int, progress: bool, desc: str) -> torch.Tensor:
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for x01 in batches:
            with torch.no_grad():
                out.append(clip.embed_image(x01.to(clip.mean.device)).cpu())
            bar.update(x01.shape[0])
    return torch.cat(out) if out else torch.zeros(0, clip.embed_dim)


def build_corpus_from_folder(clip: "ClipNet", folder: str | os.PathLike, *, batch_size: int = 32,
                             progress: bool = True) -> CorpusIndex:
    """Index every image under ``folder`` (recursive, sorted) with CLIP's standard preprocessing."""
    from ...imageio import load_image, pil_to_tensor

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"corpus folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"corpus folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")

    def batches():
        for i in range(0, len(files), batch_size):
            # Resize each image first so images of different sizes stack.
            yield torch.stack([resize_center_crop(pil_to_tensor(load_image(p)), clip.image_size) for p in files[i:i + batch_size]])

    emb = _embed_batches(clip, batches(), len(files), progress, "corpus")
    prov = {"source": "folder", "folder": str(folder.resolve()), "n": len(files), "created": utc_now()}
    return CorpusIndex(F.normalize(emb.float(), dim=-1), clip.name, [str(p.relative_to(folder)) for p in files], prov)


@torch.no_grad()
def build_corpus_from_generator(clip: "ClipNet", generator: "StyleGAN2", n: int, *, seed: int = 0,
                                psi: float = 0.7, cutoff: int = 8, batch_size: int = 16,
                                progress: bool = True) -> CorpusIndex:
    """Index ``n`` generator samples (z from ``RandomState(seed)``), keeping their conv S codes."""
    if n < 1:
        raise InputError(f"a generated corpus needs at least one sample, got n={n}")
    rs = np.random.RandomState(seed)
    codes: list[torch.Tensor] = []

    def batches():
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            z = torch.from_numpy(rs.randn(b, generator.style_dim)).float().to(generator_device(generator))
            code = generator.styles_from_w(generator.mapping(z, psi=psi, cutoff=cutoff))
            codes.append(code.conv_view().cpu())
            yield ((generator.synthesize(code).float() + 1) / 2).clamp(0, 1)

    emb = _embed_batches(clip, batches(), n, progress, "corpus")
    prov = {"source": "generator", "generator": generator_name(generator),
            "generator_fingerprint": generator_fingerprint(generator),
            "seed": seed, "psi": psi, "cutoff": cutoff, "n": n, "created": utc_now()}
    return CorpusIndex(F.normalize(emb.float(), dim=-1), clip.name, [f"seed:{seed}:{i}" for i in range(n)],
                       prov, torch.cat(codes))
