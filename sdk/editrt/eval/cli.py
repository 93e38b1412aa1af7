"""``editrt evaluate``: FlexIT's protocol (paper §4.1, Table 1) on ImageNet or on the toy world.

    editrt evaluate --imagenet-root /data/imagenet --split test --method flexit -o runs/flexit
    editrt evaluate --toy --split test -o runs/toy            # offline, shipped toy models

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


def add_subcommands(sub) -> None:
    p = sub.add_parser("evaluate", help="FlexIT's evaluation protocol (accuracy, LPIPS, SFID, CSFID)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--imagenet-root", type=Path, help="ImageNet validation images (wnid folders)")
    where.add_argument("--toy", action="store_true", help="the offline toy world with the shipped toy models")
    p.add_argument("--imagenet-train", type=Path, help="ImageNet training images (default ROOT/train)")
    p.add_argument("--stats", type=Path, help="precomputed reference statistics (safetensors, as written to OUT)")
    p.add_argument("--stats-per-class", type=int, default=None,
                   help="training images per target class for the statistics (default 100 ImageNet, 64 toy)")
    p.add_argument("--split", choices=["test", "dev", "all"], default="test")
    p.add_argument("--limit", type=int, help="only the first N queries of the split")
    p.add_argument("--method", choices=["flexit", "none"], default="flexit",
                   help="the method evaluated besides the baselines ('none': baselines only)")
    p.add_argument("--baselines", default=",".join(BASELINES),
                   help="comma-separated subset of COPY,ENCODE,RETRIEVE ('' for none)")
    p.add_argument("--config", type=Path, help="FlexITConfig overrides as JSON or YAML")
    p.add_argument("--preset", help="FlexITConfig preset (default: paper; the toy world's own settings with --toy)")
    p.add_argument("--steps", type=int, help="FlexIT steps (default: the config's)")
    p.add_argument("--batch-size", type=int, default=8, help="queries edited together")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-rows", type=int, default=8)
    p.add_argument("-o", "--output-dir", type=Path, required=True)
    p.add_argument("--weights-dir", type=Path)
    p.add_argument("--download", action="store_true")
    p.add_argument("--random-weights", action="store_true",
                   help="ImageNet: seeded random judges and method (a smoke run of the pipeline; meaningless numbers)")
    p.add_argument("--allow-pickle", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"],
                   help="runtime of FlexIT's one-time encoders and final decode")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of those stages (engine artifacts of that precision; torch: autocast)")
    p.add_argument("--no-progress", action="store_true")
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
    from ..imageio import check_output_path
    from . import protocol, runners

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    check_output_path(out / "summary.png")  # writable folder, before any model loads
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
    stats = None
    if args.stats:
        from .metrics import ReferenceStats

        stats = ReferenceStats.load(args.stats)
    report = protocol.evaluate(world, run, out, split=args.split, limit=args.limit, stats=stats,
                               stats_per_class=per_class, grid_rows=args.grid_rows, progress=not args.no_progress)
    print(f"editrt evaluate: {world.name} world, split {args.split}, {report.summary['queries']} queries "
          f"({report.new_results} new results, {report.skipped} reused)")
    print(protocol.format_table(report.summary))
    print(f"  summary  {out / protocol.SUMMARY_FILE}\n  results  {out / protocol.RESULTS_FILE}\n"
          f"  examples {out / protocol.GRID_FILE}")
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


__all__ = ["add_subcommands", "cmd_evaluate"]
