"""``editrt evaluate``: FlexIT's protocol (paper §4.1, Table 1) on ImageNet or on the toy world.

    editrt evaluate --imagenet-root /data/imagenet --split test --method flexit -o runs/flexit
    editrt evaluate --toy --split test -o runs/toy            # offline, shipped toy models
    editrt evaluate --toy --family stylespace -o runs/toy-style   # the direction methods + FlexIT (eval/stylespace.py)

ImageNet needs: the validation images in wnid folders (``--imagenet-root``), training images for
the reference statistics (``--imagenet-train``, default ROOT/train) or a statistics file
(``--stats``), and the judges' weights in the store or ``--weights-dir`` (``eval/deit``,
``eval/inception``, ``lpips/alex``, FlexIT's CLIP and VQGAN: see ``editrt weights``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli_args import BACKEND_CHOICES, check_device, int_at_least, seed
from ..errors import InputError
from .assembly import BASELINES, baseline_names, build_evaluation

def add_subcommands(sub) -> None:
    p = sub.add_parser("evaluate", help="FlexIT's evaluation protocol (accuracy, LPIPS, SFID, CSFID)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--imagenet-root", type=Path, help="ImageNet validation images (wnid folders)")
    where.add_argument("--toy", action="store_true", help="the offline toy world with the shipped toy models")
    p.add_argument("--family", choices=["flexit", "stylespace"], default="flexit",
                   help="stylespace: the toy protocol of the StyleGAN2 direction methods beside FlexIT (--toy only)")
    p.add_argument("--sources", choices=["generated", "inverted"], default="generated",
                   help="stylespace: edit confident generator samples or the queries' inverted world images")
    p.add_argument("--imagenet-train", type=Path, help="ImageNet training images (default ROOT/train)")
    p.add_argument("--stats", type=Path, help="precomputed reference statistics (safetensors, as written to OUT)")
    p.add_argument("--stats-per-class", type=int_at_least(1), default=None,
                   help="training images per target class for the statistics (default 100 ImageNet, 64 toy)")
    p.add_argument("--split", choices=["test", "dev", "all"], default="test", help="query split (default test)")
    p.add_argument("--limit", type=int_at_least(1), help="only the first N queries of the split")
    p.add_argument("--method", choices=["flexit", "none"], default="flexit",
                   help="the method evaluated besides the baselines ('none': baselines only)")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="comma-separated subset of COPY,ENCODE,RETRIEVE ('' for none)")
    p.add_argument("--config", type=Path, help="FlexITConfig overrides as JSON or YAML")
    p.add_argument("--preset", help="FlexITConfig preset (default: paper; the toy world's own settings with --toy)")
    p.add_argument("--steps", type=int_at_least(0), help="FlexIT steps (default: the config's)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8, help="queries edited together (default 8)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the edits and of RETRIEVE (default 0)")
    p.add_argument("--grid-rows", type=int_at_least(1), default=8, help="example rows in the summary grid (default 8)")
    p.add_argument("-o", "--output-dir", type=Path, required=True,
                   help="run folder: results, summary and grid (a rerun resumes from its results)")
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--download", action="store_true", help="download missing checkpoints from their public source")
    p.add_argument("--random-weights", action="store_true",
                   help="ImageNet: seeded random judges and method (a smoke run of the pipeline; meaningless numbers)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints that need full unpickling (executes code: trusted files only)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--backend", default="torch", choices=BACKEND_CHOICES,
                   help="runtime of FlexIT's one-time encoders and final decode (auto: torch)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of those stages (engine artifacts of that precision; torch: autocast)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from ..jobs.cli_args import add_ray_args

    add_ray_args(p, "query batches (actors holding one editor each; this process writes every result)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    out = args.output_dir
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir {out} is a file; give a folder")
    names = baseline_names(args)
    check_device(args.device)
    created = _created_folders(out)
    try:
        return _evaluate(args, out, names)
    except BaseException:
        _remove_empty_folders(out, created)  # a failed run (full disk, ...) leaves no empty folders behind
        raise


def _created_folders(out: Path) -> list[Path]:
    """Create ``out`` (and missing parents); return the folders this call created, deepest first."""
    missing = [p for p in [out, *out.parents] if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty_folders(out: Path, created: list[Path]) -> None:
    """Remove the empty folders below ``out`` (deepest first), then ``out`` and the parents this
    run created if they are empty too. Folders holding results are kept, so a rerun resumes."""
    import os

    if out.is_dir():
        for root, _dirs, _files in os.walk(out, topdown=False):
            if Path(root) != out:
                try:
                    Path(root).rmdir()  # only succeeds when empty
                except OSError:
                    pass
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return


def _evaluate(args, out: Path, names: list[str]) -> int:
    from ..imageio import check_output_path
    from . import protocol

    check_output_path(out / "summary.png")  # writable folder, before any model loads
    if args.family == "stylespace":
        return _stylespace(args, out)
    world, run, per_class = build_evaluation(args)
    stats = None
    if args.stats:
        from .metrics import ReferenceStats

        stats = ReferenceStats.load(args.stats)
    kw = dict(split=args.split, limit=args.limit, stats=stats, stats_per_class=per_class, grid_rows=args.grid_rows,
              progress=not args.no_progress)
    if args.ray is not None:
        from ..jobs.evaluate import evaluate_on_ray

        report = evaluate_on_ray(args, world, run, out, **kw)
    else:
        report = protocol.evaluate(world, run, out, **kw)
    print(f"editrt evaluate: {world.name} world, split {args.split}, {report.summary['queries']} queries "
          f"({report.new_results} new results, {report.skipped} reused)")
    print(protocol.format_table(report.summary))
    print(f"  summary  {out / protocol.SUMMARY_FILE}\n  results  {out / protocol.RESULTS_FILE}\n"
          f"  examples {out / protocol.GRID_FILE}")
    return 0


def _stylespace(args, out: Path) -> int:
    from ..toy.models import load_toy_style
    from . import stylespace

    if not args.toy:
        raise InputError("--family stylespace runs on the toy world: add --toy")
    summary = stylespace.evaluate_stylespace(
        load_toy_style(device=args.device), out, split=args.split, limit=args.limit, sources=args.sources,
        flexit=args.method == "flexit", flexit_steps=args.steps, seed=args.seed, progress=not args.no_progress)
    print(f"editrt evaluate: toy StyleGAN2 world, split {summary['split']} ({summary['queries']} queries, settings "
          f"selected on {summary['select_split']}), sources {summary['source_origins']}, {summary['seconds']:.0f} s")
    print(stylespace.format_table(summary))
    print(f"  summary  {out / stylespace.SUMMARY_FILE}\n  examples {out / stylespace.GRID_FILE}")
    return 0


__all__ = ["add_subcommands", "cmd_evaluate"]
