"""Reading StyleGAN2 generator checkpoints into the rosinality state-dict layout.

Formats (see :func:`read_generator_checkpoint`):

* rosinality ``{"g_ema": state_dict, "latent_avg": [D], ...}`` (``convert_weight.py`` / training);
* a raw rosinality generator state dict (DeltaEdit ``stylegan2-<ds>/netG.pth``);
* a pSp / e4e checkpoint ``{"state_dict": {"decoder.<key>": ...}, "latent_avg": ...}``;
* an NVIDIA stylegan2-ada-pytorch generator state dict (``G_ema.state_dict()`` keys
  ``mapping.fc{i}``, ``synthesis.b{res}.{const,conv0,conv1,torgb}...``), converted by
  :func:`nvidia_to_rosinality`;
* an NVIDIA ``.pkl`` network pickle, only with ``allow_pickle=True``. It is read with a
  restricted unpickler that never imports or runs the source code embedded in the pickle:
  ``torch_utils.persistence`` objects become inert stubs whose recorded module state
  (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs``) is walked into a state dict.
  Verified on synthetic pickles with the same structure (tests); not on a real NVIDIA file,
  which this offline machine cannot download.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from .. import checkpoint_format as fmt
from ..errors import WeightsError
from ..weights import load_checkpoint
from .stylegan2_config import StyleGAN2Config

State = dict[str, torch.Tensor]


# ----------------------------------------------------------------------------------------------
# rosinality layout -> architecture


def config_from_state_dict(state: Mapping[str, torch.Tensor], base: StyleGAN2Config) -> StyleGAN2Config:
    """Infer size, widths and mapping depth from rosinality keys; other fields from ``base``."""
    for key in ("style.1.weight", "input.input", "conv1.conv.weight"):
        if key not in state:
            sample = ", ".join(list(state)[:5])
            raise WeightsError(f"not a StyleGAN2 (rosinality layout) generator state dict: no key {key!r} "
                               f"(first keys: {sample})")
    n_mlp = sum(1 for k in state if re.fullmatch(r"style\.\d+\.weight", k))
    style_dim = int(state["style.1.weight"].shape[1])
    n_blocks = sum(1 for k in state if re.fullmatch(r"to_rgbs\.\d+\.bias", k))
    size = 2 ** (n_blocks + 2)
    channels = {4: int(state["input.input"].shape[1])}
    for k in range(n_blocks):
        key = f"convs.{2 * k}.conv.weight"
        if key not in state:
            raise WeightsError(f"generator state dict has to_rgbs.{k} but no {key}: truncated or another model")
        channels[2 ** (k + 3)] = int(state[key].shape[1])
    cfg = base.replace(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_max=channels[4],
                       channel_base=channels[size] * size)
    if any(cfg.channels(r) != c for r, c in channels.items()):
        raise WeightsError(f"generator widths {channels} do not follow min(channel_max, channel_base // res); "
                           "this architecture is not supported")
    return cfg


def check_same_architecture(expected: StyleGAN2Config, found: StyleGAN2Config, *, what: str, path: Any) -> None:
    """WeightsError naming the resolution / width / depth that differs."""
    if found.size != expected.size:
        raise WeightsError(f"checkpoint {path} holds a {found.size}x{found.size} generator but {what} is "
                           f"{expected.size}x{expected.size}; pick the config of that resolution or another file")
    diffs = [f"{f}: checkpoint {getattr(found, f)} vs config {getattr(expected, f)}"
             for f in ("style_dim", "n_mlp") if getattr(found, f) != getattr(expected, f)]
    diffs += [f"channels at {r}px: checkpoint {found.channels(r)} vs config {expected.channels(r)}"
              for r in expected.resolutions if found.channels(r) != expected.channels(r)]
    if diffs:
        raise WeightsError(f"checkpoint {path} does not match {what}: " + "; ".join(diffs))


# ----------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch -> rosinality


def is_nvidia_state(state: Mapping[str, Any]) -> bool:
    return "synthesis.b4.const" in state or "mapping.fc0.weight" in state


def nvidia_to_rosinality(state: Mapping[str, torch.Tensor]) -> tuple[State, torch.Tensor | None]:
    """stylegan2-ada-pytorch ``G_ema.state_dict()`` -> (rosinality ``g_ema`` state, ``w_avg`` or None).

    Parameters map one to one (both layouts store the equalised-lr weights, modulation biases
    with their +1 init folded in, and conv0 weights in conv_transpose orientation):
    ``conv.weight`` gains a leading 1, ``noise_strength`` -> ``noise.weight`` [1],
    ``noise_const`` [r, r] -> ``noises.noise_i`` [1, 1, r, r], ``torgb.bias`` -> [1, 3, 1, 1],
    the blur kernels are ``resample_filter * 4``. Conditional (``mapping.embed``) and non-"skip"
    architectures are refused.
    """
    src = dict(state)
    out: State = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in src:
            raise WeightsError(f"NVIDIA generator state dict lacks {key!r}: not a stylegan2-ada 'skip' generator")
        used.add(key)
        return src[key]

    if any(k.startswith("mapping.embed") for k in src):
        raise WeightsError("conditional StyleGAN2 (mapping.embed) is not supported: editrt needs an unconditional G")
    n_fc = sum(1 for k in src if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    for i in range(n_fc):
        out[f"style.{i + 1}.weight"] = take(f"mapping.fc{i}.weight")
        out[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    w_avg = src.get("mapping.w_avg")
    used.add("mapping.w_avg")
    res_list = sorted(int(m.group(1)) for k in src if (m := re.fullmatch(r"synthesis\.b(\d+)\.torgb\.weight", k)))
    if not res_list or res_list[0] != 4:
        raise WeightsError("NVIDIA generator state dict has no synthesis.b4.torgb: not a 'skip' architecture")
    if any(k.endswith(".skip.weight") for k in src):
        raise WeightsError("NVIDIA 'resnet' generator architecture is not supported (rosinality layout is 'skip')")
    out["input.input"] = take("synthesis.b4.const")[None]

    def styled(prefix: str, dst: str, noise_index: int) -> None:
        out[f"{dst}.conv.weight"] = take(f"{prefix}.weight")[None]
        out[f"{dst}.conv.modulation.weight"] = take(f"{prefix}.affine.weight")
        out[f"{dst}.conv.modulation.bias"] = take(f"{prefix}.affine.bias")
        out[f"{dst}.noise.weight"] = take(f"{prefix}.noise_strength").reshape(1)
        out[f"{dst}.activate.bias"] = take(f"{prefix}.bias")
        noise = take(f"{prefix}.noise_const")
        out[f"noises.noise_{noise_index}"] = noise.reshape(1, 1, *noise.shape[-2:])

    def torgb(prefix: str, dst: str) -> None:
        out[f"{dst}.conv.weight"] = take(f"{prefix}.weight")[None]
        out[f"{dst}.conv.modulation.weight"] = take(f"{prefix}.affine.weight")
        out[f"{dst}.conv.modulation.bias"] = take(f"{prefix}.affine.bias")
        out[f"{dst}.bias"] = take(f"{prefix}.bias").reshape(1, -1, 1, 1)

    styled("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    for k, res in enumerate(res_list[1:]):
        b = f"synthesis.b{res}"
        styled(f"{b}.conv0", f"convs.{2 * k}", 1 + 2 * k)
        styled(f"{b}.conv1", f"convs.{2 * k + 1}", 2 + 2 * k)
        torgb(f"{b}.torgb", f"to_rgbs.{k}")
        out[f"convs.{2 * k}.conv.blur.kernel"] = take(f"{b}.conv0.resample_filter") * 4
        out[f"to_rgbs.{k}.upsample.kernel"] = take(f"{b}.resample_filter") * 4
    # resample filters of blocks/layers that rosinality does not store are equal to the used ones
    leftover = sorted(k for k in src if k not in used and not k.endswith("resample_filter"))
    if leftover:
        raise WeightsError(f"NVIDIA generator state dict has keys with no rosinality counterpart: {leftover[:5]}")
    return {k: v.detach().clone() for k, v in out.items()}, (None if w_avg is None else w_avg.detach().clone())


# ----------------------------------------------------------------------------------------------
# NVIDIA network pickles without running their code


class _PersistentStub:
    """Stand-in for a ``torch_utils.persistence`` object: keeps the pickled state, runs nothing."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.class_name = meta.get("class_name")
        self.state = meta.get("state") or {}

    def __setstate__(self, state: Any) -> None:  # plain (non-persistent) classes
        self.state = state


