"""StyleGAN2 generator (rosinality layout) with S-space (StyleSpace) as a first-class object.

Public API (everything else is private)::

    G = StyleGAN2.load("ffhq-1024")                    # store / weights=... / a path; strict rosinality keys
    G = StyleGAN2.load("tiny", random_init=True, seed=0) # seeded random weights (tests, smoke runs)
    w    = G.mapping(z, psi=0.7)                 # z [B, D] -> w [B, D] (truncated towards latent_avg)
    wp   = G.mapping(z, psi=0.7, cutoff=8)       # cutoff set -> W+ [B, n_latent, D]
    wp   = G.to_wplus(w)                         # [B, D] -> [B, n_latent, D]
    code = G.styles_from_w(w_or_wplus)           # -> StyleCode (26 layers for 1024)
    img  = G.synthesize(code)                    # -> [B, 3, H, W], roughly in [-1, 1]
    img  = G.generate(z) / G.generate(w=wp) / G(z)
    mean, std = G.style_statistics(n=100_000)    # StyleCLIP GetCodeMS (seed 5, psi 0.7, cutoff 8)

    layout = StyleLayout.from_config(STYLEGAN2_CONFIGS["ffhq-1024"])  # no network built
    code.conv_view()             # [B, 6048] the 17 conv layers in order (fs3 rows / DeltaEdit order)
    code.with_conv_view(flat)    # replace conv layers, keep tRGB (DeltaEdit decoder_validate)
    code["conv1_4"], code[0:2], StyleCode.cat([...]), code + delta, 2.0 * code, code.to("cuda")

S-space definition (StyleCLIP global_torch/manipulate.py): for each style layer L, ``s_L = L.conv.modulation(w[:, i_L])``
with the W+ index pattern conv1_4:0, torgb_4:1, then per resolution r = 8..size (block k):
conv0_r: 1+2k, conv1_r: 2+2k, torgb_r: 3+2k. Channel counts are the layers' *input* channels.
Layer names: ``conv1_4, torgb_4, conv0_8, conv1_8, torgb_8, ..., torgb_<size>``; ``StyleLayer.reference_name``
gives StyleCLIP's (``conv1_resolution_4``, ``toRGB_resolution_4``, ``conv0_resolution_8``, ...), and
``StyleLayout.index`` accepts either form. For 1024: 26 layers, 9088 channels,
17 conv layers (``layout.conv_indices`` = StyleCLIP's mindexs) holding 6048.

Synthesis runs from a StyleCode with the fixed ``noises.noise_i`` buffers by default
(``noise="const"``; DeltaEdit's choice), pure torch ops, and the activation-side modulated
conv (constant conv weights, dynamic batch; see stylegan2_ops). W -> S -> image equals the
rosinality forward from w (tested).

Checkpoints: rosinality ``torch.save({"g_ema": state_dict, "latent_avg": [D]})``; also a raw
generator state dict (DeltaEdit ``netG.pth``), a pSp/e4e checkpoint (``decoder.`` keys), and, with
``allow_pickle=True`` only, NVIDIA stylegan2-ada-pytorch ``.pkl`` files (converted, see
stylegan2_convert). ``latent_avg`` is a non-persistent buffer, so ``G.state_dict()`` has exactly
rosinality's ``g_ema`` keys; when a checkpoint (or random init) has none it is the mean of mapped
w over 4096 z drawn under ``seeded(seed + 1)`` (rosinality ``mean_latent(4096)``, made deterministic).
``G.frozen()`` gives an export copy with the activation-form constants precomputed.

Export: :class:`SynthesisExport` (26 style tensors in layout order -> image),
:class:`MappingExport` (z -> w) and :class:`StylesExport` (W+ -> 26 styles) are registered as
``stylegan2/<name>/{synthesis,mapping,styles}`` ModelSpecs with a dynamic batch axis ``"B"``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import InputError, WeightsError
from ..weights import WeightsArg, load_into, resolve, seeded
from . import stylegan2_convert as convert
from .stylegan2_config import STYLEGAN2_CONFIGS, StyleGAN2Config, get_config  # noqa: F401
from .registry import ModelSpec, TensorSpec, register_provider
from .stylegan2_ops import (LRELU_GAIN, MODCONV_MODES, ConstantInput, EqualLinear, ModulatedConv2d, PixelNorm,
                            StyledConv, ToRGB)

log = logging.getLogger(__name__)

NOISE_MODES = ("const", "none", "random")
LATENT_AVG_SAMPLES = 4096  # rosinality generate.py: g_ema.mean_latent(4096)


# ----------------------------------------------------------------------------------------------
# Architecture configs (data)


def _resolve(key: str, weights: WeightsArg, download: bool) -> Path:
    try:
        return resolve(key, weights=weights, download=download)
    except WeightsError as exc:
        if "random_init" in str(exc):
            raise
        raise WeightsError(f"{exc} (or random_init=True for seeded random weights)") from None


# ----------------------------------------------------------------------------------------------
# S-space layout and codes


@dataclasses.dataclass(frozen=True)
class StyleLayer:
    """One style vector of S-space."""

    name: str  # "conv1_4", "torgb_4", "conv0_8", ...
    kind: str  # "conv" or "torgb"
    resolution: int
    channels: int  # input channels of the layer = width of its style vector
    w_index: int  # which W+ entry feeds its affine (modulation) layer
    module: str  # rosinality module path: "conv1", "to_rgb1", "convs.3", "to_rgbs.1"
    noise_index: int | None  # index of its noises.noise_i buffer (conv layers only)

    @property
    def reference_name(self) -> str:
        """StyleCLIP's key for this layer: ``conv1_resolution_4``, ``toRGB_resolution_4``,
        ``conv0_resolution_8``, ... (StyleCLIP global_torch/manipulate.py ``GetSName`` and the
        ``layer.name`` set by ``LoadModel``; the keys of its ``encoded_styles`` dicts)."""
        prefix = "toRGB" if self.kind == "torgb" else self.name.split("_")[0]
        return f"{prefix}_resolution_{self.resolution}"


@dataclasses.dataclass(frozen=True)
class StyleLayout:
    """Ordered S-space layers of a generator, derived from its config alone."""

    layers: tuple[StyleLayer, ...]

    @classmethod
    def from_config(cls, config: StyleGAN2Config | str) -> "StyleLayout":
        cfg = get_config(config) if isinstance(config, str) else config
        ch = cfg.channels
        layers = [StyleLayer("conv1_4", "conv", 4, ch(4), 0, "conv1", 0),
                  StyleLayer("torgb_4", "torgb", 4, ch(4), 1, "to_rgb1", None)]
        for k, res in enumerate(cfg.resolutions[1:]):
            layers += [StyleLayer(f"conv0_{res}", "conv", res, ch(res // 2), 1 + 2 * k, f"convs.{2 * k}", 1 + 2 * k),
                       StyleLayer(f"conv1_{res}", "conv", res, ch(res), 2 + 2 * k, f"convs.{2 * k + 1}", 2 + 2 * k),
                       StyleLayer(f"torgb_{res}", "torgb", res, ch(res), 3 + 2 * k, f"to_rgbs.{k}", None)]
        return cls(tuple(layers))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(layer.channels for layer in self.layers)

    @property
    def total_channels(self) -> int:
        return sum(self.channels)

    @property
    def conv_indices(self) -> tuple[int, ...]:
        """Positions of the conv (non-tRGB) layers: StyleCLIP's ``mindexs``."""
        return tuple(i for i, layer in enumerate(self.layers) if layer.kind == "conv")

    @property
    def conv_names(self) -> tuple[str, ...]:
        return tuple(self.layers[i].name for i in self.conv_indices)

    @property
    def conv_channels(self) -> tuple[int, ...]:
        return tuple(self.layers[i].channels for i in self.conv_indices)

    @property
    def conv_total(self) -> int:
        return sum(self.conv_channels)

    @property
    def reference_names(self) -> tuple[str, ...]:
        """StyleCLIP's layer keys in layout order (its 26-entry S list for 1024 px)."""
        return tuple(layer.reference_name for layer in self.layers)

    def index(self, name: str) -> int:
        """Position of a layer given by editrt name (``conv1_16``) or StyleCLIP name
        (``conv1_resolution_16``); a published channel "6_501" is ``layers[6]``, channel 501."""
        for names in (self.names, self.reference_names):
            if name in names:
                return names.index(name)
        raise InputError(f"unknown style layer {name!r}; layers: {', '.join(self.names)} "
                         f"(or StyleCLIP's {', '.join(self.reference_names[:3])}, ...)")

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """[B, total_channels] -> one [B, C_i] per layer."""
        return _split(flat, self.channels, "all-layer")

    def split_conv(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """[B, conv_total] -> one [B, C_i] per conv layer (DeltaEdit ``split_stylespace``)."""
        return _split(flat, self.conv_channels, "conv")


def _split(flat: torch.Tensor, sizes: Sequence[int], what: str) -> list[torch.Tensor]:
    if flat.ndim != 2 or flat.shape[1] != sum(sizes):
        raise InputError(f"expected a [B, {sum(sizes)}] {what} S-code, got {tuple(flat.shape)}")
    return list(torch.split(flat, list(sizes), dim=1))


class StyleCode:
    """S-space codes of a batch: one tensor [B, C_i] per style layer, in layout order.

    Immutable in spirit: every operation returns a new StyleCode (tensors are shared, not copied,
    where nothing changes). ``code[name]`` gives a layer's tensor; ``code[int | slice | index
    tensor]`` selects batch entries. Arithmetic is per layer with broadcasting, so a batch-1 delta
    adds to a batch-B code: ``code + alpha * delta``.
    """

    __slots__ = ("layout", "styles")

    def __init__(self, styles: Sequence[torch.Tensor] | Mapping[str, torch.Tensor], layout: StyleLayout) -> None:
        if isinstance(styles, Mapping):
            missing = [n for n in layout.names if n not in styles]
            extra = [n for n in styles if n not in layout.names]
            if missing or extra:
                raise InputError(f"style dict does not match the layout: missing {missing}, unexpected {extra}")
            styles = [styles[n] for n in layout.names]
        styles = tuple(styles)
        if len(styles) != len(layout.layers):
            raise InputError(f"expected {len(layout.layers)} style tensors ({', '.join(layout.names)}), "
                             f"got {len(styles)}")
        batch = styles[0].shape[0] if styles[0].ndim == 2 else None
        for t, layer in zip(styles, layout.layers):
            if t.ndim != 2 or t.shape[1] != layer.channels or t.shape[0] != batch:
                raise InputError(f"style {layer.name}: expected [B={batch}, {layer.channels}], got {tuple(t.shape)}")
        self.layout = layout
        self.styles = styles

    # construction -----------------------------------------------------------------------------
    @classmethod
    def from_flat(cls, flat: torch.Tensor, layout: StyleLayout) -> "StyleCode":
        """[B, total_channels] (all layers, tRGB included) -> StyleCode."""
        return cls(layout.split(flat), layout)

    @classmethod
    def zeros(cls, layout: StyleLayout, batch: int = 1, *, device: Any = None,
              dtype: torch.dtype = torch.float32) -> "StyleCode":
        return cls([torch.zeros(batch, c, device=device, dtype=dtype) for c in layout.channels], layout)

    @classmethod
    def from_conv_delta(cls, flat: torch.Tensor, layout: StyleLayout) -> "StyleCode":
        """A conv-only delta [B, conv_total] as a full code with zeros for the tRGB layers
        (StyleCLIP ``SplitS``)."""
        parts = iter(layout.split_conv(flat))
        return cls([next(parts) if layer.kind == "conv" else flat.new_zeros(flat.shape[0], layer.channels)
                    for layer in layout.layers], layout)

    @staticmethod
    def cat(codes: Sequence["StyleCode"]) -> "StyleCode":
        """Concatenate batches of codes with the same layout."""
        if not codes:
            raise InputError("StyleCode.cat needs at least one code")
        layout = codes[0].layout
        if any(c.layout != layout for c in codes):
            raise InputError("StyleCode.cat: codes come from generators with different layouts")
        return StyleCode([torch.cat(ts, 0) for ts in zip(*(c.styles for c in codes))], layout)

    # properties -------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self.layout.names

    @property
    def batch_size(self) -> int:
        return self.styles[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.styles[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.styles[0].dtype

    def as_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.layout.names, self.styles))

    def __getitem__(self, key: str | int | slice | torch.Tensor | Sequence[int]) -> Any:
        if isinstance(key, str):
            return self.styles[self.layout.index(key)]
        if isinstance(key, int):
            key = slice(key, key + 1 if key != -1 else None)
        return StyleCode([t[key] for t in self.styles], self.layout)

    def __repr__(self) -> str:
        return (f"StyleCode(batch={self.batch_size}, layers={len(self.styles)}, "
                f"channels={self.layout.total_channels}, dtype={self.dtype}, device={self.device})")

    # flat views -------------------------------------------------------------------------------
    def flat(self) -> torch.Tensor:
        """[B, total_channels]: all layers concatenated in layout order."""
        return torch.cat(self.styles, dim=1)

    def conv_styles(self) -> list[torch.Tensor]:
        return [self.styles[i] for i in self.layout.conv_indices]

    def conv_view(self) -> torch.Tensor:
        """[B, conv_total]: the conv layers concatenated (6048 for 1024; fs3 / DeltaEdit order)."""
        return torch.cat(self.conv_styles(), dim=1)

    def split_conv(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return self.layout.split_conv(flat)

    def with_conv_view(self, flat: torch.Tensor) -> "StyleCode":
        """A code whose conv layers come from ``flat`` [B, conv_total] and tRGB layers from self
        (DeltaEdit ``decoder_validate``: edited conv styles, tRGB recomputed from w+)."""
        parts = iter(self.layout.split_conv(flat))
        new = [next(parts) if layer.kind == "conv" else t for t, layer in zip(self.styles, self.layout.layers)]
        if flat.shape[0] != self.batch_size:
            new = [t.expand(flat.shape[0], -1) if t.shape[0] == 1 else t for t in new]
        return StyleCode(new, self.layout)

    def replace(self, **layers: torch.Tensor) -> "StyleCode":
        """A code with the named layers replaced: ``code.replace(conv1_4=t)``."""
        styles = list(self.styles)
        for name, t in layers.items():
            styles[self.layout.index(name)] = t
        return StyleCode(styles, self.layout)

    # tensor-like ------------------------------------------------------------------------------
    def map(self, fn) -> "StyleCode":
        """Apply ``fn(tensor) -> tensor`` to every layer."""
        return StyleCode([fn(t) for t in self.styles], self.layout)

    def to(self, *args: Any, **kwargs: Any) -> "StyleCode":
        return self.map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "StyleCode":
        return self.map(torch.Tensor.detach)

    def clone(self) -> "StyleCode":
        return self.map(torch.Tensor.clone)

    def expand(self, batch: int) -> "StyleCode":
        """Broadcast a batch-1 code to ``batch`` entries (views, no copy)."""
        if self.batch_size not in (1, batch):
            raise InputError(f"cannot expand a batch-{self.batch_size} StyleCode to {batch}")
        return self.map(lambda t: t.expand(batch, -1))

    def mean(self) -> "StyleCode":
        return self.map(lambda t: t.mean(0, keepdim=True))

    def std(self) -> "StyleCode":
        """Per-channel std over the batch, ddof=0 (numpy ``np.std``, as StyleCLIP's code_std)."""
        return self.map(lambda t: t.std(0, keepdim=True, correction=0))

    def _binary(self, other: Any, op) -> "StyleCode":
        if isinstance(other, StyleCode):
            if other.layout != self.layout:
                raise InputError("StyleCode arithmetic between different layouts")
            return StyleCode([op(a, b) for a, b in zip(self.styles, other.styles)], self.layout)
        if isinstance(other, torch.Tensor) and other.ndim == 1:
            other = other[:, None]  # one scale per batch entry
        return self.map(lambda t: op(t, other))

    def __add__(self, other: Any) -> "StyleCode":
        return self._binary(other, torch.add)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "StyleCode":
        return self._binary(other, torch.sub)

    def __mul__(self, other: Any) -> "StyleCode":
        return self._binary(other, torch.mul)

    __rmul__ = __mul__

    def __neg__(self) -> "StyleCode":
        return self.map(torch.neg)

    def add_conv_delta(self, delta: torch.Tensor, alpha: float = 1.0) -> "StyleCode":
        """``s + alpha * delta`` on the conv layers only; delta [B or 1, conv_total]."""
        return self.with_conv_view(self.conv_view() + alpha * delta)


# ----------------------------------------------------------------------------------------------
# Generator


class StyleGAN2(nn.Module):
    """rosinality ``Generator`` with exact state-dict keys, driven through S-space.

    Attributes: ``config``, ``layout`` (StyleLayout), ``size``, ``style_dim``, ``n_latent``,
    ``latent_avg`` ([style_dim] buffer, not in ``state_dict``).
    """

    def __init__(self, config: StyleGAN2Config | str = "tiny") -> None:
        super().__init__()
        cfg = get_config(config) if isinstance(config, str) else config
        self.config = cfg
        self.name: str | None = config if isinstance(config, str) else None  # registry name (export specs)
        self.layout = StyleLayout.from_config(cfg)
        self.size, self.style_dim, self.n_latent = cfg.size, cfg.style_dim, cfg.n_latent
        d, taps = cfg.style_dim, cfg.blur_taps
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(d, d, lr_mul=cfg.lr_mlp, activation=True)
                                                  for _ in range(cfg.n_mlp)])
        c4 = cfg.channels(4)
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, d, blur_taps=taps)
        self.to_rgb1 = ToRGB(c4, d, upsample=False, blur_taps=taps)
        self.convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for i in range(cfg.num_noise_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = c4
        for res in cfg.resolutions[1:]:
            out_ch = cfg.channels(res)
            self.convs.append(StyledConv(in_ch, out_ch, d, upsample=True, blur_taps=taps))
            self.convs.append(StyledConv(out_ch, out_ch, d, blur_taps=taps))
            self.to_rgbs.append(ToRGB(out_ch, d, blur_taps=taps))
            in_ch = out_ch
        self.register_buffer("latent_avg", torch.zeros(d), persistent=False)

    # loading ----------------------------------------------------------------------------------
    @classmethod
    def load(cls, name: str | os.PathLike = "ffhq-1024", *, weights: WeightsArg = None,
             path: str | os.PathLike | None = None, random_init: bool = False, seed: int = 0, device: Any = "cpu",
             download: bool = False, allow_pickle: bool = False) -> "StyleGAN2":
        """Build a generator in eval mode.

        name: a config name (``STYLEGAN2_CONFIGS``; weights from ``path`` / ``weights`` / the store
        under key ``stylegan2/<name>``) or a checkpoint path (architecture inferred from its keys).
        weights: a checkpoint file, a store folder, or a ``{key: path}`` mapping (weights.resolve).
        random_init: seeded random weights instead of a checkpoint (never silently).
        Raises WeightsError when the checkpoint is missing, unreadable, or for another
        architecture / resolution.
        """
        name = str(name)
        if name in STYLEGAN2_CONFIGS:
            cfg = STYLEGAN2_CONFIGS[name]
            if random_init:
                return cls.random(name, seed=seed).to(device).eval()
            if path is not None:
                path = Path(path).expanduser()
                if not path.is_file():
                    raise WeightsError(f"checkpoint for stylegan2/{name} not found at {path}")
            elif weights is not None and not isinstance(weights, Mapping) and Path(weights).expanduser().is_file():
                path = Path(weights).expanduser()
            else:
                path = _resolve(f"stylegan2/{name}", weights, download)
            what = f"StyleGAN2 {name}"
        else:
            path = Path(path if path is not None else name).expanduser()
            if not path.is_file():
                raise InputError(f"{name!r} is neither a known StyleGAN2 config ({sorted(STYLEGAN2_CONFIGS)}) "
                                 "nor an existing checkpoint file")
            cfg, what = None, f"StyleGAN2 checkpoint {path.name}"
        state, latent_avg, pkl_cfg = convert.read_generator_checkpoint(path, allow_pickle=allow_pickle)
        inferred = convert.config_from_state_dict(state, base=cfg or pkl_cfg or StyleGAN2Config())
        if cfg is not None:
            convert.check_same_architecture(cfg, inferred, what=what, path=path)
        G = cls(name if cfg is not None else inferred)
        load_into(G, state, what=what)
        G._set_latent_avg(latent_avg, seed=seed)
        log.info("loaded %s from %s", what, path)
        return G.to(device).eval()

    @classmethod
    def random(cls, config: StyleGAN2Config | str = "tiny", *, seed: int = 0) -> "StyleGAN2":
        """Seeded random weights with rosinality's init (noise strengths and biases zero);
        ``latent_avg`` = mean of mapped w over 4096 seeded z."""
        with seeded(seed):
            G = cls(config)
        G._set_latent_avg(None, seed=seed)
        return G.eval()

    def _set_latent_avg(self, latent_avg: torch.Tensor | None, *, seed: int) -> None:
        if latent_avg is None:
            with torch.no_grad(), seeded(seed + 1):
                z = torch.randn(LATENT_AVG_SAMPLES, self.style_dim, device=self.latent_avg.device)
                latent_avg = self.style(z).mean(0)
        latent_avg = latent_avg.detach().reshape(-1, self.style_dim)[0]  # [D] or [n_latent, D] (all rows equal)
        self.latent_avg.copy_(latent_avg.to(self.latent_avg))

    def checkpoint_dict(self) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """``{"g_ema": state_dict, "latent_avg": [D]}``, the rosinality file layout."""
        return {"g_ema": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "latent_avg": self.latent_avg.detach().cpu().clone()}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a rosinality-format checkpoint atomically (``editrt.files``)."""
        from ..files import atomic_path

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(self.checkpoint_dict(), tmp)
        return path

    def frozen(self) -> "StyleGAN2":
        """An eval copy whose activation-form constants (scaled / transposed conv weights,
        demodulation matrices, FIR filters) are precomputed buffers: what export wrappers use,
        so ONNX graphs hold conv weights as initializers. Same outputs as ``self``."""
        G = copy.deepcopy(self).eval()
        for m in G.modules():
            if isinstance(m, ModulatedConv2d):
                m.freeze()
            elif isinstance(m, ToRGB) and hasattr(m, "upsample"):
                m.upsample.freeze(3)
        return G

    # mapping ----------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """z [B, D] -> w [B, D], truncated ``latent_avg + psi (w - latent_avg)``.

        With ``cutoff`` the truncation applies to the first ``cutoff`` W+ entries only
        (NVIDIA ``truncation_cutoff``), so the result is W+ [B, n_latent, D].
        """
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise InputError(f"z must be [B, {self.style_dim}], got {tuple(z.shape)}")
        w = self.style(z)
        if cutoff is None:
            return self.truncate(w, psi)
        return self.truncate(self.to_wplus(w), psi, cutoff)

    def truncate(self, w: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
        """Truncation towards ``latent_avg`` of w [B, D] or W+ [B, n_latent, D] (first ``cutoff`` entries)."""
        if psi == 1.0:
            return w
        avg = self.latent_avg.to(w.dtype)
        t = avg + psi * (w - avg)
        if cutoff is None or w.ndim == 2:
            return t
        return torch.cat([t[:, :cutoff], w[:, cutoff:]], dim=1)

    def to_wplus(self, w: torch.Tensor) -> torch.Tensor:
        """w [B, D] -> W+ [B, n_latent, D]; W+ input is checked and returned as is."""
        if w.ndim == 2 and w.shape[1] == self.style_dim:
            return w[:, None, :].expand(-1, self.n_latent, -1)
        if w.ndim == 3 and w.shape[1:] == (self.n_latent, self.style_dim):
            return w
        raise InputError(f"w must be [B, {self.style_dim}] or [B, {self.n_latent}, {self.style_dim}], "
                         f"got {tuple(w.shape)}")

    # S-space ----------------------------------------------------------------------------------
    def layer_module(self, name: str) -> StyledConv | ToRGB:
        return self.get_submodule(self.layout.layers[self.layout.index(name)].module)

    def styles_from_w(self, w: torch.Tensor) -> StyleCode:
        """w [B, D] or W+ [B, n_latent, D] -> StyleCode: ``modulation(w[:, i_L])`` per layer."""
        wp = self.to_wplus(w)
        return StyleCode([self.get_submodule(layer.module).conv.modulation(wp[:, layer.w_index])
                          for layer in self.layout.layers], self.layout)

    def _noise_list(self, noise: str | Sequence[torch.Tensor | None], batch_like: torch.Tensor
                    ) -> list[torch.Tensor | None]:
        n = self.config.num_noise_layers
        if isinstance(noise, str):
            if noise == "const":
                return [getattr(self.noises, f"noise_{i}") for i in range(n)]
            if noise == "none":
                return [None] * n
            if noise == "random":
                b = batch_like.shape[0]
                return [torch.randn(b, 1, *getattr(self.noises, f"noise_{i}").shape[-2:],
                                    device=batch_like.device, dtype=batch_like.dtype) for i in range(n)]
            raise InputError(f"noise must be one of {NOISE_MODES} or a list of {n} tensors, got {noise!r}")
        noise = list(noise)
        if len(noise) != n:
            raise InputError(f"expected {n} noise tensors, got {len(noise)}")
        return noise

    def synthesize(self, code: StyleCode, *, noise: str | Sequence[torch.Tensor | None] = "const",
                   modconv: str = "activation") -> torch.Tensor:
        """StyleCode -> image [B, 3, size, size], float, roughly in [-1, 1] (not clamped).

        noise: "const" (the ``noises.noise_i`` buffers; default), "none", "random", or a list.
        modconv: "activation" (constant conv weights; export form) or "grouped" (rosinality fused).
        """
        if code.layout != self.layout:
            raise InputError(f"StyleCode layout ({len(code.layout.layers)} layers) does not belong to this "
                             f"{self.size}px generator ({len(self.layout.layers)} layers)")
        if modconv not in MODCONV_MODES:
            raise InputError(f"modconv must be one of {MODCONV_MODES}, got {modconv!r}")
        s = code.styles
        noises = self._noise_list(noise, s[0])
        clamp = self.config.conv_clamp
        # activation form: each StyledConv leaves its sqrt(2) gain to its readers' styles (stylegan2_ops)
        defer = modconv == "activation"
        g = LRELU_GAIN if defer else 1.0
        x = self.conv1(self.input(s[0]), s[0], noises[0], modconv, clamp, defer_gain=defer)
        skip = self.to_rgb1(x, s[1], None, modconv, clamp, in_gain=g)
        for k, to_rgb in enumerate(self.to_rgbs):
            j = 2 + 3 * k  # conv0, conv1, torgb of block k in layout order
            x = self.convs[2 * k](x, s[j], noises[1 + 2 * k], modconv, clamp, in_gain=g, defer_gain=defer)
            x = self.convs[2 * k + 1](x, s[j + 1], noises[2 + 2 * k], modconv, clamp, in_gain=g, defer_gain=defer)
            skip = to_rgb(x, s[j + 2], skip, modconv, clamp, in_gain=g)
        return skip

    def generate(self, z: torch.Tensor | None = None, *, w: torch.Tensor | None = None, psi: float = 1.0,
                 cutoff: int | None = None, noise: str | Sequence[torch.Tensor | None] = "const",
                 modconv: str = "activation") -> torch.Tensor:
        """Image [B, 3, H, W] from z (mapped, truncated) or from w / W+ (used as given)."""
        if (z is None) == (w is None):
            raise InputError("generate: pass exactly one of z or w")
        if z is not None:
            w = self.mapping(z, psi, cutoff)
        return self.synthesize(self.styles_from_w(w), noise=noise, modconv=modconv)

    def forward(self, z: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        return self.generate(z, psi=psi)

    @torch.no_grad()
    def style_statistics(self, n: int = 100_000, *, seed: int = 5, psi: float = 0.7, cutoff: int | None = 8,
                         batch_size: int = 10_000) -> tuple[StyleCode, StyleCode]:
        """Per-channel mean and std (ddof 0) of S over ``n`` truncated samples; batch-1 codes.

        StyleCLIP ``GenerateS``/``GetCodeMS``: z = ``np.random.RandomState(seed).randn(n, D)``,
        psi 0.7, cutoff 8. Accumulated in float64 so 100k samples need no large buffers.
        """
        z_all = np.random.RandomState(seed).randn(n, self.style_dim)
        dev = self.latent_avg.device
        sums = [torch.zeros(c, dtype=torch.float64, device=dev) for c in self.layout.channels]
        sqs = [torch.zeros_like(t) for t in sums]
        for start in range(0, n, batch_size):
            z = torch.from_numpy(z_all[start:start + batch_size]).to(dev, torch.float32)
            code = self.styles_from_w(self.mapping(z, psi, cutoff))
            for i, t in enumerate(code.styles):
                t = t.double()
                sums[i] += t.sum(0)
                sqs[i] += t.square().sum(0)
        mean = [s / n for s in sums]
        std = [(q / n - m.square()).clamp_min(0).sqrt() for q, m in zip(sqs, mean)]
        as_code = lambda ts: StyleCode([t.float()[None] for t in ts], self.layout)  # noqa: E731
        return as_code(mean), as_code(std)


# ----------------------------------------------------------------------------------------------
# Export wrappers and registry


class SynthesisExport(nn.Module):
    """forward(conv1_4, torgb_4, ...) -> image: one [B, C_i] argument per style layer, named and
    ordered as the layout, const noise, activation-side modulation (constant conv weights,
    dynamic batch). Instances are of a per-layout subclass whose ``forward`` has explicit named
    parameters, so ``torch.export`` / ONNX see one input per style (no ``*args``)."""

    def __new__(cls, generator: StyleGAN2, **_: Any) -> "SynthesisExport":
        if cls is SynthesisExport:
            cls = _synthesis_export_class(generator.layout.names)
        return super().__new__(cls)

    def __init__(self, generator: StyleGAN2, *, freeze: bool = True) -> None:
        super().__init__()
        # freeze=False runs the live generator (same maths, no copy): the torch backend's form
        self.generator = generator.frozen() if freeze else generator
        self.spec_name = f"stylegan2/{generator.name}/synthesis" if generator.name else None

    def synthesize(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.generator.synthesize(StyleCode(styles, self.generator.layout), noise="const",
                                         modconv="activation")


_SYNTHESIS_CLASSES: dict[tuple[str, ...], type[SynthesisExport]] = {}


def _synthesis_export_class(names: tuple[str, ...]) -> type[SynthesisExport]:
    if names not in _SYNTHESIS_CLASSES:
        if not all(n.isidentifier() for n in names):
            raise InputError(f"style layer names must be identifiers: {names}")
        args = ", ".join(names)
        namespace: dict[str, Any] = {}
        # generated so that the signature lists every style input by name (export input names)
        exec(f"def forward(self, {args}):\n    return self.synthesize(({args},))\n", namespace)  # noqa: S102
        cls = type(f"SynthesisExport{len(names)}", (SynthesisExport,), {"forward": namespace["forward"],
                                                                        "__module__": __name__})
        _SYNTHESIS_CLASSES[names] = cls
    return _SYNTHESIS_CLASSES[names]


class MappingExport(nn.Module):
    """forward(z [B, D]) -> w [B, D] with a fixed truncation ``psi`` (default none)."""

    def __init__(self, generator: StyleGAN2, psi: float = 1.0) -> None:
        super().__init__()
        self.generator, self.psi = generator, psi
        self.spec_name = f"stylegan2/{generator.name}/mapping" if generator.name else None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator.mapping(z, self.psi)


class StylesExport(nn.Module):
    """forward(w_plus [B, n_latent, D]) -> the style tensors in layout order (a tuple)."""

    def __init__(self, generator: StyleGAN2) -> None:
        super().__init__()
        self.generator = generator
        self.spec_name = f"stylegan2/{generator.name}/styles" if generator.name else None

    def forward(self, w_plus: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.generator.styles_from_w(w_plus).styles


def _build(name: str, wrapper: type[nn.Module]):
    def build(weights: WeightsArg = None, random_init: bool = False, seed: int = 0) -> nn.Module:
        return wrapper(StyleGAN2.load(name, weights=weights, random_init=random_init, seed=seed)).eval()
    return build


def _specs() -> Iterator[ModelSpec]:
    for name, cfg in STYLEGAN2_CONFIGS.items():
        layout = StyleLayout.from_config(cfg)
        d = cfg.style_dim
        style_inputs = tuple(TensorSpec(layer.name, ("B", layer.channels)) for layer in layout.layers)
        yield ModelSpec(
            name=f"stylegan2/{name}/synthesis", build=_build(name, SynthesisExport), inputs=style_inputs,
            outputs=(TensorSpec("image", ("B", 3, cfg.size, cfg.size)),),
            description=f"StyleGAN2 {name} synthesis from {len(layout.layers)} S-space styles, const noise")
        yield ModelSpec(
            name=f"stylegan2/{name}/mapping", build=_build(name, MappingExport),
            inputs=(TensorSpec("z", ("B", d)),), outputs=(TensorSpec("w", ("B", d)),),
            profile={"B": (1, 8, 64)}, description=f"StyleGAN2 {name} mapping network z -> w")
        yield ModelSpec(
            name=f"stylegan2/{name}/styles", build=_build(name, StylesExport),
            inputs=(TensorSpec("w_plus", ("B", cfg.n_latent, d)),), outputs=style_inputs,
            profile={"B": (1, 8, 64)}, description=f"StyleGAN2 {name} W+ -> S-space styles (affine layers)")


register_provider(_specs)
