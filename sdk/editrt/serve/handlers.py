"""Model callables: one batch of Triton requests in, one response per request out.

Each callable takes the list of requests Triton's dynamic batcher formed (PyTriton calls it with
``List[Request]``, each a dict of numpy arrays with a leading batch dimension of 1) and answers in
three steps:

1. parse every request on its own (image decoding, prompt and number checks), so a bad request
   fails alone;
2. run the SDK: direction edits whose parameters are equal (same target, neutral, strengths,
   beta/threshold/k and kind of source) run as *one* ``edit`` call over the stacked sources
   (``fuse=True``), the speed-up dynamic batching exists for; FlexIT runs one ``edit`` per
   request (its augmentation views are drawn per batch, so a fused batch would change each
   result);
3. encode results, or the error of each failed request (see :mod:`editrt.serve.protocol`).

A fused edit equals the single-request SDK call up to float rounding of batched convolutions
(about 1e-5 on the [-1, 1] images of the tiny generator); a request alone in its group, or every
request with ``fuse=False``, is bitwise the SDK call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..errors import EditrtError, InputError
from . import protocol as P

log = logging.getLogger(__name__)

MAX_FLEXIT_STEPS = 2000  # over ten times the paper's 160: a bound on one request's work
Request = dict[str, np.ndarray]
Response = dict[str, np.ndarray]


def answer(requests: Sequence[Request], parse: Callable[[Request], Any],
           execute: Callable[[list[tuple[int, Any]]], Iterable[tuple[int, Any]]],
           encode: Callable[[Any, int], Response], outputs: Sequence[P.TensorSpec]) -> list[Response]:
    """Parse, execute and encode one Triton batch (steps 1-3 of the module docstring).

    ``execute`` gets ``[(index, parsed)]`` and yields ``(index, result or exception)``. A lone
    failed request raises, so Triton sends its own error response with editrt's message.
    """
    results: list[Any] = [None] * len(requests)
    jobs = []
    for i, request in enumerate(requests):
        try:
            if int(np.asarray(next(iter(request.values()))).shape[0]) != 1:
                raise InputError("send one edit per request (batch dimension 1); Triton batches requests itself")
            jobs.append((i, parse(request)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes that request's error
            results[i] = exc
    for i, result in execute(jobs):
        results[i] = result
    for i, r in enumerate(results):
        if isinstance(r, BaseException) and not isinstance(r, EditrtError):
            log.error("request %d of a batch of %d failed", i, len(requests), exc_info=r)
    if len(requests) == 1 and isinstance(results[0], BaseException):
        raise P.ServedError(P.error_payload(results[0])) from results[0]
    return [failed_response(r, outputs) if isinstance(r, BaseException) else encode(r, len(requests))
            for r in results]


def failed_response(exc: BaseException, outputs: Sequence[P.TensorSpec]) -> Response:
    out = {spec.name: P.placeholder(spec) for spec in outputs}
    out["error"] = P.bytes_tensor(P.error_payload(exc))
    return out


def _ok() -> np.ndarray:
    return P.bytes_tensor(b"")


def _json(data: dict) -> np.ndarray:
    return P.bytes_tensor(json.dumps(data, default=_json_default))


def _json_default(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return str(value)


def _optional(request: Request, name: str, convert, *args):
    return convert(request[name], name, *args) if name in request else None


# -- direction edits ---------------------------------------------------------------------------------
@dataclasses.dataclass
class StyleJob:
    """One parsed direction-edit request: its source and its edit parameters."""

    kind: str  # "image" (a photo, inverted with e4e) or "code" (seed or latent)
    source: Any  # PIL image or StyleCode of batch 1
    params: dict[str, Any]  # keyword arguments of run_style_edit

    @property
    def group(self) -> tuple:
        return (self.kind,) + tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                           for k, v in self.params.items()))


def run_style_edit(editor, method: str, source, params: dict[str, Any]):
    """The SDK call behind a served direction edit (``params`` as :class:`StyleJob`)."""
    strength = params.get("strength")
    if method == "global":
        return editor.edit(source, params["target"], params.get("neutral"), alpha=strength, beta=params.get("beta"))
    if method == "feu":
        return editor.edit(source, params["target"], alpha=strength, beta=params.get("beta"), k=params.get("k"))
    if method == "deltaedit":
        return editor.edit(source, params["target"], params.get("neutral"), strength=strength,
                           threshold=params.get("threshold"))
    raise InputError(f"unknown direction method {method!r}; use one of {', '.join(P.DIRECTION_METHODS)}")


def _layout_json(layout) -> list[dict]:
    return [dataclasses.asdict(layer) for layer in layout.layers]


class StyleEditHandler:
    """Callable of a ``global``, ``feu`` or ``deltaedit`` model around one loaded editor."""

    def __init__(self, method: str, editor, *, fuse: bool = True):
        if method not in P.DIRECTION_METHODS:
            raise InputError(f"unknown direction method {method!r}")
        self.method, self.editor, self.fuse = method, editor, fuse
        self.allowed = {s.name for s in P.INPUTS[method]}
        self._layout = _layout_json(editor.generator.layout)

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        return answer(requests, self.parse, self.execute, self.encode, P.OUTPUTS[self.method])

    # 1. parse
    def parse(self, request: Request) -> StyleJob:
        given = [n for n in ("image", "seed", "latent") if n in request]
        if len(given) != 1:
            raise InputError(f"give exactly one source (image, seed or latent), got {given or 'none'}")
        params: dict[str, Any] = {"target": P.text_value(request["target"], "target")}
        for name, convert in (("neutral", P.text_value), ("strength", P.floats_value), ("beta", P.float_value),
                              ("threshold", P.float_value), ("k", P.int_value)):
            if name in request and name in self.allowed:
                params[name] = convert(request[name], name)
        if given == ["image"]:
            return StyleJob("image", P.decode_image(request["image"]), params)
        if given == ["seed"]:
            code = self.editor.codes_from_seeds([P.int_value(request["seed"], "seed")])
        else:
            code = self._code_from_latent(request["latent"])
        return StyleJob("code", code, params)

    def _code_from_latent(self, value: np.ndarray):
        g = self.editor.generator
        w = np.asarray(value, dtype=np.float32)
        if w.ndim != 3 or w.shape[2] != g.style_dim or w.shape[1] not in (1, g.n_latent):
            raise InputError(f"latent must be W+ [{g.n_latent}, {g.style_dim}] or W [1, {g.style_dim}], "
                             f"got {list(w.shape[1:])}")
        if not np.isfinite(w).all():
            raise InputError("latent contains NaN or infinite values")
        t = torch.from_numpy(w.copy())
        code, _ = self.editor.encode(t[:, 0] if w.shape[1] == 1 else t)
        return code

    # 2. execute
    def execute(self, jobs: list[tuple[int, StyleJob]]) -> Iterable[tuple[int, Any]]:
        from ..models.stylegan2 import StyleCode

        groups: dict[tuple, list[tuple[int, StyleJob]]] = defaultdict(list)
        for i, job in jobs:
            groups[job.group if self.fuse else (i,)].append((i, job))
        for members in groups.values():
            first = members[0][1]
            sources = [job.source for _, job in members]
            try:
                source = StyleCode.cat(sources) if first.kind == "code" else (
                    sources if len(sources) > 1 else sources[0])
                result = run_style_edit(self.editor, self.method, source, first.params)
            except Exception as exc:  # noqa: BLE001 - shared parameters: the group shares the error
                for i, _ in members:
                    yield i, exc
                continue
            for n, (i, _) in enumerate(members):
                yield i, (_split(result, n), len(members))

    # 3. encode
    def encode(self, item, batch_requests: int) -> Response:
        result, fused = item
        images = result.images[0].float().cpu()  # [K, 3, H, W]
        codes = torch.cat([c.flat().float().cpu() for c in result.codes])  # [K, S]
        summary = {"method": result.method, "config": result.config, "strengths": list(result.strengths),
                   "channels_changed": result.channels_changed,
                   "extras": {k: v for k, v in result.extras.items() if _json_safe(v)},
                   "layout": self._layout, "batch": {"requests": batch_requests, "fused": fused}}
        return {"image": P.bytes_tensor(P.encode_png(result.grid())),
                "images": images.numpy()[None], "source": result.source[0].float().cpu().numpy()[None],
                "codes": codes.numpy()[None], "direction": result.direction.float().cpu().numpy()[None],
                "summary": _json(summary), "error": _ok()}


def _json_safe(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _split(result, n: int):
    """Item ``n`` of a batched StyleEditResult as a batch-1 StyleEditResult."""
    return dataclasses.replace(result, images=result.images[n:n + 1], source=result.source[n:n + 1],
                               codes=[c[n:n + 1] for c in result.codes])


# -- FlexIT --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FlexITJob:
    image: Any  # PIL image
    source: str
    target: str
    steps: int | None
    seed: int


class FlexITHandler:
    """Callable of the ``flexit`` model: one SDK ``edit`` per request, in arrival order."""

    method = "flexit"

    def __init__(self, editor):
        self.editor = editor

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        return answer(requests, self.parse, self.execute, self.encode, P.OUTPUTS["flexit"])

    def parse(self, request: Request) -> FlexITJob:
        steps = _optional(request, "steps", P.int_value)
        if steps is not None and not 0 <= steps <= MAX_FLEXIT_STEPS:
            raise InputError(f"steps must lie in [0, {MAX_FLEXIT_STEPS}], got {steps}")
        seed = _optional(request, "seed", P.int_value)
        return FlexITJob(P.decode_image(request["image"]), P.text_value(request["source"], "source"),
                         P.text_value(request["target"], "target"), steps, 0 if seed is None else seed)

    def execute(self, jobs: list[tuple[int, FlexITJob]]) -> Iterable[tuple[int, Any]]:
        for i, job in jobs:
            try:
                yield i, self.editor.edit(job.image, job.source, job.target, steps=job.steps, seed=job.seed)
            except Exception as exc:  # noqa: BLE001
                yield i, exc

    def encode(self, result, batch_requests: int) -> Response:
        summary = result.report() | {"history": result.history, "step_seconds": result.step_seconds,
                                     "batch": {"requests": batch_requests, "fused": 1}}
        return {"image": P.bytes_tensor(P.encode_png(result.images[0])),
                "images": result.images.float().cpu().numpy()[None], "summary": _json(summary), "error": _ok()}


# -- CLIP embeddings -------------------------------------------------------------------------------------
class ClipHandler:
    """Callable of ``clip_text`` / ``clip_image``: unit CLIP embeddings (texts fused into one call)."""

    def __init__(self, kind: str, clip, *, fuse: bool = True):
        if kind not in P.CLIP_MODELS:
            raise InputError(f"unknown CLIP model {kind!r}")
        self.kind, self.clip, self.fuse = kind, clip, fuse
        self.method = kind

    def __call__(self, requests: Sequence[Request]) -> list[Response]:
        return answer(requests, self.parse, self.execute, self.encode, P.OUTPUTS[self.kind])

    def parse(self, request: Request):
        if self.kind == "clip_text":
            return P.text_value(request["text"], "text")
        from ..imageio import pil_to_tensor

        return pil_to_tensor(P.decode_image(request["image"]))

    @torch.no_grad()
    def execute(self, jobs: list[tuple[int, Any]]) -> Iterable[tuple[int, Any]]:
        if self.kind == "clip_text" and self.fuse and len(jobs) > 1:
            try:
                emb = self.clip.embed_text([t for _, t in jobs])
                for n, (i, _) in enumerate(jobs):
                    yield i, emb[n]
                return
            except InputError:
                pass  # one over-long prompt: fall back to one call per text, so only it fails
        for i, job in jobs:
            try:
                emb = self.clip.embed_text([job]) if self.kind == "clip_text" else self.clip.embed_image(job[None])
                yield i, emb[0]
            except Exception as exc:  # noqa: BLE001
                yield i, exc

    def encode(self, embedding: torch.Tensor, batch_requests: int) -> Response:
        return {"embedding": embedding.float().cpu().numpy()[None], "error": _ok()}


__all__ = ["StyleEditHandler", "FlexITHandler", "ClipHandler", "run_style_edit", "answer", "MAX_FLEXIT_STEPS"]
