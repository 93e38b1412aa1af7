"""The engine contract shared by every backend.

``engine(feeds) -> outputs``: ``feeds`` maps each input name of the spec to a torch tensor,
the result maps each output name to a torch tensor. Inputs are checked against the spec (names,
rank, fixed sizes, one size per dynamic axis name, dtype family) before anything runs; float
inputs are cast to the graph's dtype, integer token ids to int32 where the graph wants int32.

Thread safety: an engine instance serialises its calls with a lock (execution contexts, IO
bindings and persistent buffers are per instance and not re-entrant). For parallel requests
create one engine per thread (``engine.clone()`` shares the loaded weights where the backend
can: one TensorRT engine, several execution contexts).
"""

from __future__ import annotations

import abc
import threading
from typing import Mapping

import torch

from ..errors import InputError
from ..models.registry import ModelSpec

BACKENDS = ("torch", "onnxruntime", "tensorrt")


class Engine(abc.ABC):
    """One forward-only network behind the common contract."""

    backend: str = ""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.spec.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.spec.outputs]

    def input_dtype(self, name: str) -> torch.dtype:
        """dtype the engine reads for input ``name`` (the graph's, which may differ from the spec's)."""
        return next(t.dtype for t in self.spec.inputs if t.name == name)

    def check_feeds(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, int]:
        """Validate ``feeds`` against the spec; return the size of every dynamic axis."""
        if not isinstance(feeds, Mapping):
            raise InputError(f"{self.name}: feeds must be a dict name -> tensor, got {type(feeds).__name__}")
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise InputError(f"{self.name}: inputs are {self.input_names}; missing {missing}, unexpected {extra}")
        axes: dict[str, int] = {}
        for t in self.spec.inputs:
            x = feeds[t.name]
            if not isinstance(x, torch.Tensor):
                raise InputError(f"{self.name}: input {t.name!r} must be a torch.Tensor, got {type(x).__name__}")
            if x.ndim != len(t.shape):
                raise InputError(f"{self.name}: input {t.name!r} must have {len(t.shape)} dims {t.shape}, "
                                 f"got shape {tuple(x.shape)}")
            for d, (want, got) in enumerate(zip(t.shape, x.shape)):
                if isinstance(want, int):
                    if want != got:
                        raise InputError(f"{self.name}: input {t.name!r} dim {d} must be {want}, got {got} "
                                         f"(shape {tuple(x.shape)}, expected {t.shape})")
                elif axes.setdefault(want, int(got)) != got:
                    raise InputError(f"{self.name}: dynamic axis {want!r} is {axes[want]} in one input "
                                     f"and {got} in {t.name!r}")
            if t.dtype.is_floating_point != x.dtype.is_floating_point or x.dtype == torch.bool:
                raise InputError(f"{self.name}: input {t.name!r} must be {t.dtype}, got {x.dtype}")
        return axes

    def prepare_feeds(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Cast each input to the dtype the engine reads (no copy when it already matches)."""
        return {n: feeds[n].to(self.input_dtype(n)) for n in self.input_names}

    def __call__(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        axes = self.check_feeds(feeds)
        prepared = self.prepare_feeds(feeds)
        with self._lock:
            return self._run(prepared, axes)

    @abc.abstractmethod
    def _run(self, feeds: dict[str, torch.Tensor], axes: dict[str, int]) -> dict[str, torch.Tensor]:
        """Backend-specific execution on validated, cast feeds."""

    def clone(self) -> "Engine":
        """An engine for another thread. Default: a new instance over the same artifact."""
        raise InputError(f"{type(self).__name__} cannot be cloned; create one engine per thread")

    def close(self) -> None:
        """Release backend resources (sessions, contexts, buffers)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def output_shape(spec_tensor, axes: Mapping[str, int]) -> tuple[int, ...] | None:
    """Concrete shape of an output from the input axes; None when an axis is not an input axis."""
    try:
        return tuple(d if isinstance(d, int) else int(axes[d]) for d in spec_tensor.shape)
    except KeyError:
        return None


__all__ = ["Engine", "BACKENDS", "output_shape"]
