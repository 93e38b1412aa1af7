"""How checkpoints are read safely (where they are found: :mod:`editrt.known_files`).

Reading never executes pickled code: ``torch.load(weights_only=True)`` or safetensors. Formats
that need full unpickling (NVIDIA ``.pkl``, old Lightning ``.ckpt`` with custom classes) need
``allow_pickle=True``, which the CLI exposes as ``--allow-pickle``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import torch

from . import checkpoint_format as fmt
from .errors import WeightsError
# where files are found lives in the torch-free table; re-exported for callers of this module
from .known_files import (COMPUTED, CORPUS_HOWTO, KnownFile, WeightsArg, editrt_home, inventory,  # noqa: F401
                          known_files, register_known, resolve)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger(__name__)


def load_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False,
                    stub_globals: tuple[str, ...] = ()) -> Any:
    """Read a checkpoint file without executing code unless ``allow_pickle``.

    ``.safetensors`` -> dict of tensors; ``.npy`` -> a tensor; anything else through
    ``torch.load`` on the CPU. A file that is none of these, truncated, or a pickle that needs
    Python globals raises a WeightsError saying which (and naming the globals).

    stub_globals: module prefixes (``"pytorch_lightning."``) whose classes a weights-only read
    may meet in training state; they are read as inert placeholder classes (nothing of theirs
    is imported or run) instead of refusing the file.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist or is not a file")
    kind = fmt.sniff(path)
    if kind in ("empty", "unknown"):
        raise WeightsError(f"{path} is {fmt.describe(path)}")
    if kind == "npy":
        return torch.from_numpy(load_array(path))
    if kind == "safetensors" or path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception:  # noqa: BLE001 - the format's own errors are opaque; describe the file
            raise WeightsError(f"{path} is not a readable safetensors file: it is {fmt.describe(path)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # noqa: BLE001
        if not allow_pickle and stub_globals:
            stubs = [g for g in fmt.scan_pickle(path).globals if g.startswith(stub_globals)]
            if stubs:
                try:
                    with torch.serialization.safe_globals([(_inert_class(g), g) for g in stubs]):
                        return torch.load(path, map_location="cpu", weights_only=True)
                except Exception as again:  # noqa: BLE001 - report what is still refused
                    exc = again
        raise WeightsError(_unreadable(path, exc, allow_pickle)) from None


def _inert_class(qualified: str) -> type:
    """A class that accepts any constructor arguments and state and does nothing with them."""
    return type(qualified.rsplit(".", 1)[-1], (), {
        "__init__": lambda self, *args, **kwargs: None,
        "__setstate__": lambda self, state: None,
        "__module__": "editrt.weights.inert",
        "__doc__": f"inert stand-in for {qualified} (training state, never imported)"})


def _unreadable(path: Path, exc: Exception, allow_pickle: bool) -> str:
    """Why ``torch.load`` failed, from the file's bytes rather than from the exception alone."""
    what = fmt.describe(path)
    if "truncated" in what or "damaged" in what:
        return f"{path} is {what}; download or copy it again"
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if refused and not allow_pickle:
        scan = fmt.scan_pickle(path)
        name = refused.group(1).rstrip(".")
        if scan.truncated or name not in scan.globals:
            return (f"{path} is {what} whose pickle data is damaged (the loader stopped at a global "
                    f"{name!r} the file does not name); download or copy it again")
        others = [g for g in scan.globals if not g.startswith(("torch.", "collections.", "builtins."))]
        return (f"{path} is {what} that imports the Python global {name!r}, which weights-only loading "
                f"refuses (non-torch globals in the file: {', '.join(others) or name}). If you trust the "
                "file, pass allow_pickle=True (CLI: --allow-pickle); this runs the code those globals name.")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{path} is {what} but cannot be read as a checkpoint: {msg}"


def load_array(path: str | os.PathLike) -> "np.ndarray":
    """Read an ``.npy`` file (never unpickling): numeric arrays only.

    Raises WeightsError for a missing file, a file that is not .npy (saying what it is), a
    truncated one, or an object array (which would need pickle).
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"array file {path} does not exist or is not a file")
    if fmt.sniff(path) != "npy":
        raise WeightsError(f"{path} is not an .npy array: it is {fmt.describe(path)}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise WeightsError(f"{path} is an .npy array of Python objects (it needs pickle); "
                               "a numeric array was expected") from None
        raise WeightsError(f"{path} is a truncated or damaged .npy array ({exc})") from None
    except OSError as exc:
        raise WeightsError(f"{path} is a truncated or damaged .npy array ({exc})") from None


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


__all__ = ["load_checkpoint", "load_array", "load_into", "seeded", "KnownFile", "WeightsArg", "register_known",
           "known_files", "inventory", "resolve", "editrt_home", "COMPUTED", "CORPUS_HOWTO"]
