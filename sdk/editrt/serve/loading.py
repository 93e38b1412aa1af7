"""Load the editors a server runs, once, before it accepts requests.

``toy``: FlexIT runs the trained toy-world CLIP and VQGAN shipped with the package
(:mod:`editrt.toy.models`); the direction methods run the seeded random ``tiny`` StyleGAN2 until
a trained toy generator ships. ``random_weights``: every network is its seeded random ``tiny``
variant. Otherwise the real checkpoints are resolved as the SDK does (``weights_dir`` or the
EDITRT_HOME store).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ..cli_args import BACKEND_CHOICES
from ..errors import InputError
from . import protocol as P

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where the served networks come from and how they run."""

    toy: bool = False
    random_weights: bool = False
    weights_dir: Path | None = None
    corpus: Path | None = None  # FEU corpus index (editrt corpus build); built in memory when random
    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt (engines built on first use)
    precision: str = "fp32"  # graph precision of the engines (engine backends only)
    device: str = "cpu"
    seed: int = 0  # seed of random weights
    allow_pickle: bool = False

    def __post_init__(self):
        if self.toy and self.random_weights:
            raise InputError("choose --toy or --random-weights, not both")
        if self.backend not in BACKEND_CHOICES:
            raise InputError(f"unknown backend {self.backend!r}; use {', '.join(BACKEND_CHOICES)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        if self.backend in ("auto", "torch") and self.precision != "fp32":
            raise InputError(f"--precision applies to --backend onnxruntime and tensorrt; {self.backend} runs fp32")

    def common(self) -> dict:
        return dict(weights=self.weights_dir, device=self.device, allow_pickle=self.allow_pickle,
                    backend=self.backend, precision=self.precision)


def load_editors(methods, source: ModelSource) -> dict:
    """The SDK editor of each method (``global``, ``feu``, ``deltaedit``, ``flexit``), warmed up:
    relevance matrix and channel statistics resolved, so that no request pays for them. The
    direction editors share one generator, CLIP, relevance matrix and statistics (torch backend)."""
    editors, shared = {}, {}
    for method in methods:
        if method == "flexit":
            editor = _load_flexit(source)
        elif method in P.DIRECTION_METHODS:
            editor = _load_direction(method, source, shared)
            if not shared:
                shared.update(fs3=editor.fs3, stats=editor.stats)  # resolved (or computed) once, now
                if editor.backend == "torch":
                    shared.update(generator=editor.generator, clip=editor.clip)
        else:
            raise InputError(f"unknown method {method!r}; serve any of {', '.join(P.METHODS)}")
        editors[method] = editor
    return editors


def _load_flexit(source: ModelSource):
    from ..config import FlexITConfig
    from ..methods.flexit import FlexIT

    kw = source.common()
    if source.toy:
        from ..toy.models import TOY_FLEXIT, load_toy_models

        models = load_toy_models(device=source.device)
        return FlexIT(TOY_FLEXIT, models=models.flexit_models(), **kw)
    if source.random_weights:
        return FlexIT(FlexITConfig.preset("tiny"), random_init=True, seed=source.seed, **kw)
    return FlexIT(FlexITConfig(), **kw)


def _load_direction(method: str, source: ModelSource, shared: dict):
    from ..config import DeltaEditConfig, FEUConfig, GlobalDirectionConfig
    from ..methods.stylespace.deltaedit import DeltaEdit
    from ..methods.stylespace.feu import FEU
    from ..methods.stylespace.global_direction import GlobalDirection

    cls, config_cls = {"global": (GlobalDirection, GlobalDirectionConfig), "feu": (FEU, FEUConfig),
                       "deltaedit": (DeltaEdit, DeltaEditConfig)}[method]
    kw = source.common() | shared
    if method == "feu":
        if source.corpus is None and not (source.toy or source.random_weights):
            raise InputError("serving feu with real weights needs --corpus INDEX (build one with `editrt corpus build`)")
        kw["corpus"] = source.corpus
    elif source.corpus is not None:
        log.debug("--corpus applies to feu only; %s ignores it", method)
    if source.toy or source.random_weights:
        if source.toy:
            log.warning("--toy: %s serves the seeded random tiny StyleGAN2: its photo path needs an e4e encoder, "
                        "which the trained toy generator lacks (editrt demo shows the trained toy world)", method)
        return cls(config=config_cls.preset("tiny"), random_init=True, seed=source.seed, **kw)
    return cls(config=config_cls(), **kw)


def clip_of(editor):
    """The CLIP net an editor embeds with (FlexIT: the first of its ensemble)."""
    from ..models.clip import ClipEnsemble

    clip = editor.clip
    return clip.nets[0] if isinstance(clip, ClipEnsemble) else clip


__all__ = ["ModelSource", "load_editors", "clip_of", "PRECISIONS"]
