"""A procedural world of coloured shapes: images, captions, clusters and transformation queries.

Classes are ``colour x shape`` (6 x 4 = 24), e.g. "red circle". Like FlexIT's ImageNet
clusters, a query only changes a class into a related one: the *shape cluster* of a class holds
the same shape in other colours (a colour change), its *colour cluster* the same colour in other
shapes (a shape change). Every class thus has exactly 5 + 3 = 8 related classes, one query each
(FlexIT samples 8 sources per target too), 192 queries in all, split 4/4 per target into a test
and a dev half (1092/1092 in the reference).

Images are 64x64 RGB in [0, 1]: a desaturated two-tone gradient with low-frequency texture as
background, one antialiased object of random size, position, rotation, colour jitter and shading.
Every image is a pure function of its (stream, class, index) triple, so queries, retrieval images
and training images are reproducible and never overlap.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np
import torch

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {  # name -> RGB in [0, 1]
    "red": (0.86, 0.16, 0.16),
    "orange": (0.95, 0.55, 0.08),
    "yellow": (0.92, 0.86, 0.16),
    "green": (0.16, 0.70, 0.24),
    "blue": (0.16, 0.32, 0.88),
    "purple": (0.60, 0.20, 0.80),
}
COLOUR_NAMES = tuple(COLOURS)
CLASSES = tuple(f"{c} {s}" for s in SHAPES for c in COLOUR_NAMES)  # index = shape * 6 + colour

# Disjoint seed streams: the same class index never gives the same image in two roles.
STREAM_TRAIN, STREAM_QUERY, STREAM_RETRIEVE, STREAM_STATS, STREAM_DEMO = 1, 2, 3, 4, 5

CAPTION_TEMPLATES = (
    "{cs}", "{a} {cs}", "a photo of {a} {cs}", "an image of {a} {cs}", "{a} {cs} on a grey background",
    "a picture of {a} {cs}", "{a} {s} that is {c}", "a {c} coloured {s}", "a drawing of {a} {cs}",
    "{a} {cs} in the picture",
)


def class_index(name: str) -> int:
    """``"red circle"`` -> its index in :data:`CLASSES`; unknown names raise ValueError."""
    try:
        return CLASSES.index(name.strip().lower())
    except ValueError:
        raise ValueError(f"unknown toy class {name!r}; known: {', '.join(CLASSES)}") from None


def colour_of(idx: int) -> str:
    return COLOUR_NAMES[idx % len(COLOUR_NAMES)]


def shape_of(idx: int) -> str:
    return SHAPES[idx // len(COLOUR_NAMES)]


def related_classes(idx: int) -> list[tuple[int, str]]:
    """The 8 classes a query may change ``idx`` into (or from), with their cluster kind."""
    out = []
    for j in range(len(CLASSES)):
        if j == idx:
            continue
        if shape_of(j) == shape_of(idx):
            out.append((j, "colour"))
        elif colour_of(j) == colour_of(idx):
            out.append((j, "shape"))
    return out


def clusters() -> dict[str, list[int]]:
    """Cluster name -> class indices: 4 shape clusters (colour changes) and 6 colour clusters."""
    out = {f"{s}s": [i for i in range(len(CLASSES)) if shape_of(i) == s] for s in SHAPES}
    out.update({f"{c} things": [i for i in range(len(CLASSES)) if colour_of(i) == c] for c in COLOUR_NAMES})
    return out


def caption(idx: int, rng: np.random.Generator) -> str:
    c, s = colour_of(idx), shape_of(idx)
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    article = "an" if c[0] in "aeiou" else "a"
    return template.format(cs=f"{c} {s}", a=article, c=c, s=s)


# -- rendering ----------------------------------------------------------------------------------

def _sdf(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Signed distance-like field (pixels, < 0 inside) of a shape of radius ``r`` at the origin."""
    if shape == "circle":
        return np.hypot(x, y) - r
    if shape == "square":
        h = 0.82 * r
        qx, qy = np.abs(x) - h, np.abs(y) - h
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return outside + np.minimum(np.maximum(qx, qy), 0)
    if shape == "triangle":  # equilateral, apex down in image coordinates, inradius 0.575 r
        rin = 0.575 * r
        d = None
        for ang in (math.pi / 2 + math.pi, math.pi / 2 + math.pi / 3, math.pi / 2 - math.pi / 3):
            nx, ny = math.cos(ang), math.sin(ang)
            e = x * nx + y * ny - rin
            d = e if d is None else np.maximum(d, e)
        return d
    if shape == "cross":
        arm, half = 0.95 * r, 0.33 * r
        def box(hx, hy):
            qx, qy = np.abs(x) - hx, np.abs(y) - hy
            return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        return np.minimum(box(arm, half), box(half, arm))
    raise ValueError(f"unknown shape {shape!r}")


@dataclasses.dataclass(frozen=True)
class Scene:
    """Parameters of one image (all in pixels / [0, 1] colours)."""

    cls: int
    cx: float
    cy: float
    radius: float
    angle: float
    colour: tuple[float, float, float]
    bg_a: tuple[float, float, float]
    bg_b: tuple[float, float, float]
    bg_angle: float
    texture_seed: int


