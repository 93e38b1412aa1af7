"""Tensor files with provenance: safetensors plus JSON metadata, written atomically.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import InputError, WeightsError
from ...files import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    pass

log = logging.getLogger(__name__)


def save_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
                  metadata={"editrt": json.dumps(meta, sort_keys=True)})
    return path


def load_tensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("editrt", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{what} {path} is not a readable editrt file: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise WeightsError(f"{what} {path} is not a readable editrt file: {exc}") from None
    return tensors, meta


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
