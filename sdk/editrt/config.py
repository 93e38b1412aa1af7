"""Frozen, serialisable method configurations with the papers' defaults.

Every argument that shapes a result lives in one frozen dataclass: it is hashable (engine and
cache keys), saved next to every result (``to_dict``) and overridable from Python
(``dataclasses.replace`` / ``cfg.replace``), files (``from_file``) and the CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

C = TypeVar("C", bound="ConfigBase")

# Network names FlexITConfig checks at construction, before any network loads (models/vqgan.py
# VQGAN_CONFIGS, models/lpips.py "vgg" | "alex" | "toy"; tests/test_bad_inputs.py keeps them in
# step). CLIP names are open_clip architectures, config .json files, "auto" or "tiny": listing
# them needs open_clip, so only their form is checked here and models/clip.py names an unknown one.
VQGAN_NAMES = ("vqgan_imagenet_f16_1024", "vqgan_imagenet_f16_16384", "tiny")
LPIPS_NETS = ("vgg", "alex", "toy")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _type_problem(value: Any, tp: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``tp`` (None when it fits). Floats must be finite;
    bools are not accepted as numbers; tuples are checked element by element."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, t) for t in typing.get_args(tp)]
        return None if any(p is None for p in problems) else f"expected {_type_name(tp)}, got {value!r}"
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, tuple):
            return f"expected a list of {_type_name(args[0])}, got {type(value).__name__} {value!r}"
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        elif len(args) != len(value):
            return f"expected {len(args)} values, got {len(value)}: {list(value)!r}"
        for v, t in zip(value, args):
            problem = _type_problem(v, t)
            if problem:
                return problem
        return None
    if tp is type(None):
        return None if value is None else f"expected null, got {value!r}"
    if tp is bool:
        return None if isinstance(value, bool) else f"expected true/false, got {type(value).__name__} {value!r}"
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"expected an integer, got {type(value).__name__} {value!r}"
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {type(value).__name__} {value!r}"
        return None if math.isfinite(value) else f"expected a finite number, got {value!r}"
    if tp is str:
        return None if isinstance(value, str) else f"expected text, got {type(value).__name__} {value!r}"
    return None


def _as_float(value: Any, tp: Any) -> Any:
    """Integers given for float fields become floats (``lr: 1`` and ``lr: 1.0`` are one config)."""
    if tp is float and isinstance(value, int):
        return float(value)
    if typing.get_origin(tp) is tuple and isinstance(value, tuple):
        args = typing.get_args(tp)
        args = (args[0],) * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_as_float(v, t) for v, t in zip(value, args))
    return value


@dataclasses.dataclass(frozen=True)
class ConfigBase:
    """Serialisation shared by every method config."""

    def __post_init__(self) -> None:
        """Type-check every field against its annotation; the subclasses then check ranges."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, tp = getattr(self, f.name), hints[f.name]
            problem = _type_problem(value, tp)
            if problem:
                raise InputError(f"{type(self).__name__}.{f.name}: {problem}")
            object.__setattr__(self, f.name, _as_float(value, tp))

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
    def from_file(cls: type[C], path: str | Path, *, default: C | None = None) -> C:
        """Load from a JSON or YAML file; a top-level ``preset`` key starts from that preset,
        otherwise the file's options apply on top of ``default`` (the class defaults when None)."""
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
            detail = " ".join(str(exc).split())  # one line: YAML errors span several
            raise InputError(f"config file {path} is not valid {path.suffix or 'JSON'}: {detail}") from None
        if not isinstance(data, dict):
            raise InputError(f"config file {path} must hold a mapping of option -> value")
        preset = data.pop("preset", None)
        if preset is not None and not isinstance(preset, str):
            raise InputError(f"config file {path}: preset must be a name, got {preset!r}")
        base = cls.preset(preset) if preset else (default if default is not None else cls())
        return base.replace(**{str(k): v for k, v in data.items()})

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

    Reference-code names in brackets ([names], [im0_coef], ...), as in FlexIT src/flexit_editer.py and exp_configs/final.yaml.
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
    # Augmentations: each CLIP net sees n_augment random views per step; 0 is the reference's
    # ncuts=0 path (resize to the net's input size + centre crop, no random view)
    n_augment: int = 8
    rotation_degrees: float = 10.0  # RandomRotation(10)
    crop_scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop scale
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # RandomResizedCrop ratio
    hflip: bool = True  # RandomHorizontalFlip(p=0.5)
    # The reference adds 1e-6 Gaussian noise to z - z0 each step so its l2,1 form is
    # differentiable at z = z0. We use a zero-safe gradient instead; True restores the noise
    # (added to the difference, the reference's (z - z0 + noise)), from a seeded generator.
    reference_noise: bool = False
    # The mode for exact comparisons with the reference code: noise and views drawn from torch's
    # global CPU RNG in the reference's order (per step the noise, then per net in order, per
    # view: rotation angle, crop box, flip), torchvision's transforms, and the reference's own
    # reductions, so a one-image run reproduces FlexitEditer's trajectory bit for bit on CPU
    # (fp32, same thread count). edit(seed=s) seeds the global RNG (torch.manual_seed(s), as
    # before FlexitEditer.__call__); seed=None uses its current state. Needs reference_noise=True,
    # compile="off" and, with views, gpu_augment=False. It runs LPIPS on both images every step
    # and the views one by one: for checks, not for speed.
    exact_reference: bool = False
    snapshot_steps: tuple[int, ...] = (16, 32, 64, 160)
    # Speed switches (each measurable in benchmarks/flexit_loop.py). None = automatic:
    use_kernels: bool = True  # editrt._C fused l2,1 / LPIPS kernels when built
    # "auto": bf16 on CUDA, and on a CPU with native bf16 from 256 px (methods/flexit.py
    # CPU_AUTO_AUTOCAST says what it was measured against); otherwise off | "off" | "bf16" | "fp16"
    autocast: str = "auto"
    channels_last: str = "auto"  # "auto" (on for CUDA, and for bf16 autocast on a CPU with native bf16) | "on" | "off"
    gpu_augment: bool = True  # all views of a net as one batched affine warp (fixed shapes)
    compile: str = "off"  # "off" | "compile" (torch.compile) | "cuda_graph"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.clip_models:
            raise InputError("FlexITConfig.clip_models must name at least one CLIP network")
        malformed = [n for n in self.clip_models if not n.strip() or any(c.isspace() for c in n.strip())]
        if malformed:
            raise InputError(f"FlexITConfig.clip_models: {malformed} are not CLIP model names "
                             "(e.g. 'ViT-B-32', 'RN50', 'tiny' or a model-config .json)")
        for name, value, known in (("vqgan", self.vqgan, VQGAN_NAMES), ("lpips_net", self.lpips_net, LPIPS_NETS)):
            if value not in known:
                raise InputError(f"FlexITConfig.{name}: unknown network {value!r}; known: {', '.join(known)}")
        checks = {
            "steps": 0 <= self.steps <= 100_000,
            "image_size": 16 <= self.image_size <= 1024 and self.image_size % 16 == 0,
            # each step moves z by lr * ||z0||: beyond 1 the first steps leave the codebook's range
            "lr": 0 < self.lr <= 1.0,
            "target_coef": abs(self.target_coef) <= 100,
            "image_coef": abs(self.image_coef) <= 100,
            "source_coef": abs(self.source_coef) <= 100,
            "snapshot_steps": all(s >= 0 for s in self.snapshot_steps),
            "n_augment": self.n_augment >= 0,  # 0: no augmentation (ncuts=0)
            "lpips_weight": 0 <= self.lpips_weight <= 1e3,
            "latent_weight": 0 <= self.latent_weight <= 1e3,
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
        if self.exact_reference:
            needs = {"reference_noise": True, "compile": "off", **({"gpu_augment": False} if self.n_augment else {})}
            wrong = [f"{k}={v!r}" for k, v in needs.items() if getattr(self, k) != v]
            if wrong:
                raise InputError("FlexITConfig: exact_reference=True reproduces the reference's draws and "
                                 f"needs {', '.join(wrong)}")

    @classmethod
    def presets(cls) -> dict[str, "FlexITConfig"]:
        paper = cls()
        tiny = cls(clip_models=("tiny",), vqgan="tiny", image_size=64, n_augment=2, steps=8, snapshot_steps=(4, 8))
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
            "tiny": tiny,
            # The toy world (editrt.toy): the trained tiny CLIP and VQGAN shipped in the package and
            # its LPIPS ("toy": alex heads, seeded trunk); the paper's loss, toy steps/lr/views
            "toy": dataclasses.replace(tiny, steps=32, lr=0.05, n_augment=4, lpips_net="toy",
                                       snapshot_steps=(0, 8, 16, 32)),
        }


