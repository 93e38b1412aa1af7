"""What an ``evaluate`` command line builds: the world, the runners (baselines and the method)
and the per-class reference count. The CLI and each Ray evaluation actor call
:func:`build_evaluation` with the same arguments, so every process holds identical copies."""

from __future__ import annotations

import json

from ..errors import InputError

BASELINES = ("COPY", "ENCODE", "RETRIEVE")


def _config(args, default):
    from ..config import FlexITConfig

    cfg = FlexITConfig.preset(args.preset) if args.preset else default
    if args.config:
        overrides = FlexITConfig.from_file(args.config)
        base = FlexITConfig()
        cfg = cfg.replace(**{k: v for k, v in overrides.to_dict().items() if v != base.to_dict()[k]})
    return cfg


def baseline_names(args) -> list[str]:
    names = [b.strip().upper() for b in args.baselines.split(",") if b.strip()]
    bad = sorted(set(names) - set(BASELINES))
    if bad:
        raise InputError(f"unknown baseline(s) {bad}; use {', '.join(BASELINES)}")
    return names


def build_evaluation(args):
    """(world, runners, reference images per class) of an ``evaluate`` command line; Ray actors
    call it with the same arguments to hold identical copies."""
    from . import runners

    names = baseline_names(args)
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


__all__ = ["BASELINES", "baseline_names", "build_evaluation"]
