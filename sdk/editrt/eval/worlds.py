"""Where the protocol's data and judges come from: ImageNet (real) or the toy world (offline).

A world gives the queries, each query's input image, a RETRIEVE image of the target class, the
label set of the accuracy (the target classes), and three judges: ``logits`` (accuracy),
``features`` (SFID/CSFID) and ``lpips`` (distance to the input), plus the reference feature
statistics of the target classes' training images.
"""

from __future__ import annotations

import abc
import logging
import os
import random
from pathlib import Path
from typing import Iterable, Iterator

import torch

from .. import imageio
from ..errors import InputError
from ..models.preprocess import resize_center_crop
from . import metrics as M
from .queries import Query, load_queries, read_queries, target_class_ids

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


class World(abc.ABC):
    """Interface of a world (see module docstring). Images are float [3, H, W] in [0, 1]."""

    name = "world"
    feature_size = M.LPIPS_SIZE  # eval.py feeds Inception the 256 px images
    classifier_size = 384  # eval.py: resize(384) for DeiT

    def __init__(self, *, classifier, features, lpips, device="cpu"):
        self.classifier, self.features_net, self.lpips_net = classifier, features, lpips
        self.device = torch.device(device)

    # data
    @abc.abstractmethod
    def queries(self, split: str, limit: int | None = None) -> list[Query]:
        """Queries of ``split`` (test/dev/all), sorted by id, the first ``limit``."""

    @abc.abstractmethod
    def class_ids(self) -> list[int]:
        """The accuracy's label set: all target classes of the full query set."""

    @abc.abstractmethod
    def input_image(self, q: Query) -> torch.Tensor:
        """The query's input image."""

    @abc.abstractmethod
    def retrieve_image(self, q: Query, seed: int = 0) -> torch.Tensor:
        """A random held-out image of the query's target class (RETRIEVE baseline)."""

    @abc.abstractmethod
    def reference_images(self, class_id: int, n: int) -> Iterator[torch.Tensor]:
        """Batches [b, 3, H, W] of up to ``n`` training images of ``class_id``."""

    # judges
    @torch.no_grad()
    def predict(self, images) -> torch.Tensor:
        """Images (list of [3,H,W] or [B,3,H,W]) -> [B] class ids, argmax over :meth:`class_ids`."""
        x = M.stack_resized(images, self.classifier_size).to(self.device)
        return M.restricted_argmax(self.classifier(x), self.class_ids())

    @torch.no_grad()
    def features(self, images) -> torch.Tensor:
        """Images -> [B, D] float64 features (SFID/CSFID)."""
        x = M.stack_resized(images, self.feature_size).to(self.device)
        return self.features_net(x).flatten(1).double().cpu()

    def lpips(self, outputs, inputs) -> torch.Tensor:
        """[B] LPIPS between outputs and inputs at 256 px."""
        return M.lpips_to_inputs(self.lpips_net, M.stack_resized(outputs, M.LPIPS_SIZE),
                                 M.stack_resized(inputs, M.LPIPS_SIZE), M.LPIPS_SIZE)

    def reference_stats(self, class_ids: Iterable[int], n_per_class: int, *, progress: bool = False) -> M.ReferenceStats:
        """Feature statistics of up to ``n_per_class`` training images of each class."""
        from tqdm.auto import tqdm

        feats, labels = [], []
        for c in tqdm(list(class_ids), desc="reference stats", unit="class", disable=not progress, leave=False):
            for batch in self.reference_images(c, n_per_class):
                f = self.features(batch)
                feats.append(f)
                labels += [c] * f.shape[0]
        if not feats:
            raise InputError(f"no training images found for the {self.name} reference statistics")
        return M.ReferenceStats.of(torch.cat(feats), labels)

    def describe(self) -> dict:
        return {"world": self.name}


# -- ImageNet -----------------------------------------------------------------------------------