# --- StyleGAN2 direction edits: StyleCLIP global directions, StyleCLIP-FEU, DeltaEdit ---

def _style_checks(name: str, checks: dict[str, bool], obj: Any) -> None:
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise InputError(f"{name}: invalid value for {', '.join(bad)}: "
                         + ", ".join(f"{k}={getattr(obj, k)!r}" for k in bad))


# |alpha| beyond this pushes styles tens of std away from the data: images collapse. The
# reference GUI sliders stop at -15..25, the notebooks at -10..10.
STYLE_ALPHA_LIMIT = 50.0


@dataclasses.dataclass(frozen=True)
class GlobalDirectionConfig(ConfigBase):
    """StyleCLIP global directions (StyleCLIP global_torch/StyleCLIP.py and manipulate.py); defaults as the reference notebooks."""

    generator: str = "ffhq-1024"  # StyleGAN2 name (models/stylegan2.py)
    clip_model: str = "ViT-B-32"  # StyleCLIP uses ViT-B/32 for both fs3 and the text direction
    alpha: float = 4.1  # manipulation strength (notebooks / cog_predict.py)
    beta: float | None = 0.15  # disentanglement threshold on |fs3 . dt|; None = automatic (GetDt2)
    neutral: str = "face"  # neutral text when none is given (DeltaEdit's hard-coded one)
    # automatic beta: largest beta in arange(start, stop, step) keeping > min_channels channels
    auto_beta_range: tuple[float, float, float] = (0.1, 0.3, 0.01)
    auto_beta_min_channels: int = 20  # c_threshold: 20 for ffhq, 100 for other datasets
    auto_beta_fallback: float = 0.1
    # channel statistics (Manipulator.GenerateS / GetCodeMS)
    stats_samples: int = 100_000
    stats_psi: float = 0.7
    stats_cutoff: int = 8
    stats_seed: int = 5
    # relevance matrix (SingleChannel.py)
    relevance_images: int = 100
    relevance_sigma: float = 5.0  # channel set to mean +- sigma * std

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi, step = self.auto_beta_range
        _style_checks(type(self).__name__, {
            "alpha": math.isfinite(self.alpha) and abs(self.alpha) <= STYLE_ALPHA_LIMIT,
            "beta": self.beta is None or (math.isfinite(self.beta) and 0.0 <= self.beta < 1.0),
            "auto_beta_range": 0.0 <= lo < hi < 1.0 and step > 0,
            "auto_beta_min_channels": self.auto_beta_min_channels >= 0,
            "auto_beta_fallback": 0.0 <= self.auto_beta_fallback < 1.0,
            "stats_samples": self.stats_samples >= 2,
            "stats_psi": 0.0 <= self.stats_psi <= 1.0,
            "stats_cutoff": self.stats_cutoff >= 0,
            "relevance_images": self.relevance_images >= 1,
            "relevance_sigma": self.relevance_sigma > 0,
            "neutral": bool(self.neutral.strip()),
        }, self)

    @classmethod
    def presets(cls) -> dict[str, "GlobalDirectionConfig"]:
        ref = cls()
        return {
            "default": ref,
            "reference": ref,
            "auto_beta": cls(beta=None),  # Inference.StyleCLIP: automatic beta, alpha 3
            "inference_class": cls(alpha=3.0, beta=None),
            # tiny random-weight networks: few samples so stats and relevance take seconds
            "tiny": cls(generator="tiny", clip_model="tiny", stats_samples=512, relevance_images=1,
                        auto_beta_min_channels=4, beta=0.1),
        }


