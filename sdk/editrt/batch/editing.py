"""One manifest row -> one edited image, with the editors kept loaded between rows.

:class:`RowEditor` is what runs a row in this process and inside every Ray actor: it builds an
editor per (method, config) on first use (at most :data:`MAX_EDITORS` kept) and turns an
editrt error of a row (unreadable image, empty prompt, bad option) into that row's result.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import time
from typing import Any, Callable

from ..errors import EditrtError, InputError
from .manifest import METHODS, Row

log = logging.getLogger(__name__)

MAX_EDITORS = 4  # editors (loaded models) one worker keeps; rows usually share a handful of configs
EDIT_OPTIONS = {"flexit": ("steps",), "global": ("beta",), "feu": ("beta", "k"), "deltaedit": ("threshold",)}


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """Job-wide settings: where weights come from and the models of each method.

    preset: FlexITConfig preset (default: the paper's; ``tiny`` with ``random_init``).
    generator / clip: StyleGAN2 and CLIP names of the direction methods (default: their config's;
    ``tiny`` with ``random_init``). fs3 / stats / corpus: files of the direction methods.
    """

    weights: str | None = None
    random_init: bool = False
    device: str = "cpu"
    download: bool = False
    allow_pickle: bool = False
    preset: str | None = None
    generator: str | None = None
    clip: str | None = None
    fs3: str | None = None
    stats: str | None = None
    corpus: str | None = None

    def fingerprint(self) -> str:
        """Hash of the options that change outputs (not the device, nor download/pickle permissions)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("device", "download", "allow_pickle")}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_row(row: Row) -> None:
    """The row-level checks that need no model: raise InputError naming the problem."""
    if row.problem:
        raise InputError(row.problem)
    if row.method not in METHODS:
        raise InputError(f"row {row.id}: unknown method {row.method!r}; use {', '.join(METHODS)}")
    if not row.target:
        raise InputError(f"row {row.id}: the target text is empty")
    if row.method == "flexit":
        if row.image is None:
            raise InputError(f"row {row.id}: FlexIT needs an image")
        if not row.source:
            raise InputError(f"row {row.id}: FlexIT needs a source text describing the image")
        if row.strength is not None:
            raise InputError(f"row {row.id}: strength applies to global, feu and deltaedit; FlexIT's trade-off is "
                             "set by its config (settings, e.g. lambda_lpips)")
    if row.method == "feu" and row.source:
        raise InputError(f"row {row.id}: FEU needs no source (neutral) text; leave it empty")


class RowEditor:
    """``editor(row) -> result dict`` (``status`` ok/error; ``image`` [3, H, W] in [0, 1] when ok)."""

    def __init__(self, options: "BatchOptions"):
        self.options = options
        self._editors: collections.OrderedDict[tuple, Any] = collections.OrderedDict()

    def __call__(self, row: Row) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            check_row(row)
            image, info = (self._flexit if row.method == "flexit" else self._style)(row)
        except EditrtError as exc:
            log.info("row %s failed: %s", row.id, exc)
            return {"status": "error", "error": str(exc), "error_type": type(exc).__name__,
                    "seconds": time.perf_counter() - t0}
        return {"status": "ok", "image": image, "seconds": time.perf_counter() - t0, **info}

    def _editor(self, key: tuple, build: Callable[[], Any]):
        if key in self._editors:
            self._editors.move_to_end(key)
            return self._editors[key]
        editor = self._editors[key] = build()
        while len(self._editors) > MAX_EDITORS:
            self._editors.popitem(last=False)
        return editor

    def _split_settings(self, row: Row) -> tuple[dict, dict]:
        """(config changes, edit options) of the row's settings."""
        edit_keys = EDIT_OPTIONS[row.method]
        return ({k: v for k, v in row.settings.items() if k not in edit_keys},
                {k: v for k, v in row.settings.items() if k in edit_keys})

    def _load_kw(self) -> dict:
        o = self.options
        return dict(weights=o.weights, random_init=o.random_init, device=o.device, download=o.download,
                    allow_pickle=o.allow_pickle)

    def _flexit(self, row: Row):
        from ..config import FlexITConfig
        from ..methods.flexit import FlexIT

        o = self.options
        base = FlexITConfig.preset(o.preset) if o.preset else (FlexITConfig.preset("tiny") if o.random_init
                                                                  else FlexITConfig())
        changes, edit = self._split_settings(row)
        cfg = base.replace(**changes)
        editor = self._editor(("flexit", cfg.fingerprint()), lambda: FlexIT(cfg, **self._load_kw()))
        res = editor.edit(row.image, row.source, row.target, steps=edit.get("steps"), seed=row.seed, snapshots=())
        return res.images[0].float().clamp(0, 1).cpu(), {"steps": len(res.history)}

    def _style(self, row: Row):
        from ..cli_style import style_method_config

        o = self.options
        names = {k: v or ("tiny" if o.random_init else None) for k, v in (("generator", o.generator),
                                                                         ("clip", o.clip))}
        changes, edit = self._split_settings(row)
        cfg = style_method_config(row.method, random_init=o.random_init, **names).replace(**changes)
        editor = self._editor((row.method, cfg.fingerprint()), lambda: self._build_style(row.method, cfg))
        source = row.image if row.image is not None else editor.codes_from_seeds([row.seed])
        if row.method == "global":
            res = editor.edit(source, row.target, row.source, alpha=row.strength, **edit)
        elif row.method == "feu":
            res = editor.edit(source, row.target, alpha=row.strength, **edit)
        else:
            res = editor.edit(source, row.target, row.source, strength=row.strength, **edit)
        image = res.grid(include_source=False)
        return image.float().cpu(), {"channels_changed": int(res.channels_changed),
                                     "strengths": list(res.strengths)}

    def _build_style(self, method: str, cfg):
        from ..methods.stylespace.deltaedit import DeltaEdit
        from ..methods.stylespace.feu import FEU
        from ..methods.stylespace.global_direction import GlobalDirection

        o = self.options
        kw = dict(config=cfg, fs3=o.fs3, stats=o.stats, **self._load_kw())
        if method == "feu":
            return FEU(corpus=o.corpus, **kw)
        return (GlobalDirection if method == "global" else DeltaEdit)(**kw)


__all__ = ["BatchOptions", "RowEditor", "check_row", "EDIT_OPTIONS", "MAX_EDITORS"]
