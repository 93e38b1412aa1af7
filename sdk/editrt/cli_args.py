"""Argument types, checks and option groups shared by every ``editrt`` subcommand (no torch at
import: ``check_device`` imports it when called)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import BackendUnavailable, InputError

RANDOM_WEIGHTS_WARNING = (
    "NOTE: random weights were used. The pipeline ran for real, but random networks give no "
    "meaningful edit. For real edits put the checkpoints in $EDITRT_HOME (see `editrt weights`) "
    "or pass --weights-dir DIR.")


# --backend of the edit commands ("auto": editrt.engines.stages.auto_backend; kept here, torch-free,
# for the commands that must start without importing torch)
BACKEND_CHOICES = ("auto", "torch", "onnxruntime", "tensorrt")
SEED_MAX = 2**32 - 1  # numpy RandomState (StyleGAN2 samples) takes seeds in [0, 2**32)


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum`` (so 0 or -1 never reach the code as nonsense)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def seed(text: str) -> int:
    """argparse type: a seed in [0, 2**32 - 1]."""
    value = int_at_least(0)(text)
    if value > SEED_MAX:
        raise argparse.ArgumentTypeError(f"seeds range over 0..{SEED_MAX}, got {value}")
    return value


def check_device(device: str) -> str:
    """Validate ``--device`` before any network loads: a device string torch knows (InputError,
    exit 2) that exists on this machine (BackendUnavailable, exit 6)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        if device.lower().startswith("gpu"):  # a GPU was asked for: say whether one exists here
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise BackendUnavailable(f"--device {device}: backend unavailable, {device!r} is not a device "
                                     f"(torch names GPUs cuda or cuda:N) and this machine has {count} CUDA "
                                     "device(s)") from None
        raise InputError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackendUnavailable(f"--device {device}: backend unavailable, no CUDA device on this machine "
                                     "(torch.cuda.is_available() is False); use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise BackendUnavailable(f"--device {device}: backend unavailable, this machine has {count} "
                                     f"CUDA device(s) (cuda:0..cuda:{count - 1})")
    elif dev.type != "cpu":
        backend = getattr(torch, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise BackendUnavailable(f"--device {device}: backend unavailable ({dev.type} is not available here)")
    return device


def check_texts(**texts: str | None) -> None:
    """Prompts must be non-empty, and a source must differ from its target (else nothing to edit)."""
    for name, text in texts.items():
        if text is not None and not text.strip():
            raise InputError(f"--{name} is empty; describe the image in a few words")
    src, tgt = texts.get("source") or texts.get("neutral"), texts.get("target")
    if src is not None and tgt is not None and src.strip().lower() == tgt.strip().lower():
        raise InputError(f"source and target text are both {tgt.strip()!r}: there is nothing to edit")


def add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--random-weights", action="store_true",
                   help="seeded random weights of the tiny networks (offline smoke run; no meaningful edit)")
    p.add_argument("--download", action="store_true", help="download missing checkpoints from their public source")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints that need full unpickling (executes code: trusted files only)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")


__all__ = ["RANDOM_WEIGHTS_WARNING", "SEED_MAX", "int_at_least", "seed", "check_device", "check_texts",
           "add_weights_args"]
