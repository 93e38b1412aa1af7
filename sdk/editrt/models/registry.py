"""Registry of exportable networks: each one declares a :class:`ModelSpec`.

A spec is data about a forward-only network: how to build it (architecture + weights), the
names, dtypes and shapes of its inputs and outputs (symbolic names such as ``"B"`` mark dynamic
axes), sample inputs for export and tests, and min/opt/max shapes for TensorRT profiles.
Names are hierarchical: ``"clip/ViT-B-32/image"``, ``"vqgan/tiny/decoder"``,
``"stylegan2/ffhq-1024/synthesis"``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import torch

from ..errors import InputError
from .preprocess import Preprocess


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. ``shape`` entries are ints (fixed) or str (dynamic axis name)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: torch.dtype = torch.float32

    def concrete(self, **axes: int) -> tuple[int, ...]:
        """The shape with each dynamic axis replaced by ``axes[name]``."""
        try:
            return tuple(d if isinstance(d, int) else int(axes[d]) for d in self.shape)
        except KeyError as exc:
            raise InputError(f"{self.name}: no size given for dynamic axis {exc.args[0]!r}") from None

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Declaration of one exportable forward-only network.

    Attributes:
        name: registry key, e.g. ``"clip/ViT-B-32/text"``.
        build: ``build(weights=None, random_init=False, seed=0) -> nn.Module`` giving the
            forward-only wrapper in eval mode, whose ``forward`` takes the inputs in order and
            returns a tensor or a tuple in output order.
        inputs / outputs: graph signature.
        axes: default sizes of the dynamic axes (``{"B": 2}``) used for sample inputs.
        profile: ``{axis: (min, opt, max)}`` for TensorRT optimisation profiles.
        sample: optional ``sample(**axes) -> dict[name, Tensor]``; default draws from ``randn``
            (floats) or zeros (ints).
        fp32_ops: op types kept in fp32 in reduced-precision graphs (normalisations that overflow).
        preprocess: for an image input, how a [0, 1] RGB image becomes it (size, mean, std,
            resize mode); None for non-image inputs.
    """

    name: str
    build: Callable[..., torch.nn.Module]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    axes: dict[str, int] = dataclasses.field(default_factory=lambda: {"B": 2})
    profile: dict[str, tuple[int, int, int]] = dataclasses.field(default_factory=lambda: {"B": (1, 2, 8)})
    sample: Callable[..., dict[str, torch.Tensor]] | None = None
    fp32_ops: tuple[str, ...] = ()
    description: str = ""
    preprocess: Preprocess | None = None

    def sample_inputs(self, seed: int = 0, **axes: int) -> dict[str, torch.Tensor]:
        sizes = {**self.axes, **axes}
        if self.sample is not None:
            return self.sample(seed=seed, **sizes)
        gen = torch.Generator().manual_seed(seed)
        feeds = {}
        for t in self.inputs:
            shape = t.concrete(**sizes)
            if t.dtype.is_floating_point:
                feeds[t.name] = torch.randn(shape, generator=gen).to(t.dtype)
            else:
                feeds[t.name] = torch.zeros(shape, dtype=t.dtype)
        return feeds

    def profile_shapes(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """min/opt/max concrete shapes per input, from ``profile`` (axes not in it use ``axes``)."""
        out = {}
        for t in self.inputs:
            trio = []
            for k in range(3):
                sizes = {**self.axes, **{a: v[k] for a, v in self.profile.items()}}
                trio.append(t.concrete(**sizes))
            out[t.name] = tuple(trio)
        return out


_SPECS: dict[str, ModelSpec] = {}
_PROVIDERS: list[Callable[[], Iterator[ModelSpec]]] = []


def register(spec: ModelSpec) -> ModelSpec:
    _SPECS[spec.name] = spec
    return spec


_FAMILY_SPECS: dict[str, Callable[[str], Iterator[ModelSpec]]] = {}


def register_family_specs(family: str, specs_for: Callable[[str], Iterator[ModelSpec]]) -> None:
    """Let ``get_spec("<family>/<arch>/<part>")`` build the specs of an architecture that is not
    pre-registered (CLIP: any open_clip name) by calling ``specs_for(arch)``."""
    _FAMILY_SPECS[family] = specs_for


def register_provider(provider: Callable[[], Iterator[ModelSpec]]) -> None:
    """Register a function that yields specs lazily (model modules call this at import)."""
    _PROVIDERS.append(provider)


def _load_all() -> None:
    # Importing the exportable families (models/catalog.py) registers their providers.
    from . import catalog

    for fam in catalog.FAMILIES:
        if fam.exportable:
            catalog.import_family(fam.name)
    while _PROVIDERS:
        for spec in _PROVIDERS.pop()():
            _SPECS.setdefault(spec.name, spec)


def get_spec(name: str) -> ModelSpec:
    _load_all()
    family, _, rest = name.partition("/")
    if name not in _SPECS and family in _FAMILY_SPECS and "/" in rest:
        try:
            for spec in _FAMILY_SPECS[family](rest.rsplit("/", 1)[0]):
                _SPECS.setdefault(spec.name, spec)
        except InputError:
            pass  # not an architecture of that family: reported below with the known names
    if name not in _SPECS:
        known = ", ".join(sorted(_SPECS))
        raise InputError(f"unknown model spec {name!r}; known: {known}")
    return _SPECS[name]


def list_specs(prefix: str = "") -> list[str]:
    _load_all()
    return sorted(n for n in _SPECS if n.startswith(prefix))