class _PlainStub(_PersistentStub):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.class_name, self.state = None, {}


class _EasyDict(dict):
    """``dnnlib.EasyDict`` stand-in (a dict)."""


def _reconstruct(meta: Mapping[str, Any]) -> _PersistentStub:
    return _PersistentStub(meta)


def _storage_from_bytes(b: bytes) -> Any:
    # torch pickles storages inside plain pickles as torch.save'd bytes: read them weights-only
    return torch.load(io.BytesIO(b), weights_only=True)


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("builtins", "set"): set,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "copyreg" and name == "_reconstructor":
            return lambda cls, base, state: cls.__new__(cls)
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        if module == "torch" and name in ("float32", "float16", "bfloat16", "device", "Size"):
            return getattr(torch, name)
        # any other class (torch.nn containers, numpy scalars, augment pipes): an inert stub
        return _PlainStub


def _walk(obj: Any, prefix: str, out: State) -> None:
    state = obj.state if isinstance(obj, _PersistentStub) else {}
    if not isinstance(state, Mapping):
        return
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is not None and name not in skip and isinstance(t, torch.Tensor):
                out[prefix + name] = t.detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            _walk(child, f"{prefix}{name}.", out)


def read_nvidia_pickle(path: str | Path) -> tuple[State, dict[str, Any]]:
    """``G_ema`` of an NVIDIA stylegan2-ada-pytorch ``.pkl`` -> (state dict, init kwargs).
    Call only after the user opted in with ``allow_pickle=True``."""
    try:
        with open(path, "rb") as f:
            data = _RestrictedUnpickler(f).load()
    except Exception as exc:  # noqa: BLE001 - any failure means an unsupported pickle
        raise WeightsError(f"{path} is not a readable stylegan2-ada-pytorch network pickle: {exc}") from None
    g = data.get("G_ema") if isinstance(data, Mapping) else None
    if not isinstance(g, _PersistentStub):
        kind = "a TensorFlow-era pickle (convert it with NVIDIA legacy.py first)" if isinstance(data, tuple) \
            else f"a {type(data).__name__} without 'G_ema'"
        raise WeightsError(f"{path} is {kind}; expected a stylegan2-ada-pytorch pickle with 'G_ema'")
    state: State = {}
    _walk(g, "", state)
    kwargs = dict(g.state.get("_init_kwargs") or {}) if isinstance(g.state, Mapping) else {}
    return state, kwargs


