"""The evaluation run: queries x runners -> per-query results, a summary table, an example grid.

Output folder layout::

    results.jsonl            one line per (runner, query): ids, prediction, LPIPS, features, image
    images/<runner>/<id>.png the output of each query (8-bit, as the reference saves them)
    reference_stats.safetensors  feature statistics of the target classes' training images
    summary.json             one row per runner: accuracy %, LPIPS x100, SFID, CSFID (Table 1 units)
    examples.png             inputs and every runner's outputs for the first queries

Resuming: lines already in results.jsonl with the runner's current fingerprint are kept and their
queries skipped; a torn last line (an interrupted write) is ignored and redone. Each PNG is written
atomically before its line is appended, and each batch's lines are flushed and fsynced together.
Metrics are computed on the 8-bit outputs, as eval.py reads them from PNG files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from .. import imageio
from ..files import append_jsonl, iter_jsonl
from ..errors import InputError
from ..models.preprocess import resize_center_crop
from . import metrics as M
from .queries import Query
from .runners import Runner
from .worlds import World

log = logging.getLogger(__name__)

# (runner, batches) -> (batch, records, outputs) per batch, in any order.
BatchExecutor = Callable[[Runner, list[list[Query]]], Iterable[tuple[list[Query], list[dict], list[torch.Tensor]]]]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
GRID_FILE = "examples.png"
STATS_FILE = "reference_stats.safetensors"
UNITS = {"accuracy": "% of queries whose restricted argmax is the target", "unedited": "% predicted as the source",
         "lpips": "LPIPS-alex x 100 (256 px)", "sfid": "diagonal-covariance Frechet distance",
         "csfid": "mean over target classes of per-class SFID",
         "sfid_mean": "mean term only (the reference eval.py value)", "csfid_mean": "mean term only, per class"}


def read_results(path: Path) -> list[dict]:
    """Complete lines of a results file (a torn last line is dropped)."""
    return [rec for rec in iter_jsonl(path) if {"runner", "fingerprint", "query_id"} <= set(rec)]


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


@dataclasses.dataclass
class RunReport:
    summary: dict
    new_results: int
    skipped: int
    out_dir: Path


def evaluate(world: World, runners: Sequence[Runner], out_dir: str | Path, *, split: str = "test",
             limit: int | None = None, stats: M.ReferenceStats | None = None, stats_per_class: int = 64,
             grid_rows: int = 8, progress: bool = True, executor: BatchExecutor | None = None) -> RunReport:
    """Run every runner on the split's queries (resuming), then write the summary and the grid.

    ``executor(runner, batches)`` computes the batches elsewhere (``editrt.jobs.evaluate`` runs
    them on Ray actors) and yields ``(batch, records, outputs)`` in any order, as
    :func:`compute_batch` returns them; by default they are computed here, in order.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [r.name for r in runners]
    if len(set(names)) != len(names):
        raise InputError(f"runner names must be unique, got {names}")
    queries = world.queries(split, limit)
    if not queries:
        raise InputError(f"no queries in split {split!r}")
    results_path = out / RESULTS_FILE
    existing = read_results(results_path)
    new, skipped = 0, 0
    for runner in runners:
        done = {r["query_id"] for r in existing if r["runner"] == runner.name and r["fingerprint"] == runner.fingerprint}
        stale = sum(1 for r in existing if r["runner"] == runner.name and r["fingerprint"] != runner.fingerprint)
        if stale:
            log.warning("%s: %d earlier results have other settings and are not reused", runner.name, stale)
        todo = [q for q in queries if q.query_id not in done]
        skipped += len(queries) - len(todo)
        img_dir = out / "images" / _safe_name(runner.name)
        img_dir.mkdir(parents=True, exist_ok=True)
        batches = [todo[start:start + runner.batch_size] for start in range(0, len(todo), runner.batch_size)]
        bar = tqdm(total=len(todo), desc=runner.name, unit="query", disable=not progress or not todo, leave=False)
        computed = (executor(runner, batches) if executor is not None
                    else ((b, *compute_batch(world, runner, b)) for b in batches))
        for batch, records, outputs in computed:  # this process is the only writer of `out`
            _store_batch(records, outputs, img_dir, out)
            append_jsonl(results_path, records)
            existing.extend(records)
            new += len(records)
            bar.update(len(batch))
        bar.close()
    if stats is None:
        stats = reference_stats(world, out, stats_per_class, progress=progress)
    summary = summarize(world, runners, queries, existing, stats, split=split)
    imageio.atomic_write_bytes(out / SUMMARY_FILE, json.dumps(summary, indent=2).encode())
    write_grid(world, runners, queries[:grid_rows], existing, out)
    return RunReport(summary=summary, new_results=new, skipped=skipped, out_dir=out)


def compute_batch(world: World, runner: Runner, batch: list[Query]) -> tuple[list[dict], list[torch.Tensor]]:
    """Run ``runner`` on ``batch`` and judge its outputs; nothing is written.

    Returns one record per query (without its ``image`` path) and the outputs [3, H, W] as 8-bit
    values in [0, 1].
    """
    inputs = [M.quantize_uint8(world.input_image(q)) for q in batch]  # as 8-bit files hold them
    t0 = time.perf_counter()
    outputs = list(runner(inputs, batch, world))
    seconds = (time.perf_counter() - t0) / len(batch)
    if len(outputs) != len(batch):
        raise InputError(f"{runner.name} returned {len(outputs)} images for {len(batch)} queries")
    outputs = [M.quantize_uint8(o.float()) for o in outputs]
    for o in outputs:
        if o.ndim != 3 or o.shape[0] != 3:
            raise InputError(f"{runner.name} returned an image of shape {tuple(o.shape)}; expected [3, H, W]")
    preds = world.predict(outputs)
    lp = world.lpips(outputs, inputs)
    feats = world.features(outputs)
    records = []
    for k, q in enumerate(batch):
        records.append({
            "runner": runner.name, "fingerprint": runner.fingerprint, "query_id": q.query_id,
            "source_id": q.source_id, "target_id": q.target_id, "is_test": q.is_test,
            "pred_id": int(preds[k]), "correct": int(preds[k]) == q.target_id, "unedited": int(preds[k]) == q.source_id,
            "lpips": float(lp[k]), "seconds": seconds,
            "features": [round(float(v), 6) for v in feats[k]]})
    return records, outputs


