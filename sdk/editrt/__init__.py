"""editrt: optimized inference for text-driven image editing (FlexIT, StyleCLIP, DeltaEdit)."""

from __future__ import annotations

import importlib
import os

# open_clip reaches for the Hugging Face hub when a pretrained tag is requested; stay offline
# unless the user asked for a download (weights.py lifts this for explicit downloads).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"

from .config import FlexITConfig  # noqa: E402
from .errors import (  # noqa: E402
    BackendUnavailable, EditrtError, EngineError, InputError, NumericalError, OutputError, WeightsError)

# Heavy entry points load on first use so `import editrt` stays cheap.
_LAZY = {
    "FlexIT": "editrt.methods.flexit",
    "EditResult": "editrt.methods.flexit",
    "StyleGAN2": "editrt.models.stylegan2",
    "StyleCode": "editrt.models.stylegan2",
    "GlobalDirection": "editrt.methods.stylespace.global_direction",
    "FEU": "editrt.methods.stylespace.feu",
    "DeltaEdit": "editrt.methods.stylespace.deltaedit",
    "StyleEditResult": "editrt.methods.stylespace",
    "ops": "editrt.ops",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if name == "ops" else getattr(module, name)
    raise AttributeError(f"module 'editrt' has no attribute {name!r}")


__all__ = ["FlexITConfig", "EditrtError", "InputError", "WeightsError", "NumericalError",
           "EngineError", "BackendUnavailable", "OutputError", *_LAZY]
