"""Base of the architecture configs of every model family (nanoGPT ``GPTConfig`` style).

An architecture config is a frozen, hashable dataclass with commented defaults; a family keeps
its named configs in one dict (``CLIP_CONFIGS``, ``VQGAN_CONFIGS``, ``STYLEGAN2_CONFIGS``, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

A = TypeVar("A", bound="ArchConfig")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """Frozen architecture config: ``to_dict`` (JSON-ready, tuples as lists) and ``replace``."""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def replace(self: A, **changes: Any) -> A:
        """A copy with ``changes`` applied (validated again by ``__post_init__``)."""
        return dataclasses.replace(self, **changes)


__all__ = ["ArchConfig"]
