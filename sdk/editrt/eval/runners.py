"""What the protocol evaluates: the paper's baselines and any editing method of the SDK.

A runner maps a batch of query inputs to outputs: ``runner(images, queries, world)`` with
``images`` a list of [3, H, W] tensors in [0, 1] (sizes may differ) returns a list or a
[B, 3, h, w] tensor in [0, 1]. Its ``fingerprint`` identifies its settings: resumed runs only reuse results with the
same fingerprint.

- COPY: the input unchanged.
- ENCODE: the input through the VQGAN (encode, decode, FlexIT's soft clamp) at the method's size.
- RETRIEVE: a random held-out image of the target class.
- FlexIT, and :class:`FunctionRunner` to wrap any other callable
  ``fn(images, sources, targets) -> images``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, Sequence

import torch

from .queries import Query


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Runner:
    """Base class: ``name`` (a row of the summary), ``fingerprint``, ``batch_size``."""

    name = "runner"
    batch_size = 8

    @property
    def fingerprint(self) -> str:
        return _hash({"name": self.name})

    def settings(self) -> dict:
        return {}

    def __call__(self, images: list[torch.Tensor], queries: Sequence[Query], world):
        return list(images)


class CopyRunner(Runner):
    name = "COPY"
    batch_size = 32


class EncodeRunner(Runner):
    """VQGAN round trip at ``image_size`` (Resize + CenterCrop first, as FlexIT's input)."""

    name = "ENCODE"

    def __init__(self, vqgan, image_size: int, *, tag: str = ""):
        self.vqgan, self.image_size, self.tag = vqgan, int(image_size), tag

    @property
    def fingerprint(self) -> str:
        return _hash({"name": self.name, "size": self.image_size, "vqgan": self.tag})

    def settings(self) -> dict:
        return {"image_size": self.image_size, "vqgan": self.tag}

    @torch.no_grad()
    def __call__(self, images, queries, world):
        from ..models.preprocess import resize_center_crop

        dev = next(self.vqgan.parameters()).device
        x = torch.stack([resize_center_crop(im[None], self.image_size)[0] for im in images]).clamp(0, 1).to(dev)
        return self.vqgan.decode_clamped(self.vqgan.encode(x)).float().clamp(0, 1).cpu()


class RetrieveRunner(Runner):
    name = "RETRIEVE"
    batch_size = 32

    def __init__(self, seed: int = 0):
        self.seed = seed

    @property
    def fingerprint(self) -> str:
        return _hash({"name": self.name, "seed": self.seed})

    def __call__(self, images, queries, world):
        return [world.retrieve_image(q, self.seed) for q in queries]


class FlexITRunner(Runner):
    """FlexIT with the query's class names as source and target texts (no template, as the
    reference). A batch is edited jointly (independent per image); its seed is ``seed`` plus the
    first query id, so a resumed run redoes a batch exactly."""

    def __init__(self, editor, *, steps: int | None = None, seed: int = 0, batch_size: int = 8, name: str = "FlexIT",
                 weights_tag: str = ""):
        self.editor, self.steps, self.seed = editor, steps, seed
        self.batch_size, self.name, self.weights_tag = batch_size, name, weights_tag

    def _engines(self) -> dict:
        # only a non-default seam changes the fingerprint (results cached before it stay valid)
        e = getattr(self.editor, "engines", None)
        if e is None or (e.backend, e.precision) == ("torch", "fp32"):
            return {}
        return {"engines": f"{e.backend}/{e.precision}"}

    def settings(self) -> dict:
        return {"config": self.editor.config.to_dict(), "steps": self.steps or self.editor.config.steps,
                "seed": self.seed, "weights": self.weights_tag, **self._engines()}

    @property
    def fingerprint(self) -> str:
        return _hash({"name": self.name, "config": self.editor.config.fingerprint(), "steps": self.steps,
                      "seed": self.seed, "weights": self.weights_tag, "batch": self.batch_size, **self._engines()})

    def __call__(self, images, queries, world):
        res = self.editor.edit(list(images), [q.source for q in queries], [q.target for q in queries],
                               steps=self.steps, seed=self.seed + queries[0].query_id, snapshots=())
        return res.images.float().clamp(0, 1).cpu()


class FunctionRunner(Runner):
    """Any method as a runner: ``fn(images [B,3,H,W] in [0,1], sources, targets) -> images``."""

    def __init__(self, name: str, fn: Callable[[torch.Tensor, list[str], list[str]], torch.Tensor], *,
                 settings: dict | None = None, batch_size: int = 8):
        self.name, self.fn, self._settings, self.batch_size = name, fn, dict(settings or {}), batch_size

    def settings(self) -> dict:
        return self._settings

    @property
    def fingerprint(self) -> str:
        return _hash({"name": self.name, "settings": self._settings})

    def __call__(self, images, queries, world):
        out = self.fn(torch.stack(list(images)), [q.source for q in queries], [q.target for q in queries])
        return out.detach().float().clamp(0, 1).cpu()


__all__ = ["Runner", "CopyRunner", "EncodeRunner", "RetrieveRunner", "FlexITRunner", "FunctionRunner"]
