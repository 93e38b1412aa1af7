"""``editrt train deltaedit``: text-free training of a Delta Mapper for any generator + CLIP.

    editrt train deltaedit --generator toy --clip tiny -o mapper.safetensors          # the toy world
    editrt train deltaedit --generator church-256 --clip ViT-B-32 --weights-dir ~/editrt -o church.safetensors

``--generator`` is a StyleGAN2 config name (weights from ``--weights-dir`` / the store) or a
checkpoint file; ``toy`` with no ``--weights-dir`` uses the toy world's shipped generator and CLIP.
Re-running the same command resumes from ``<output>.partial.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError


def add_subcommands(sub) -> None:
    from .cli_args import add_weights_args
    from .config import DeltaTrainConfig

    d = DeltaTrainConfig()
    p = sub.add_parser("train", help="train networks editrt has no public weights for")
    tsub = p.add_subparsers(dest="train_command", required=True, metavar="WHAT")
    t = tsub.add_parser("deltaedit", help="train a DeltaEdit Delta Mapper for a generator's S layout (text-free)")
    t.add_argument("--generator", required=True, help="StyleGAN2 config name or checkpoint file ('toy': the toy world)")
    t.add_argument("--clip", required=True, help="CLIP model name (e.g. ViT-B-32; 'tiny' for the toy world)")
    t.add_argument("-o", "--output", required=True, type=Path, help="mapper file (.safetensors)")
    t.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps (default {d.steps})")
    t.add_argument("--batch", type=int, default=d.batch, help=f"pairs per step (default {d.batch}, the reference's)")
    t.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr}, the reference's)")
    t.add_argument("--samples", type=int, default=d.samples,
                   help=f"generator samples the pairs are drawn from (default {d.samples}; reference 200000)")
    t.add_argument("--val-samples", type=int, default=d.val_samples,
                   help=f"generator samples of the validation pairs (default {d.val_samples})")
    t.add_argument("--psi", type=float, default=d.psi, help="truncation of the samples (default 1, the reference's)")
    t.add_argument("--seed", type=int, default=d.seed, help="seed of the training samples, init and pairs")
    t.add_argument("--val-seed", type=int, default=d.val_seed, help="seed of the validation samples and pairs")
    t.add_argument("--pairs", choices=["random", "local"], default=d.pairs,
                   help="training pairs: 'random' = two independent samples (the reference's); 'local' = a sample "
                        "and a neighbour z + SIGMA * N(0, I) of its latent (small changes of one image, like edits)")
    t.add_argument("--pair-sigma", type=float, default=d.pair_sigma, metavar="SIGMA",
                   help=f"latent distance of 'local' pairs (default {d.pair_sigma})")
    t.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"steps between two resumable checkpoints (default {d.checkpoint_every})")
    t.add_argument("--no-resume", action="store_true", help="start over even if a partial checkpoint exists")
    t.add_argument("--report", type=Path, help="also write the training report (JSON) here")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_weights_args(t)
    t.set_defaults(func=cmd_train_deltaedit)


def _load_networks(args):
    from .models.clip import load_clip
    from .models.stylegan2 import StyleGAN2

    kw = dict(random_init=args.random_weights, device=args.device, download=args.download,
              allow_pickle=args.allow_pickle)
    weights = args.weights_dir
    if weights is None and args.generator == "toy" and not args.random_weights:
        from .toy.models import style_weights_mapping

        weights = style_weights_mapping()
    G = StyleGAN2.load(args.generator, weights=weights, **kw)
    clip = load_clip(args.clip, weights=weights, **kw)
    return G, clip


def cmd_train_deltaedit(args) -> int:
    import torch

    from .methods.stylespace.deltaedit_training import DeltaTrainConfig, train_delta_mapper

    if args.output.suffix != ".safetensors":
        raise InputError(f"mapper output {args.output}: use a .safetensors file name")
    if not args.output.parent.exists():
        raise InputError(f"output folder {args.output.parent} does not exist")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    cfg = DeltaTrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, samples=args.samples,
                           val_samples=args.val_samples, psi=args.psi, seed=args.seed, val_seed=args.val_seed,
                           checkpoint_every=args.checkpoint_every, pairs=args.pairs, pair_sigma=args.pair_sigma)
    G, clip = _load_networks(args)
    report = train_delta_mapper(G, clip, args.output, cfg, resume=not args.no_resume, progress=not args.no_progress)
    if args.report is not None:
        from .imageio import atomic_write_bytes

        atomic_write_bytes(args.report, json.dumps(report, indent=2).encode())
    v = report["validation"]
    mc = report["settings"]["mapper_config"]
    print(f"Delta Mapper for {report['settings']['generator']} + CLIP {report['settings']['clip_model']}: "
          f"S width {mc['coarse_layers'] * mc['coarse_width'] + mc['medium_layers'] * mc['medium_width'] + mc['fine_dim']}, "
          f"{report['parameters']:,} parameters")
    print(f"  validation loss {v['loss']:.4f} (mse {v['mse']:.4f}, 1-cos {v['cos_distance']:.4f}; "
          f"predicting no change: {v['zero_prediction_loss']:.4f})")
    print(f"  {cfg.steps} steps, {report['steps_per_second']:.1f} steps/s, sampling {report['sampling_seconds']:.0f} s, "
          f"total {report['seconds']:.0f} s -> {args.output}")
    if args.random_weights:
        from .cli_args import RANDOM_WEIGHTS_WARNING

        print(RANDOM_WEIGHTS_WARNING)
    return 0


__all__ = ["add_subcommands", "cmd_train_deltaedit"]
