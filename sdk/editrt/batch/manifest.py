"""Bulk-edit manifests: one row per edit, from a CSV or JSONL file or from Python dicts.

Columns (CSV header / JSON keys); only ``target`` is always needed:

    id        output name (default: the row number, 000000, 000001, ...); letters, digits, - _ .
    image     input image (relative paths start at the manifest's folder); StyleGAN methods may
              instead edit the generator sample of ``seed``
    method    flexit (default) | global | feu | deltaedit
    source    text describing the input (FlexIT source; neutral text of global/deltaedit)
    target    text of the wanted result
    strength  global/feu: alpha; deltaedit: multiplier of the predicted delta (FlexIT has none)
    seed      FlexIT's edit seed, or the generator sample edited when there is no image (default 0)
    settings  JSON object: the method's config options and edit options (``steps``, ``beta``, ``k``,
              ``threshold``)

A row that cannot be parsed (a bad number, malformed JSON) keeps its problem in ``Row.problem``:
the job records it as that row's error and goes on.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import InputError

METHODS = ("flexit", "global", "feu", "deltaedit")
COLUMNS = ("id", "image", "method", "source", "target", "strength", "seed", "settings")


@dataclasses.dataclass(frozen=True)
class Row:
    """One edit of a batch. ``problem`` is set when the row itself is unusable."""

    index: int
    id: str
    target: str = ""
    image: str | None = None
    method: str = "flexit"
    source: str | None = None
    strength: float | None = None
    seed: int = 0
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    problem: str | None = None

    def fingerprint(self) -> str:
        """Hash of what defines the output (not the index): a changed row is redone."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("index", "problem")}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_id(text: str) -> str:
    if not text or not all(ch.isalnum() or ch in "-_." for ch in text) or text.startswith("."):
        raise InputError(f"row id {text!r} is not usable as a file name: use letters, digits, '-', '_' and '.'")
    return text


def _number(value: Any, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ValueError(f"{what} {value!r} is not finite")
    return x


def _parse_row(index: int, data: Mapping[str, Any], base: Path | None) -> Row:
    """A Row from one record; a value problem goes to ``problem``."""
    rid, bad_id = str(data.get("id") or f"{index:06d}").strip(), None
    try:
        _check_id(rid)
    except InputError as exc:  # keep the row (as an error) under its number
        rid, bad_id = f"{index:06d}", str(exc)
    unknown = sorted(set(data) - set(COLUMNS))

    def text(key):
        v = data.get(key)
        return None if v is None or (isinstance(v, str) and not v.strip()) else str(v)

    fields: dict[str, Any] = {"index": index, "id": rid, "target": (text("target") or "").strip(),
                              "source": text("source"), "method": (text("method") or "flexit").strip().lower()}
    try:
        if bad_id:
            raise ValueError(bad_id)
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; known: {', '.join(COLUMNS)}")
        image = text("image")
        if image is not None:
            p = Path(image).expanduser()
            fields["image"] = str(p if p.is_absolute() or base is None else base / p)
        if text("strength") is not None:
            fields["strength"] = _number(data["strength"], "strength")
        if text("seed") is not None:
            seed = _number(data["seed"], "seed")
            if seed != int(seed):
                raise ValueError(f"seed {data['seed']!r} is not an integer")
            fields["seed"] = int(seed)
        settings = data.get("settings")
        if isinstance(settings, str):
            settings = json.loads(settings) if settings.strip() else {}
        if settings is not None and not isinstance(settings, dict):
            raise ValueError(f"settings must be a JSON object, got {type(settings).__name__}")
        fields["settings"] = dict(settings or {})
    except (ValueError, TypeError) as exc:
        return Row(**{**fields, "problem": f"row {rid}: {exc}"})
    return Row(**fields)


def rows_from(records: Iterable[Mapping[str, Any] | Row], *, base: str | Path | None = None) -> list[Row]:
    """Rows from dicts (or Rows); ids must be unique. ``base``: folder of relative image paths."""
    rows = []
    for i, rec in enumerate(records):
        if isinstance(rec, Row):
            rows.append(rec)
        elif isinstance(rec, Mapping):
            rows.append(_parse_row(i, rec, Path(base) if base is not None else None))
        else:
            raise InputError(f"manifest row {i} must be a mapping of column -> value, got {type(rec).__name__}")
    seen: dict[str, int] = {}
    for r in rows:
        if r.id in seen:
            raise InputError(f"rows {seen[r.id]} and {r.index} have the same id {r.id!r}; ids name the outputs")
        seen[r.id] = r.index
    return rows


def read_manifest(path: str | Path) -> list[Row]:
    """Rows of a ``.csv`` (with a header) or ``.jsonl`` (one object per line) manifest."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path} does not exist")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"manifest {path} is unreadable: {exc}") from None
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "target" not in [f.strip() for f in reader.fieldnames]:
            raise InputError(f"manifest {path} needs a header line with at least a 'target' column "
                             f"(columns: {', '.join(COLUMNS)})")
        # Cells beyond the header land under the key None (csv module): named so the row's error says so.
        records: list[Mapping[str, Any]] = [{(k.strip() if k is not None else "<cells beyond the header>"): v
                                             for k, v in rec.items()} for rec in reader]
    elif suffix in (".jsonl", ".ndjson"):
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                rec = {"id": f"line{n:06d}", "_bad": f"line {n} is not valid JSON: {exc.msg}"}  # that row's error
            if not isinstance(rec, dict):
                rec = {"id": f"line{n:06d}", "_bad": f"line {n} is not a JSON object"}
            records.append(rec)
    else:
        raise InputError(f"manifest {path}: use a .csv or .jsonl file")
    if not records:
        raise InputError(f"manifest {path} has no rows")
    rows = rows_from([{k: v for k, v in r.items() if k != "_bad"} for r in records], base=path.parent)
    return [dataclasses.replace(row, problem=rec["_bad"]) if "_bad" in rec else row
            for row, rec in zip(rows, records)]


__all__ = ["Row", "read_manifest", "rows_from", "METHODS", "COLUMNS"]
