"""Where checkpoints come from, and how they are read safely.

Resolution order for a named file: explicit path > the user's weights folder or mapping >
the ``EDITRT_HOME`` store (default ``~/.cache/editrt``) > the known public source, only when the
caller asked for a download > a :class:`WeightsError` naming the file expected and how to get it.

Reading never executes pickled code: ``torch.load(weights_only=True)`` or safetensors. Formats
that need full unpickling (NVIDIA ``.pkl``, old Lightning ``.ckpt`` with custom classes) need
``allow_pickle=True``, which the CLI exposes as ``--allow-pickle``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from .errors import WeightsError

log = logging.getLogger(__name__)

WeightsArg = str | os.PathLike | Mapping[str, str | os.PathLike] | None


@dataclasses.dataclass(frozen=True)
class KnownFile:
    """A checkpoint file the SDK knows: where it lives in the store and where it is published."""

    key: str  # e.g. "clip/ViT-B-32"
    store_path: str  # relative to EDITRT_HOME
    url: str | None  # public source, used only when a download is requested
    how_to_get: str  # one line for the error message


_KNOWN: dict[str, KnownFile] = {}


def register_known(entry: KnownFile) -> KnownFile:
    _KNOWN[entry.key] = entry
    return entry


def known_files() -> dict[str, KnownFile]:
    # Model modules register their files at import.
    from .models import clip, lpips, vqgan  # noqa: F401

    for mod in ("stylegan2", "delta_mapper", "e4e"):
        with contextlib.suppress(ModuleNotFoundError):
            __import__(f"editrt.models.{mod}")
    return dict(_KNOWN)


def editrt_home() -> Path:
    return Path(os.environ.get("EDITRT_HOME", Path.home() / ".cache" / "editrt")).expanduser()


def resolve(key: str, *, path: str | os.PathLike | None = None, weights: WeightsArg = None,
            download: bool = False) -> Path:
    """Return the local path of checkpoint ``key`` (see module docstring for the order)."""
    entry = _KNOWN.get(key)
    candidates: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise WeightsError(f"checkpoint for {key} not found at {p}")
        return p
    if isinstance(weights, Mapping):
        if key in weights:
            p = Path(weights[key]).expanduser()
            if not p.exists():
                raise WeightsError(f"checkpoint for {key} not found at {p} (from the weights mapping)")
            return p
    elif weights is not None and entry is not None:
        candidates.append(Path(weights).expanduser() / entry.store_path)
    if entry is not None:
        candidates.append(editrt_home() / entry.store_path)
    for c in candidates:
        if c.exists():
            return c
    if entry is None:
        raise WeightsError(f"no checkpoint known for {key!r}; pass an explicit path")
    if download and entry.url:
        return _download(entry, editrt_home() / entry.store_path)
    where = " or ".join(str(c) for c in candidates)
    src = f" Source: {entry.url} (or call with download=True / --download)." if entry.url else ""
    raise WeightsError(
        f"missing checkpoint for {key}: expected {where}. {entry.how_to_get}.{src} "
        "For a weight-free smoke run use random_init=True / --random-weights.")


def _download(entry: KnownFile, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s from %s", entry.key, entry.url)
    from .files import atomic_path

    try:
        with atomic_path(dest) as tmp:
            torch.hub.download_url_to_file(entry.url, str(tmp), progress=True)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        raise WeightsError(f"download of {entry.key} from {entry.url} failed: {exc}") from None
    return dest


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """Read a checkpoint file without executing code unless ``allow_pickle``.

    ``.safetensors`` -> dict of tensors; anything else through ``torch.load`` on the CPU.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not allow_pickle and ("weights_only" in str(exc) or "Unsupported global" in str(exc)):
            raise WeightsError(
                f"{path} contains pickled Python objects that weights-only loading refuses ({msg}). "
                "If you trust the file, pass allow_pickle=True (CLI: --allow-pickle).") from None
        raise WeightsError(f"{path} is not a readable checkpoint (truncated or wrong format?): {msg}") from None


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str,
              strict: bool = True, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state_dict`` into ``module``, with an error listing missing/unexpected keys and shape
    mismatches (the usual sign of a checkpoint for another model or resolution)."""
    own = module.state_dict()
    sd = {k: v for k, v in state_dict.items() if not k.startswith(ignore_prefixes)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if shapes or (strict and (missing or unexpected)):
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:3]}")
        if strict and missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if strict and unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise WeightsError(f"checkpoint does not match {what}: " + "; ".join(parts)
                           + ". Is it the checkpoint of another model, size or resolution?")
    module.load_state_dict(sd, strict=False)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic random init without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