# ----------------------------------------------------------------------------------------------
# entry point used by StyleGAN2.load


def read_generator_checkpoint(path: str | Path, *, allow_pickle: bool = False
                              ) -> tuple[State, torch.Tensor | None, StyleGAN2Config | None]:
    """Any supported file -> (rosinality generator state, latent_avg or None, config hint or None).

    The config hint carries fields the keys cannot tell (``conv_clamp`` of NVIDIA pickles).
    """
    path = Path(path)
    if path.suffix == ".pkl":
        if fmt.sniff(path) != "pickle":
            raise WeightsError(f"{path} is not a network pickle: it is {fmt.describe(path)}")
        if fmt.scan_pickle(path).truncated:
            raise WeightsError(f"{path} is a truncated pickle; download or copy it again")
        if not allow_pickle:
            raise WeightsError(f"{path} is an NVIDIA network pickle; reading it unpickles arbitrary objects. "
                               "If you trust the file, pass allow_pickle=True (CLI: --allow-pickle); "
                               "editrt converts it without running its embedded code.")
        state, kwargs = read_nvidia_pickle(path)
        clamp = (kwargs.get("synthesis_kwargs") or {}).get("conv_clamp")
        hint = StyleGAN2Config(conv_clamp=None if clamp is None else float(clamp))
        sd, w_avg = nvidia_to_rosinality(state)
        return sd, w_avg, hint
    # rosinality's train.py saves its argparse ``args`` beside the weights: read as a placeholder
    ckpt = load_checkpoint(path, allow_pickle=allow_pickle, stub_globals=("argparse.Namespace",))
    if not isinstance(ckpt, Mapping):
        raise WeightsError(f"{path} holds a {type(ckpt).__name__}, not a StyleGAN2 checkpoint dict")
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt.get("latent_avg"), torch.Tensor) else None
    if "g_ema" in ckpt:
        state = dict(ckpt["g_ema"])
    elif "state_dict" in ckpt and any(k.startswith("decoder.") for k in ckpt["state_dict"]):
        state = {k[len("decoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
    elif is_nvidia_state(ckpt):
        state, latent_avg = nvidia_to_rosinality(ckpt)
    else:
        state = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
        if "style.1.weight" not in state:
            raise WeightsError(f"{path} is not a StyleGAN2 generator checkpoint: expected a 'g_ema' entry, a "
                               f"raw generator state dict or pSp/e4e 'decoder.' keys; top-level keys: "
                               f"{list(ckpt)[:8]}")
    if (latent_avg is not None and "style.1.weight" in state
            and latent_avg.shape[-1] != state["style.1.weight"].shape[1]):
        raise WeightsError(f"{path}: latent_avg has shape {tuple(latent_avg.shape)}, not [..., style_dim]")
    return state, latent_avg, None