def sample_scene(cls: int, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Scene:
    radius = float(rng.uniform(0.16, 0.30) * size)
    margin = radius * 1.1 + 1
    base = np.array(COLOURS[colour_of(cls)])
    colour = np.clip(base + rng.normal(0, 0.04, 3), 0, 1)

    def grey():  # desaturated background tones, so "colour" names the object
        v = rng.uniform(0.25, 0.8)
        return tuple(np.clip(v + rng.normal(0, 0.04, 3), 0, 1).tolist())

    return Scene(cls=cls, cx=float(rng.uniform(margin, size - margin)), cy=float(rng.uniform(margin, size - margin)),
                 radius=radius, angle=float(rng.uniform(0, 2 * math.pi)), colour=tuple(colour.tolist()),
                 bg_a=grey(), bg_b=grey(), bg_angle=float(rng.uniform(0, 2 * math.pi)),
                 texture_seed=int(rng.integers(2**31)))


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Scene -> float32 [size, size, 3] in [0, 1]."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    gx, gy = np.meshgrid(coords, coords)
    # background: gradient along a random direction + smooth low-frequency texture
    u = ((gx - size / 2) * math.cos(scene.bg_angle) + (gy - size / 2) * math.sin(scene.bg_angle)) / size + 0.5
    u = np.clip(u, 0, 1)[..., None]
    img = (1 - u) * np.array(scene.bg_a, np.float32) + u * np.array(scene.bg_b, np.float32)
    trng = np.random.default_rng(scene.texture_seed)
    tex = torch.from_numpy(trng.normal(0, 0.05, (1, 1, 6, 6)).astype(np.float32))
    tex = torch.nn.functional.interpolate(tex, size=(size, size), mode="bicubic", align_corners=False)[0, 0].numpy()
    img = img + tex[..., None]
    # object: rotate the frame, antialiased coverage from the distance field, radial shading
    dx, dy = gx - scene.cx, gy - scene.cy
    ca, sa = math.cos(scene.angle), math.sin(scene.angle)
    rx, ry = ca * dx + sa * dy, -sa * dx + ca * dy
    shape = shape_of(scene.cls)
    if shape == "triangle":  # keep triangles upright-ish: small rotations only
        a = (scene.angle % (2 * math.pi / 3)) - math.pi / 3
        ca, sa = math.cos(a * 0.3), math.sin(a * 0.3)
        rx, ry = ca * dx + sa * dy, -sa * dx + ca * dy
    alpha = np.clip(0.5 - _sdf(shape, rx, ry, scene.radius), 0, 1)[..., None]
    shade = 1.0 + 0.18 * (-(dx + dy) / (2 * scene.radius)).clip(-1, 1)[..., None]
    obj = np.clip(np.array(scene.colour, np.float32) * shade, 0, 1)
    img = (1 - alpha) * img + alpha * obj
    return np.clip(img, 0, 1).astype(np.float32)


def image_rng(stream: int, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([stream, cls, index])


def make_image(cls: int, stream: int, index: int, size: int = IMAGE_SIZE) -> torch.Tensor:
    """The ``index``-th image of class ``cls`` in a seed stream: float [3, size, size] in [0, 1]."""
    arr = render(sample_scene(cls, image_rng(stream, cls, index), size), size)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def make_images(classes, stream: int, indices, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Batch of :func:`make_image`: [B, 3, size, size]."""
    return torch.stack([make_image(int(c), stream, int(i), size) for c, i in zip(classes, indices)])


def random_batch(rng: np.random.Generator, batch: int, size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Training batch from one generator: images [B, 3, S, S], labels [B] (int64)."""
    labels = rng.integers(len(CLASSES), size=batch)
    imgs = [render(sample_scene(int(c), rng, size), size) for c in labels]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


# -- queries ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ToyQuery:
    """One transformation query: the ``index`` picks the input image of the source class."""

    query_id: int
    source_id: int
    target_id: int
    kind: str  # "colour" or "shape" change
    is_test: bool

    @property
    def source(self) -> str:
        return CLASSES[self.source_id]

    @property
    def target(self) -> str:
        return CLASSES[self.target_id]


def toy_queries(seed: int = 0) -> list[ToyQuery]:
    """All 192 queries: for every target, one per related source class, half of them test."""
    rng = np.random.default_rng([seed, 7])
    out, qid = [], 0
    for t in range(len(CLASSES)):
        related = related_classes(t)
        test_mask = np.zeros(len(related), bool)
        test_mask[rng.permutation(len(related))[: len(related) // 2]] = True
        for (s, kind), is_test in zip(related, test_mask):
            out.append(ToyQuery(qid, s, t, kind, bool(is_test)))
            qid += 1
    return out


def query_image(q: ToyQuery, size: int = IMAGE_SIZE) -> torch.Tensor:
    return make_image(q.source_id, STREAM_QUERY, q.query_id, size)


def retrieve_image(q: ToyQuery, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A random image of the target class (FlexIT's RETRIEVE baseline)."""
    return make_image(q.target_id, STREAM_RETRIEVE, q.query_id, size)


def iter_class_images(cls: int, n: int, stream: int = STREAM_STATS, batch: int = 64) -> Iterator[torch.Tensor]:
    """``n`` images of class ``cls`` in batches: the toy world's "training images of the class"."""
    for start in range(0, n, batch):
        idx = range(start, min(n, start + batch))
        yield make_images([cls] * len(idx), stream, idx)


__all__ = ["IMAGE_SIZE", "SHAPES", "COLOURS", "COLOUR_NAMES", "CLASSES", "class_index", "colour_of", "shape_of",
           "related_classes", "clusters", "caption", "Scene", "sample_scene", "render", "make_image",
           "make_images", "random_batch", "ToyQuery", "toy_queries", "query_image", "retrieve_image",
           "iter_class_images", "STREAM_TRAIN", "STREAM_QUERY", "STREAM_RETRIEVE", "STREAM_STATS", "STREAM_DEMO"]