def _list_images(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError:
        return []


class ImageNetWorld(World):
    """FlexIT's benchmark. ``root`` holds the validation images the CSV names
    (``root/wnid/ILSVRC2012_val_*.JPEG``, or ``root/val/wnid/...``); ``train_root`` the training
    images by wnid folder (default ``root/train``), used for the reference statistics."""

    name = "imagenet"

    def __init__(self, root: str | os.PathLike, *, classifier, features, lpips, train_root=None,
                 queries_csv=None, device="cpu"):
        super().__init__(classifier=classifier, features=features, lpips=lpips, device=device)
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"--imagenet-root {root} is not a folder")
        self._all = read_queries(queries_csv)
        probe = self._all[0].path
        self.val_root = root if (root / probe).exists() or not (root / "val").is_dir() else root / "val"
        self.train_root = Path(train_root) if train_root else root / "train"
        self._csv = queries_csv
        # class id -> wnid, from the query paths (every target class is also a source class)
        self.wnid = {q.source_id: q.path.split("/")[0] for q in self._all}

    def queries(self, split, limit=None):
        return load_queries(split, limit=limit, path=self._csv)

    def class_ids(self):
        return target_class_ids(self._all)

    def _load(self, path: Path) -> torch.Tensor:
        return imageio.pil_to_tensor(imageio.load_image(path))

    def input_image(self, q):
        path = self.val_root / q.path
        if not path.is_file():
            raise InputError(f"query {q.query_id}: input image {path} not found; --imagenet-root must hold "
                             "the ImageNet validation images in wnid folders (as the query CSV names them)")
        return self._load(path)

    def retrieve_image(self, q, seed=0):
        """A random validation image of the target class, never the query's own image."""
        folder = self.val_root / self.wnid[q.target_id]
        own = (self.val_root / q.path).resolve()
        candidates = [p for p in _list_images(folder) if p.resolve() != own]
        if not candidates:
            raise InputError(f"RETRIEVE: no validation image of class {q.target} in {folder}")
        return self._load(random.Random(seed * 1_000_003 + q.query_id).choice(candidates))

    def reference_images(self, class_id, n):
        folder = self.train_root / self.wnid[class_id]
        files = _list_images(folder)
        if not files:
            raise InputError(f"no training images of class {class_id} in {folder}: pass --imagenet-train "
                             "(ImageNet train in wnid folders) or precomputed statistics with --stats")
        files = random.Random(class_id).sample(files, min(n, len(files)))
        for start in range(0, len(files), 32):
            batch = [resize_center_crop(self._load(p)[None], M.LPIPS_SIZE)[0] for p in files[start:start + 32]]
            yield torch.stack(batch)

    def describe(self):
        return {"world": self.name, "val_root": str(self.val_root), "train_root": str(self.train_root)}


# -- toy world ----------------------------------------------------------------------------------

class ToyWorld(World):
    """The same protocol on the procedural toy world (``editrt.toy``): the toy classifier stands in
    for DeiT (accuracy) and its pooled features for Inception (SFID/CSFID)."""

    name = "toy"
    feature_size = classifier_size = 64  # the toy classifier's resolution

    def __init__(self, models=None, device="cpu"):
        from ..toy.models import load_toy_models

        self.models = models or load_toy_models(device=device)
        super().__init__(classifier=self.models.classifier, features=self.models.classifier.features,
                         lpips=self.models.lpips_metric, device=device)

    def queries(self, split, limit=None):
        from ..toy import world as TW
        from .queries import select

        qs = [Query(query_id=q.query_id, source=q.source, source_id=q.source_id, target=q.target,
                    target_id=q.target_id, is_test=q.is_test, kind=q.kind) for q in TW.toy_queries()]
        return select(qs, split, limit)

    def class_ids(self):
        from ..toy import world as TW

        return list(range(len(TW.CLASSES)))

    def _toy_query(self, q: Query):
        from ..toy import world as TW

        return TW.ToyQuery(q.query_id, q.source_id, q.target_id, q.kind, q.is_test)

    def input_image(self, q):
        from ..toy import world as TW

        return TW.query_image(self._toy_query(q))

    def retrieve_image(self, q, seed=0):
        from ..toy import world as TW

        return TW.make_image(q.target_id, TW.STREAM_RETRIEVE, q.query_id + 1000 * seed)

    def reference_images(self, class_id, n):
        from ..toy import world as TW

        yield from TW.iter_class_images(class_id, n)


__all__ = ["World", "ImageNetWorld", "ToyWorld"]
