"""``editrt batch MANIFEST -o DIR [--ray [ADDRESS]]``: bulk edits from a CSV or JSONL manifest."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_subcommands(sub) -> None:
    from ..jobs.cli_args import add_ray_args

    p = sub.add_parser("batch", help="edit every row of a CSV/JSONL manifest (resumable; --ray for a cluster)",
                       description="Columns: id, image, method (flexit|global|feu|deltaedit), source, target, "
                                   "strength, seed, settings (JSON object). Writes DIR/<id>.png per row and "
                                   "DIR/results.jsonl; a re-run skips the rows already done; a bad row is "
                                   "recorded as that row's error.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("manifest", type=Path, help="rows to edit (.csv with a header, or .jsonl)")
    p.add_argument("-o", "--output-dir", required=True, type=Path,
                   help="folder of the outputs and results.jsonl (a re-run resumes)")
    p.add_argument("--preset", help="FlexITConfig preset of the flexit rows (default: paper; tiny with --random-weights)")
    p.add_argument("--generator", help="StyleGAN2 of the global/feu/deltaedit rows")
    p.add_argument("--clip", help="CLIP model of the global/feu/deltaedit rows")
    p.add_argument("--fs3", type=Path, help="relevance matrix of the global/feu rows")
    p.add_argument("--stats", type=Path, help="channel statistics of the direction methods")
    p.add_argument("--corpus", type=Path, help="FEU corpus index (editrt corpus build)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_ray_args(p, "rows (actors holding the editors; this process writes every output)")
    from ..cli_args import add_weights_args

    add_weights_args(p)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from . import BatchOptions, run
    from ..jobs.cli_args import ray_address

    path = lambda p: str(p) if p is not None else None  # noqa: E731
    options = BatchOptions(weights=path(args.weights_dir), random_init=args.random_weights, device=args.device,
                           download=args.download, allow_pickle=args.allow_pickle, preset=args.preset,
                           generator=args.generator, clip=args.clip, fs3=path(args.fs3), stats=path(args.stats),
                           corpus=path(args.corpus))
    ray = False if args.ray is None else (ray_address(args) or True)
    report = run(args.manifest, args.output_dir, options=options, ray=ray, workers=args.workers,
                 progress=not args.no_progress)
    print(f"editrt batch: {report.rows} rows: {report.edited} edited, {report.failed} failed, "
          f"{report.skipped} already done -> {report.out_dir}")
    for rec in report.records:
        if rec["status"] != "ok":
            print(f"  {rec['id']}: {rec.get('error_type', 'error')}: {rec.get('error')}")
    if args.random_weights:
        from ..cli_args import RANDOM_WEIGHTS_WARNING

        print(RANDOM_WEIGHTS_WARNING)
    return 0 if report.failed == 0 else 2


__all__ = ["add_subcommands", "cmd_batch"]