@dataclasses.dataclass(frozen=True)
class FEUConfig(ConfigBase):
    """StyleCLIP-FEU (styleclip-feu.txt §3-§4.2): SVM normal of retrieved corpus images as dt.

    k = 100 positives / 100 negatives is the paper's. The paper tuned alpha (step 0.5, range
    shown 2-6) and beta (step 0.05, range 0.1-0.2) but the selected values did not survive in
    our copy of the text; we default to StyleCLIP's notebook values (4.1, 0.15), inside those
    ranges. The SVM's C is not given in the paper: scikit-learn's default 1.0.
    """

    generator: str = "ffhq-1024"
    clip_model: str = "ViT-B-32"
    alpha: float = 4.1
    beta: float | None = 0.15
    k: int = 100  # positives = k most similar, negatives = k least similar corpus images
    svm_c: float = 1.0
    svm: str = "svc"  # "svc": SVC(kernel='linear') as InterFaceGAN / StyleCLIP train_boundary; "linear_svc"
    svm_max_iter: int = 100_000
    auto_beta_range: tuple[float, float, float] = (0.1, 0.3, 0.01)
    auto_beta_min_channels: int = 20
    auto_beta_fallback: float = 0.1
    # channel statistics and relevance matrix: as GlobalDirectionConfig
    stats_samples: int = 100_000
    stats_psi: float = 0.7
    stats_cutoff: int = 8
    stats_seed: int = 5
    relevance_images: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi, step = self.auto_beta_range
        _style_checks(type(self).__name__, {
            "alpha": math.isfinite(self.alpha) and abs(self.alpha) <= STYLE_ALPHA_LIMIT,
            "beta": self.beta is None or (math.isfinite(self.beta) and 0.0 <= self.beta < 1.0),
            "k": self.k >= 1,
            "svm_c": math.isfinite(self.svm_c) and self.svm_c > 0,
            "svm": self.svm in ("svc", "linear_svc"),
            "svm_max_iter": self.svm_max_iter >= 1,
            "auto_beta_range": 0.0 <= lo < hi < 1.0 and step > 0,
            "auto_beta_min_channels": self.auto_beta_min_channels >= 0,
            "auto_beta_fallback": 0.0 <= self.auto_beta_fallback < 1.0,
            "stats_samples": self.stats_samples >= 2,
            "relevance_images": self.relevance_images >= 1,
        }, self)

    @classmethod
    def presets(cls) -> dict[str, "FEUConfig"]:
        return {"default": cls(), "paper": cls(),
                "tiny": cls(generator="tiny", clip_model="tiny", k=8, beta=0.1, auto_beta_min_channels=4,
                        stats_samples=512, relevance_images=1)}


