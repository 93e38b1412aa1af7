"""FlexIT's ImageNet transformation queries (the reference repository's ``dataset/queries.csv``).

The CSV ships as package data (``editrt/data/flexit_queries.csv``). It comes from
facebookresearch/SemanticImageTranslation (MIT licence, Copyright (c) Meta Platforms, Inc. and
affiliates): 2184 queries ``source class -> target class`` over 273 ImageNet classes in 47
clusters, 8 per target class, half of them (``is_test``) the test split, the other half dev.
Columns: index (query id), path (ImageNet val image, ``wnid/ILSVRC2012_val_*.JPEG``), source,
source_id, target, target_id (ImageNet class indices), is_test.
"""

from __future__ import annotations

import csv
import dataclasses
from importlib import resources
from pathlib import Path

from ..errors import InputError

QUERIES_FILE = "flexit_queries.csv"
SPLITS = ("test", "dev", "all")


@dataclasses.dataclass(frozen=True)
class Query:
    """One transformation query. ``path`` is relative to the image root (None in the toy world)."""

    query_id: int
    source: str
    source_id: int
    target: str
    target_id: int
    is_test: bool
    path: str | None = None
    kind: str = ""  # toy world: "colour" or "shape" change


def queries_csv_path() -> Path:
    return Path(str(resources.files("editrt") / "data" / QUERIES_FILE))


def _bool(text: str, where: str) -> bool:
    if text in ("True", "true", "1"):
        return True
    if text in ("False", "false", "0"):
        return False
    raise InputError(f"{where}: is_test must be True or False, got {text!r}")


def read_queries(path: str | Path | None = None) -> list[Query]:
    """All queries of a CSV in the reference layout (default: the shipped one), in file order."""
    path = Path(path) if path else queries_csv_path()
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise InputError(f"cannot read the query file {path}: {exc.strerror}") from None
    need = {"", "path", "source", "source_id", "target", "target_id", "is_test"}
    if not rows or not need <= set(rows[0]):
        raise InputError(f"{path} is not a FlexIT query CSV (columns: ,path,source,source_id,target,target_id,is_test)")
    out = []
    for n, r in enumerate(rows, start=2):
        try:
            out.append(Query(query_id=int(r[""]), source=r["source"], source_id=int(r["source_id"]),
                             target=r["target"], target_id=int(r["target_id"]),
                             is_test=_bool(r["is_test"], f"{path}:{n}"), path=r["path"]))
        except ValueError as exc:
            raise InputError(f"{path}:{n}: malformed row ({exc})") from None
    return out


def select(queries: list[Query], split: str, limit: int | None = None) -> list[Query]:
    """The ``test``/``dev``/``all`` part, sorted by query id, optionally the first ``limit``."""
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    chosen = [q for q in queries if split == "all" or q.is_test == (split == "test")]
    chosen.sort(key=lambda q: q.query_id)
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be >= 1, got {limit}")
        chosen = chosen[:limit]
    return chosen


def load_queries(split: str = "test", *, limit: int | None = None, path: str | Path | None = None) -> list[Query]:
    return select(read_queries(path), split, limit)


def target_class_ids(queries: list[Query]) -> list[int]:
    """Sorted class ids that occur as targets (273 for the full CSV): the accuracy's label set."""
    return sorted({q.target_id for q in queries})


__all__ = ["Query", "read_queries", "load_queries", "select", "target_class_ids", "queries_csv_path", "SPLITS"]
