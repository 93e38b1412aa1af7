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
import json
from pathlib import Path

from ..errors import InputError

BASELINES = ("COPY", "ENCODE", "RETRIEVE")


def _int_at_least(minimum: int):
    from ..cli import int_at_least

    return int_at_least(minimum)


def _seed(text: str) -> int:
    from ..cli import seed

    return seed(text)


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
    p.add_argument("--stats-per-class", type=_int_at_least(1), default=None,
                   help="training images per target class for the statistics (default 100 ImageNet, 64 toy)")
    p.add_argument("--split", choices=["test", "dev", "all"], default="test", help="query split (default test)")
    p.add_argument("--limit", type=_int_at_least(1), help="only the first N queries of the split")
    p.add_argument("--method", choices=["flexit", "none"], default="flexit",
                   help="the method evaluated besides the baselines ('none': baselines only)")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="comma-separated subset of COPY,ENCODE,RETRIEVE ('' for none)")
    p.add_argument("--config", type=Path, help="FlexITConfig overrides as JSON or YAML")
    p.add_argument("--preset", help="FlexITConfig preset (default: paper; the toy world's own settings with --toy)")
    p.add_argument("--steps", type=_int_at_least(0), help="FlexIT steps (default: the config's)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=8, help="queries edited together (default 8)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the edits and of RETRIEVE (default 0)")
    p.add_argument("--grid-rows", type=_int_at_least(1), default=8, help="example rows in the summary grid (default 8)")
    p.add_argument("-o", "--output-dir", type=Path, required=True,
                   help="run folder: results, summary and grid (a rerun resumes from its results)")
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--download", action="store_true", help="download missing checkpoints from their public source")
    p.add_argument("--random-weights", action="store_true",
                   help="ImageNet: seeded random judges and method (a smoke run of the pipeline; meaningless numbers)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints that need full unpickling (executes code: trusted files only)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"],
                   help="runtime of FlexIT's one-time encoders and final decode")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of those stages (engine artifacts of that precision; torch: autocast)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    from ..jobs.cli_args import add_ray_args

    add_ray_args(p, "query batches (actors holding one editor each; this process writes every result)")
    p.set_defaults(func=cmd_evaluate)


def _config(args, default):
    from ..config import FlexITConfig

    cfg = FlexITConfig.preset(args.preset) if args.preset else default
    if args.config:
        overrides = FlexITConfig.from_file(args.config)
        base = FlexITConfig()
        cfg = cfg.replace(**{k: v for k, v in overrides.to_dict().items() if v != base.to_dict()[k]})
    return cfg


def _baselines(args) -> list[str]:
    names = [b.strip().upper() for b in args.baselines.split(",") if b.strip()]
    bad = sorted(set(names) - set(BASELINES))
    if bad:
        raise InputError(f"unknown baseline(s) {bad}; use {', '.join(BASELINES)}")
    return names


def cmd_evaluate(args) -> int:
    out = args.output_dir
    if out.exists() and not out.is_dir():
        raise InputError(f"--output-dir {out} is a file; give a folder")
    names = _baselines(args)
    from ..cli import check_device

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


def build_evaluation(args):
    """(world, runners, reference images per class) of an ``evaluate`` command line; Ray actors
    call it with the same arguments to hold identical copies."""
    from . import runners

    names = _baselines(args)
    if args.toy:
        if args.random_weights:
            raise InputError("--random-weights applies to ImageNet runs; the toy world uses its trained models")
        world, vqgan, cfg, tag, models = _toy_world(args)
        per_class = args.stats_per_class or 64
    else:
        world, vqgan, cfg, tag, models = _imagenet_world(args, names)
        per_class = args.stats_per_class or 100
    run = []
    for name in names:
        if name == "COPY":
            run.append(runners.CopyRunner())
        elif name == "ENCODE":
            run.append(runners.EncodeRunner(vqgan, cfg.image_size, tag=tag))
        else:
            run.append(runners.RetrieveRunner(seed=args.seed))
    if args.method == "flexit":
        from ..methods.flexit import FlexIT

        editor = FlexIT(cfg, device=args.device, weights=models.get("weights"), models=models.get("flexit"),
                        random_init=bool(args.random_weights and not args.toy), seed=args.seed,
                        download=args.download, allow_pickle=args.allow_pickle, backend=args.backend,
                        precision=args.precision)
        run.append(runners.FlexITRunner(editor, steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                                        weights_tag=tag))
    if not run:
        raise InputError("nothing to evaluate: --method none and no baselines")
    return world, run, per_class


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


def _toy_world(args):
    from ..toy import models as TM
    from .worlds import ToyWorld

    models = TM.load_toy_models(device=args.device)
    cfg = _config(args, TM.TOY_FLEXIT)
    tag = "toy:" + json.dumps({k: v["sha256"][:12] for k, v in TM.manifest().get("models", {}).items()}, sort_keys=True)
    return ToyWorld(models, device=args.device), models.vqgan, cfg, tag, {"flexit": models.flexit_models()}


def _imagenet_world(args, baselines):
    from ..config import FlexITConfig
    from ..models.lpips import load_lpips
    from ..models.vqgan import load_vqgan
    from .backbones import load_deit, load_inception
    from .worlds import ImageNetWorld

    if not args.imagenet_root.is_dir():
        raise InputError(f"--imagenet-root {args.imagenet_root} is not a folder")
    cfg = _config(args, FlexITConfig())
    kw = dict(weights=args.weights_dir, device=args.device, download=args.download, random_init=args.random_weights)
    world = ImageNetWorld(args.imagenet_root, train_root=args.imagenet_train, classifier=load_deit(**kw),
                          features=load_inception(**kw), lpips=load_lpips("alex", **kw), device=args.device)
    vqgan = None
    if "ENCODE" in baselines:
        vqgan = load_vqgan(cfg.vqgan, allow_pickle=args.allow_pickle, **kw)
    tag = "random" if args.random_weights else f"weights:{args.weights_dir or 'store'}"
    flexit_models = {"vqgan": vqgan} if vqgan is not None else None
    return world, vqgan, cfg, tag, {"weights": args.weights_dir, "flexit": flexit_models}


__all__ = ["add_subcommands", "cmd_evaluate", "build_evaluation"]
