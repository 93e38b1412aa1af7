"""Frozen, serialisable method configurations with the papers' defaults.

Every argument that shapes a result lives in one frozen dataclass: it is hashable (engine and
cache keys), saved next to every result (``to_dict``) and overridable from Python
(``dataclasses.replace`` / ``cfg.replace``), files (``from_file``) and the CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

C = TypeVar("C", bound="ConfigBase")


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Serialisation shared by every method config."""

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise InputError(f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(fields)}")
        kwargs = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
                  for k, v in data.items()}
        return cls(**kwargs)

    @classmethod
    def from_file(cls: type[C], path: str | Path) -> C:
        """Load from a JSON or YAML file; a top-level ``preset`` key starts from that preset."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
            raise InputError(f"config file {path} is not valid {path.suffix or 'JSON'}: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"config file {path} must hold a mapping of option -> value")
        preset = data.pop("preset", None)
        base = cls.preset(preset) if preset else cls()
        return base.replace(**data)

    @classmethod
    def preset(cls: type[C], name: str) -> C:
        presets = cls.presets()
        if name not in presets:
            raise InputError(f"{cls.__name__}: unknown preset {name!r}; known: {sorted(presets)}")
        return presets[name]

    @classmethod
    def presets(cls: type[C]) -> dict[str, C]:
        return {"default": cls()}

    def replace(self: C, **changes: Any) -> C:
        merged = {**self.to_dict(), **changes}
        return type(self).from_dict(merged)

    def fingerprint(self) -> str:
        """Short stable hash of the config (cache keys, result names)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class FlexITConfig(ConfigBase):
    """FlexIT, with the paper's defaults (§3 and §4.4 of flexit.txt).

    Reference-code names in brackets ([names], [im0_coef], ...), see REFERENCES.md §1.3.
    """

    # Networks
    clip_models: tuple[str, ...] = ("RN50x4", "ViT-B-32", "RN50")  # [names] paper: 3 nets
    vqgan: str = "vqgan_imagenet_f16_1024"  # FlexIT's VQGAN
    lpips_net: str = "vgg"  # perceptual term network (the reference uses vgg)
    # Optimisation
    steps: int = 160  # N = 160 (paper §3); the output is the decode after `steps` updates
    image_size: int = 288  # VQGAN resolution -> 256x18x18 latent with f16
    lr: float = 0.05  # step length is lr * ||z0||_F on the globally normalised gradient
    normalize_gradient: bool = True
    # Target point P = target_coef*E_T + image_coef*E_I0 - source_coef*E_S (eq. 1, not renormalised)
    target_coef: float = 1.0
    image_coef: float = 0.2  # lambda_I
    source_coef: float = 0.4  # lambda_S
    # Regularisers
    lpips_weight: float = 0.15  # lambda_p
    latent_weight: float = 0.05  # lambda_z, on the l2,1 norm of z - z0 divided by that of z0
    # Augmentations: each CLIP net sees n_augment random views per step
    n_augment: int = 8
    rotation_degrees: float = 10.0  # RandomRotation(10)
    crop_scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop scale
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # RandomResizedCrop ratio
    hflip: bool = True  # RandomHorizontalFlip(p=0.5)
    # The reference adds 1e-6 Gaussian noise to z - z0 each step so its l2,1 form is
    # differentiable at z = z0. We use a zero-safe gradient instead; True restores the noise.
    reference_noise: bool = False
    snapshot_steps: tuple[int, ...] = (16, 32, 64, 160)
    # Speed switches (each measurable in benchmarks/flexit_loop.py). None = automatic:
    use_kernels: bool = True  # editrt._C fused l2,1 / LPIPS kernels when built
    autocast: str = "auto"  # "auto" (bf16 on CUDA, off on CPU) | "off" | "bf16" | "fp16"
    channels_last: str = "auto"  # "auto" (on for CUDA) | "on" | "off"
    gpu_augment: bool = True  # all views of a net as one batched affine warp (fixed shapes)
    compile: str = "off"  # "off" | "compile" (torch.compile) | "cuda_graph"

    def __post_init__(self) -> None:
        if not self.clip_models:
            raise InputError("FlexITConfig.clip_models must name at least one CLIP network")
        checks = {
            "steps": self.steps >= 0,
            "image_size": 16 <= self.image_size <= 1024 and self.image_size % 16 == 0,
            "lr": self.lr > 0,
            "n_augment": self.n_augment >= 1,
            "lpips_weight": self.lpips_weight >= 0,
            "latent_weight": self.latent_weight >= 0,
            "crop_scale": 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "crop_ratio": 0 < self.crop_ratio[0] <= self.crop_ratio[1],
            "rotation_degrees": 0 <= self.rotation_degrees <= 180,
            "autocast": self.autocast in ("auto", "off", "bf16", "fp16"),
            "channels_last": self.channels_last in ("auto", "on", "off"),
            "compile": self.compile in ("off", "compile", "cuda_graph"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise InputError(f"FlexITConfig: invalid value for {', '.join(bad)}: "
                             + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    @classmethod
    def presets(cls) -> dict[str, "FlexITConfig"]:
        paper = cls()
        return {
            "paper": paper,
            "default": paper,
            # exp_configs/final.yaml as the reference demo runs it (5 nets, one view each, 160 steps)
            "reference_final": cls(
                clip_models=("ViT-B-32", "RN50x4", "RN50", "ViT-B-16", "RN50x16"), n_augment=1,
                lpips_weight=0.15, image_coef=0.2, steps=160),
            # FlexitEditer's own class attributes (max_iter 256, lpips 0.2, im0_coef 0)
            "reference_class_defaults": cls(
                clip_models=("RN50x4", "ViT-B-32", "RN50"), n_augment=8, lpips_weight=0.2,
                image_coef=0.0, steps=256),
            # Offline smoke configuration: tiny random-weight networks, a few steps on 2 CPU cores
            "tiny": cls(clip_models=("tiny",), vqgan="tiny", image_size=64, n_augment=2, steps=8,
                        snapshot_steps=(4, 8)),
        }