def _store_batch(records: list[dict], outputs: list[torch.Tensor], img_dir: Path, out: Path) -> None:
    """Write each output PNG (atomically) and put its path into the record."""
    for rec, o in zip(records, outputs):
        path = img_dir / f"{rec['query_id']:06d}.png"
        imageio.save_image(o, path)
        rec["image"] = str(path.relative_to(out))


def reference_stats(world: World, out: Path, per_class: int, *, progress: bool = True) -> M.ReferenceStats:
    """Cached in ``out``: the statistics of ``per_class`` training images of each target class."""
    path = out / STATS_FILE
    if path.is_file():
        st = M.ReferenceStats.load(path)
        if set(st.per_class) >= set(world.class_ids()):
            return st
        log.warning("%s misses classes; recomputing", path)
    st = world.reference_stats(world.class_ids(), per_class, progress=progress)
    st.save(path)
    return st


def summarize(world: World, runners: Sequence[Runner], queries: Sequence[Query], results: list[dict],
              stats: M.ReferenceStats, *, split: str) -> dict:
    wanted = {q.query_id for q in queries}
    rows = []
    for runner in runners:
        recs = {r["query_id"]: r for r in results
                if r["runner"] == runner.name and r["fingerprint"] == runner.fingerprint and r["query_id"] in wanted}
        recs = [recs[i] for i in sorted(recs)]
        if not recs:
            continue
        feats = torch.tensor([r["features"] for r in recs], dtype=torch.float64)
        targets = torch.tensor([r["target_id"] for r in recs])
        n = len(recs)
        rows.append({
            "method": runner.name, "n": n,
            "accuracy": 100.0 * sum(r["correct"] for r in recs) / n,
            "unedited": 100.0 * sum(r["unedited"] for r in recs) / n,
            "lpips": 100.0 * sum(r["lpips"] for r in recs) / n,
            "sfid": M.sfid(feats, stats.overall), "csfid": M.csfid(feats, targets, stats.per_class),
            "sfid_mean": M.sfid(feats, stats.overall, covariance=False),
            "csfid_mean": M.csfid(feats, targets, stats.per_class, covariance=False),
            "seconds_per_query": sum(r["seconds"] for r in recs) / n,
            "fingerprint": runner.fingerprint, "settings": runner.settings()})
    return {"split": split, "queries": len(queries), "rows": rows, "units": UNITS,
            "reference_images": {"per_class": stats.per_class[next(iter(stats.per_class))].count,
                                 "classes": len(stats.per_class)},
            **world.describe()}


def format_table(summary: dict) -> str:
    """Table 1 of the paper: method, LPIPS, Acc., CSFID, SFID."""
    lines = [f"{'method':<12} {'n':>5} {'LPIPS':>7} {'Acc.%':>7} {'CSFID':>9} {'SFID':>9}"]
    for r in summary["rows"]:
        lines.append(f"{r['method']:<12} {r['n']:>5} {r['lpips']:>7.1f} {r['accuracy']:>7.1f} "
                     f"{r['csfid']:>9.3f} {r['sfid']:>9.3f}")
    return "\n".join(lines)


def write_grid(world: World, runners: Sequence[Runner], queries: Sequence[Query], results: list[dict], out: Path,
               cell: int = 128) -> Path | None:
    """examples.png: one row per query (input, then each runner's output), captions on top."""
    from PIL import Image, ImageDraw

    by_key = {(r["runner"], r["query_id"]): r for r in results}
    rows = [q for q in queries if all((rn.name, q.query_id) in by_key for rn in runners)]
    if not rows:
        return None
    cols = ["input"] + [r.name for r in runners]
    head, label_w = 18, 210
    grid = Image.new("RGB", (label_w + cell * len(cols), head + cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, name in enumerate(cols):
        draw.text((label_w + j * cell + 4, 3), name, fill="black")
    for i, q in enumerate(rows):
        y = head + i * cell
        draw.text((4, y + cell // 2 - 12), f"#{q.query_id}: {q.source[:28]}", fill="black")
        draw.text((4, y + cell // 2 + 2), f"-> {q.target[:30]}", fill="black")
        tiles = [world.input_image(q)]
        for rn in runners:  # our own 8-bit outputs (no input validation: toy images are small)
            with Image.open(out / by_key[(rn.name, q.query_id)]["image"]) as im:
                tiles.append(imageio.pil_to_tensor(im))
        for j, t in enumerate(tiles):
            t = resize_center_crop(t[None], cell)[0]
            grid.paste(imageio.tensor_to_pil(t.clamp(0, 1), rounding="round"), (label_w + j * cell, y))
    path = out / GRID_FILE
    imageio.save_image(grid, path)
    return path


__all__ = ["evaluate", "compute_batch", "BatchExecutor", "summarize", "format_table", "write_grid", "read_results",
           "iter_jsonl", "reference_stats", "RunReport", "RESULTS_FILE", "SUMMARY_FILE", "GRID_FILE", "STATS_FILE"]
