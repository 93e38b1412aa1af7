"""The bulk-edit job: rows -> ``<id>.png`` per row plus ``results.jsonl``, here or on Ray.

The caller's process is the only writer of the output folder: each image is written atomically,
then its line is appended to ``results.jsonl`` (flushed and fsynced). A later line for the same id
supersedes an earlier one. Resuming: a row whose last line is ``ok`` with the same fingerprint
(row + job options) and whose image exists is skipped; failed rows are tried again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from .. import imageio
from ..errors import InputError
from ..files import append_jsonl, iter_jsonl
from .editing import BatchOptions, RowEditor, check_row
from .manifest import Row, read_manifest, rows_from

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"


@dataclasses.dataclass
class BatchReport:
    """``records``: the current line of every row, in manifest order."""

    rows: int
    edited: int
    failed: int
    skipped: int
    out_dir: Path
    records: list[dict]


def read_records(path: Path) -> dict[str, dict]:
    """The last complete line of each row id in a results file (a torn last line is ignored)."""
    return {rec["id"]: rec for rec in iter_jsonl(path) if isinstance(rec.get("id"), str)}


def _fingerprint(row: Row, options: BatchOptions) -> str:
    return hashlib.sha256(f"{row.fingerprint()}:{options.fingerprint()}".encode()).hexdigest()[:16]


def _is_done(rec: dict | None, fingerprint: str, out: Path) -> bool:
    return bool(rec and rec.get("status") == "ok" and rec.get("fingerprint") == fingerprint
                and (out / str(rec.get("output", ""))).is_file())


def _results_here(rows: list[Row], editor: RowEditor) -> Iterator[tuple[int, dict]]:
    for i, row in enumerate(rows):
        yield i, editor(row)


def _results_on_ray(rows: list[Row], options: BatchOptions, address: str | None, workers: int | None,
                    progress: bool) -> Iterator[tuple[int, dict]]:
    from ..jobs.cli_args import gpus_per_worker
    from ..jobs.cluster import ray_session
    from ..jobs.pool import ActorPool, default_workers

    num_gpus = gpus_per_worker(options.device)
    with ray_session(address) as ray:
        n = workers or default_workers(ray, num_gpus=num_gpus)
        with ActorPool(ray, RowEditor, (options,), workers=min(n, len(rows)), num_gpus=num_gpus) as pool:
            yield from pool.map_unordered(rows, progress=progress, desc="batch", unit="row")


def run(rows: Iterable[Mapping[str, Any] | Row] | str | Path, out_dir: str | Path, *,
        options: BatchOptions | None = None, ray: bool | str = False, workers: int | None = None,
        progress: bool = False, editor: RowEditor | None = None) -> BatchReport:
    """Edit every row (dicts with the manifest columns, Rows, or a manifest path) into ``out_dir``.

    ray: False runs here; True starts a local Ray cluster; a string is a cluster address
    (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``). workers: Ray actors (default: one per GPU
    with a CUDA device, else per CPU). Each actor loads its editors once. editor: a
    :class:`RowEditor` to reuse (its loaded models) when running here; its options are used.
    """
    from tqdm.auto import tqdm

    options = editor.options if editor is not None else (options or BatchOptions())
    rows = read_manifest(rows) if isinstance(rows, (str, Path)) else rows_from(rows)
    if not rows:
        raise InputError("the batch has no rows")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder {out} is a file")
    out.mkdir(parents=True, exist_ok=True)
    imageio.check_output_path(out / "probe.png")  # a writable folder, before any model loads
    inputs = {Path(r.image).resolve() for r in rows if r.image}
    results_path = out / RESULTS_FILE
    latest = read_records(results_path)
    prints = {r.id: _fingerprint(r, options) for r in rows}
    todo, invalid = [], []
    for r in rows:
        if _is_done(latest.get(r.id), prints[r.id], out):
            continue
        try:
            check_row(r)
            if (out / f"{r.id}.png").resolve() in inputs:
                raise InputError(f"row {r.id}: its output {out / (r.id + '.png')} is an input image of this batch; "
                                 "editrt never overwrites an input (give the row another id)")
            todo.append(r)
        except InputError as exc:  # no model needed to know this row fails
            invalid.append((r, {"status": "error", "error": str(exc), "error_type": type(exc).__name__,
                                "seconds": 0.0}))
    skipped = len(rows) - len(todo) - len(invalid)
    edited = failed = 0

    def record(row: Row, res: dict) -> None:
        nonlocal edited, failed
        rec = {"id": row.id, "index": row.index, "fingerprint": prints[row.id], "method": row.method,
               "status": res["status"]}
        if res["status"] == "ok":
            name = f"{row.id}.png"
            imageio.save_image(res["image"], out / name)
            rec["output"] = name
            edited += 1
        else:
            failed += 1
        rec.update({k: v for k, v in res.items() if k not in ("status", "image")})
        append_jsonl(results_path, [rec])
        latest[row.id] = rec

    for row, res in invalid:
        record(row, res)
    log.info("batch: %d rows, %d to edit, %d invalid, %d already done", len(rows), len(todo), len(invalid), skipped)
    if todo:
        if ray is False or ray is None:
            with tqdm(total=len(todo), desc="batch", unit="row", disable=not progress) as bar:
                for i, res in _results_here(todo, editor or RowEditor(options)):
                    record(todo[i], res)
                    bar.update(1)
        else:
            address = None if ray is True else str(ray)
            for i, res in _results_on_ray(todo, options, address, workers, progress):
                record(todo[i], res)
    return BatchReport(rows=len(rows), edited=edited, failed=failed, skipped=skipped, out_dir=out,
                       records=[latest[r.id] for r in rows])


__all__ = ["run", "BatchReport", "read_records", "RESULTS_FILE"]
