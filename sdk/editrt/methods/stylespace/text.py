"""Text directions in CLIP space: the 79 ImageNet templates, the per-class normalised template
mean (StyleCLIP ``zeroshot_classifier``) and ``GetDt`` (StyleCLIP global_torch/manipulate.py).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from ...errors import InputError, NumericalError
from ...models.clip import trim_padding

if TYPE_CHECKING:  # pragma: no cover
    from ...engines.stages import EngineSet
    from ...models.clip import ClipNet

log = logging.getLogger(__name__)


# CLIP's 80 ImageNet prompt templates without 'a photo of many {}.', which StyleCLIP and
# DeltaEdit comment out: 79 templates, in the reference order.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    'a bad photo of a {}.', 'a sculpture of a {}.', 'a photo of the hard to see {}.',
    'a low resolution photo of the {}.', 'a rendering of a {}.', 'graffiti of a {}.',
    'a bad photo of the {}.', 'a cropped photo of the {}.', 'a tattoo of a {}.',
    'the embroidered {}.', 'a photo of a hard to see {}.', 'a bright photo of a {}.',
    'a photo of a clean {}.', 'a photo of a dirty {}.', 'a dark photo of the {}.',
    'a drawing of a {}.', 'a photo of my {}.', 'the plastic {}.', 'a photo of the cool {}.',
    'a close-up photo of a {}.', 'a black and white photo of the {}.', 'a painting of the {}.',
    'a painting of a {}.', 'a pixelated photo of the {}.', 'a sculpture of the {}.',
    'a bright photo of the {}.', 'a cropped photo of a {}.', 'a plastic {}.',
    'a photo of the dirty {}.', 'a jpeg corrupted photo of a {}.', 'a blurry photo of the {}.',
    'a photo of the {}.', 'a good photo of the {}.', 'a rendering of the {}.',
    'a {} in a video game.', 'a photo of one {}.', 'a doodle of a {}.',
    'a close-up photo of the {}.', 'a photo of a {}.', 'the origami {}.',
    'the {} in a video game.', 'a sketch of a {}.', 'a doodle of the {}.', 'a origami {}.',
    'a low resolution photo of a {}.', 'the toy {}.', 'a rendition of the {}.',
    'a photo of the clean {}.', 'a photo of a large {}.', 'a rendition of a {}.',
    'a photo of a nice {}.', 'a photo of a weird {}.', 'a blurry photo of a {}.', 'a cartoon {}.',
    'art of a {}.', 'a sketch of the {}.', 'a embroidered {}.', 'a pixelated photo of a {}.',
    'itap of the {}.', 'a jpeg corrupted photo of the {}.', 'a good photo of a {}.',
    'a plushie {}.', 'a photo of the nice {}.', 'a photo of the small {}.',
    'a photo of the weird {}.', 'the cartoon {}.', 'art of the {}.', 'a drawing of the {}.',
    'a photo of the large {}.', 'a black and white photo of a {}.', 'the plushie {}.',
    'a dark photo of a {}.', 'itap of a {}.', 'graffiti of the {}.', 'a toy {}.', 'itap of my {}.',
    'a photo of a cool {}.', 'a photo of a small {}.', 'a tattoo of the {}.',
)

# A direction whose norm is below this is treated as zero (same prompt up to float noise).
ZERO_DIRECTION_NORM = 1e-6


_TEMPLATE_CACHE: "weakref.WeakKeyDictionary[object, OrderedDict]" = weakref.WeakKeyDictionary()
TEMPLATE_CACHE_SIZE = 1024  # classes kept per CLIP model (each a D-float vector)


@torch.no_grad()
def template_embeddings(clip: "ClipNet", classnames: Sequence[str],
                        templates: Sequence[str] = IMAGENET_TEMPLATES, *,
                        engines: "EngineSet | None" = None) -> torch.Tensor:
    """``zeroshot_classifier``: per class, normalise each templated prompt's embedding, average,
    normalise. Returns float32 [N, D] unit rows (on CPU).

    Encoding 79 prompts per class dominates a direction edit with a new prompt. Each class is
    one batch trimmed to its longest templated prompt (:func:`~editrt.models.clip.trim_padding`:
    ~15 of 77 tokens, same embeddings), and results are kept in a small LRU cache per CLIP
    model (frozen weights): a repeated neutral or target text costs nothing.
    ``engines``: the seam the CLIP text stage runs in (default: the torch module itself); the
    trimmed rows go to every backend (the exported text graphs take any token count up to the
    context length), and the cache is kept per backend and precision too.
    """
    if isinstance(classnames, str):
        classnames = [classnames]
    for name in classnames:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"empty prompt {name!r}: describe the edit target in words")
    cache = _TEMPLATE_CACHE.setdefault(clip, OrderedDict())
    where = ("torch", "fp32") if engines is None else (engines.backend, engines.precision)
    key_of = {c: (c, tuple(templates), where) for c in classnames}
    missing = list(dict.fromkeys(c for c in classnames if key_of[c] not in cache))
    if missing:
        if engines is None:
            encode = clip.encode_text
        else:
            from ...models.clip import ClipTextTower

            tower = ClipTextTower(clip)

            def encode(tokens: torch.Tensor) -> torch.Tensor:
                return engines.run(tower, tokens.to(engines.device))

        for c in missing:  # one batch per class: its templates have similar lengths
            tokens = trim_padding(clip.tokenize([t.format(c) for t in templates]))
            emb = F.normalize(encode(tokens).float(), dim=-1).cpu()
            cache[key_of[c]] = F.normalize(emb.mean(dim=0), dim=-1)
    for c in classnames:
        cache.move_to_end(key_of[c])
    out = torch.stack([cache[key_of[c]] for c in classnames])
    while len(cache) > TEMPLATE_CACHE_SIZE:
        cache.popitem(last=False)
    return out.clone()


def text_direction(clip: "ClipNet", target: str, neutral: str, *, normalize: bool = True,
                   engines: "EngineSet | None" = None) -> torch.Tensor:
    """``GetDt([target, neutral])``: t_target - t_neutral, unit length if ``normalize``.

    ``normalize=False`` is DeltaEdit's ``map_tool.GetDt`` (its channel mask uses the raw
    difference). A zero direction (same prompt, or prompts CLIP cannot tell apart) is an
    :class:`InputError`: the reference would divide by zero.
    """
    if target.strip() == neutral.strip():
        raise InputError(f"target text {target!r} equals the neutral text: the edit direction is zero; "
                         "describe the change (e.g. neutral 'face', target 'smiling face')")
    emb = template_embeddings(clip, [target, neutral], engines=engines)
    dt = emb[0] - emb[1]
    norm = float(dt.norm())
    log.debug("|dt| = %.4f for %r -> %r", norm, neutral, target)
    if not math.isfinite(norm):
        raise NumericalError("the CLIP text direction is not finite")
    if norm < ZERO_DIRECTION_NORM:
        raise InputError(f"target {target!r} and neutral {neutral!r} give the same CLIP embedding: "
                         "the edit direction is zero; change the target text")
    return dt / norm if normalize else dt