@dataclasses.dataclass(frozen=True)
class DeltaEditConfig(ConfigBase):
    """DeltaEdit text inference (DeltaEdit scripts/inference.py); defaults reproduce scripts/inference.py."""

    generator: str = "ffhq-1024"
    clip_model: str = "ViT-B-32"
    mapper: str = "ffhq"  # Delta Mapper weights name (models/delta_mapper.py)
    neutral: str = "face"  # hard-coded in the reference
    threshold: float = 0.03  # channels with |fs3 . dt| < threshold (unnormalised dt) are not edited
    strength: float = 1.0  # multiplier on the predicted delta S; 1 = reference behaviour
    relevance_images: int = 100  # only used when a relevance matrix must be computed

    def __post_init__(self) -> None:
        super().__post_init__()
        _style_checks(type(self).__name__, {
            "threshold": math.isfinite(self.threshold) and 0.0 <= self.threshold < 2.0,
            "strength": math.isfinite(self.strength) and abs(self.strength) <= STYLE_ALPHA_LIMIT,
            "neutral": bool(self.neutral.strip()),
        }, self)

    @classmethod
    def presets(cls) -> dict[str, "DeltaEditConfig"]:
        return {"default": cls(), "reference": cls(),
                "tiny": cls(generator="tiny", clip_model="tiny", mapper="tiny", threshold=0.01,
                            relevance_images=1)}


# Kept here, beside the method configs, so `editrt --help` can show its defaults without torch.
@dataclasses.dataclass(frozen=True)
class DeltaTrainConfig:
    """Settings of :func:`train_delta_mapper`; defaults are the reference's where it has one."""

    steps: int = 3000  # reference: one pass over 258k x 50 pairs at batch 64 (~200k steps)
    batch: int = 64  # scripts/train.py
    lr: float = 0.5  # scripts/train.py (Adam; EqualLinear lr_mul 0.01 inside)
    samples: int = 20_000  # sampled codes (reference: 200k from generate_codes.py + 58k e4e codes)
    val_samples: int = 512  # held-out codes for the validation loss
    val_pairs: int = 2048
    psi: float = 1.0  # generate_codes.py --truncation 1
    seed: int = 0
    val_seed: int = 1_000_003  # independent of ``seed``: the same validation pairs for every run
    checkpoint_every: int = 500
    sample_batch: int = 64
    # "random": each pair is two independent samples (reference datasets/train_dataset.py). "local": each
    # sample is paired with a neighbour z + pair_sigma * N(0, I) of its own latent (either order), so a
    # pair differs by a small change of one image, the kind of change an edit asks for
    pairs: str = "random"
    pair_sigma: float = 1.0

    def __post_init__(self) -> None:
        bad = [k for k, ok in (("steps", self.steps >= 1), ("batch", self.batch >= 2), ("lr", self.lr > 0),
                               ("pairs", self.pairs in ("random", "local")),
                               ("pair_sigma", math.isfinite(self.pair_sigma) and self.pair_sigma > 0),
                               ("samples", self.samples >= 2), ("val_samples", self.val_samples >= 2),
                               ("val_pairs", self.val_pairs >= 1), ("psi", 0.0 <= self.psi <= 1.0),
                               ("checkpoint_every", self.checkpoint_every >= 1),
                               ("sample_batch", self.sample_batch >= 1)) if not ok]
        if bad:
            raise InputError(f"DeltaTrainConfig: invalid {', '.join(bad)}: {self}")
