"""``editrt style-edit``, ``editrt relevance`` and ``editrt corpus build`` (StyleGAN2 direction edits).

The lead's ``cli.py`` calls :func:`add_subcommands` and maps editrt errors to exit codes.
With ``--random-weights`` every network is the seeded random ``tiny`` variant (offline, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import sys
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

METHODS = ("global", "feu", "deltaedit")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None


def _beta(text: str):
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"beta must be a number or 'auto', got {text!r}") from None


def _weights_args(p: argparse.ArgumentParser) -> None:
    from .cli_args import add_weights_args

    add_weights_args(p)


def _int_at_least(minimum: int):
    from .cli_args import int_at_least

    return int_at_least(minimum)


def _seed(text: str) -> int:
    from .cli_args import seed

    return seed(text)


def _sidecar(out: Path) -> Path:
    """The ``<output>.json`` metadata file StyleEditResult.save writes next to the grid."""
    return out.with_suffix(out.suffix + ".json")


def _network_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator", help="StyleGAN2 config name (default: ffhq-1024; tiny with --random-weights)")
    p.add_argument("--clip", help="CLIP model (default: ViT-B-32; tiny with --random-weights)")


def add_subcommands(sub) -> None:
    from .cli_args import BACKEND_CHOICES

    p = sub.add_parser("style-edit", help="StyleGAN2 edit from text: StyleCLIP global direction, FEU or DeltaEdit")
    p.add_argument("--method", choices=METHODS, default="global",
                   help="global: StyleCLIP global direction; feu: StyleCLIP-FEU; deltaedit: DeltaEdit (default global)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="aligned face photo (inverted with e4e)")
    src.add_argument("--seed", type=_seed, help="edit the generator sample of this seed (psi 0.7; 0..2**32-1)")
    p.add_argument("--target", required=True, help="text of the wanted result ('smiling face')")
    p.add_argument("--neutral", help="text of the unedited image (global/deltaedit; default 'face')")
    p.add_argument("--alpha", type=_floats, help="strength(s), comma-separated (global/feu: alpha; deltaedit: "
                   "multiplier of the predicted delta)")
    p.add_argument("--beta", type=_beta, help="disentanglement threshold or 'auto' (global/feu)")
    p.add_argument("--threshold", type=float, help="DeltaEdit channel-mask threshold (default 0.03)")
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="runtime of text encoder, synthesis, e4e and mapper (artifacts built on first use "
                        "into $EDITRT_ENGINES, ./engines if it exists, or $EDITRT_HOME/engines); auto: onnxruntime on CPU for "
                        "generators of 512 px and up, else torch")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of those stages (engine artifacts of that precision; torch: autocast)")
    p.add_argument("--k", type=_int_at_least(1), help="FEU: positives/negatives retrieved (default 100)")
    p.add_argument("--corpus", type=Path, help="FEU corpus index (editrt corpus build)")
    p.add_argument("--fs3", type=Path, help="relevance matrix (.npy 6048x512 or editrt .safetensors)")
    p.add_argument("--stats", type=Path, help="channel statistics file (default: computed once, cached)")
    _network_args(p)
    p.add_argument("-o", "--output", required=True, type=Path, help="output grid image: source, then each strength")
    _weights_args(p)
    p.set_defaults(func=cmd_style_edit)

    p = sub.add_parser("relevance", help="compute the StyleCLIP relevance matrix fs3 of a generator (resumable)")
    _network_args(p)
    p.add_argument("-o", "--output", type=Path,
                   help="output .safetensors or .npy (default: the EDITRT_HOME store); until it is complete the "
                        "resume checkpoint is kept beside it as OUTPUT.partial.safetensors")
    p.add_argument("--images", type=_int_at_least(1), help="images per channel (default 100; 1 with --random-weights)")
    p.add_argument("--stats-samples", type=_int_at_least(2), help="samples of the channel statistics (default 100000)")
    p.add_argument("--batch-size", type=_int_at_least(1), help="images per synthesis call")
    p.add_argument("--checkpoint-every", type=_int_at_least(1), default=None, metavar="ROWS",
                   help="save the resume checkpoint at least every ROWS rows (default 64; also every 60 s, "
                        "and on Ctrl-C / SIGTERM)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _ray_args(p)
    _weights_args(p)
    p.set_defaults(func=cmd_relevance)

    p = sub.add_parser("corpus", help="FEU corpus indexes")
    csub = p.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")
    b = csub.add_parser("build", help="CLIP-embed an image folder or generator samples into an index")
    srcs = b.add_mutually_exclusive_group(required=True)
    srcs.add_argument("--folder", type=Path, help="folder of images (recursive)")
    srcs.add_argument("--samples", type=_int_at_least(1), help="number of generator samples (keeps their S codes)")
    b.add_argument("--seed", type=_seed, default=0, help="seed of the generator samples")
    _network_args(b)
    b.add_argument("-o", "--output", required=True, type=Path, help="index file (.safetensors)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    _weights_args(b)
    b.set_defaults(func=cmd_corpus_build)


def _ray_args(p: argparse.ArgumentParser) -> None:
    from .jobs.cli_args import DEFAULT_SHARD_ROWS, add_ray_args

    add_ray_args(p, "channel rows")
    p.add_argument("--shard-rows", type=int, default=DEFAULT_SHARD_ROWS,
                   help="channel rows per Ray task (each shard is saved as it finishes)")


def _names(args) -> tuple[str | None, str | None]:
    gen = args.generator or ("tiny" if args.random_weights else None)
    clip = args.clip or ("tiny" if args.random_weights else None)
    return gen, clip


def _warn_random(args) -> None:
    if args.random_weights:
        from .cli_args import RANDOM_WEIGHTS_WARNING

        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)


def _common_kwargs(args) -> dict:
    return dict(weights=args.weights_dir, random_init=args.random_weights, device=args.device,
                download=args.download, allow_pickle=args.allow_pickle)


def _method_config(args):
    gen, clip = _names(args)
    return style_method_config(args.method, random_init=args.random_weights, generator=gen, clip=clip)


def style_method_config(method: str, *, random_init: bool, generator: str | None, clip: str | None):
    """The config of ``method`` (global/feu/deltaedit): its tiny preset with random weights, else the
    paper's, with the generator and CLIP names given (DeltaEdit's mapper follows the generator)."""
    from .config import DeltaEditConfig, FEUConfig, GlobalDirectionConfig

    cls = {"global": GlobalDirectionConfig, "feu": FEUConfig, "deltaedit": DeltaEditConfig}[method]
    cfg = cls.preset("tiny") if random_init else cls()
    changes = {k: v for k, v in (("generator", generator), ("clip_model", clip)) if v is not None}
    if method == "deltaedit" and generator is not None:
        changes["mapper"] = "tiny" if generator == "tiny" else "ffhq"
    return cfg.replace(**changes)


def cmd_style_edit(args) -> int:
    from . import imageio
    from .cli_args import check_device, check_texts

    check_texts(target=args.target, neutral=args.neutral)
    inputs = tuple(p for p in (args.image, args.corpus, args.fs3, args.stats) if p is not None)
    out = imageio.check_output_path(args.output, inputs=inputs)
    imageio.check_output_path(_sidecar(out), inputs=inputs, image=False)
    for what, path in (("--fs3", args.fs3), ("--stats", args.stats)):
        if path is not None and not path.is_file():
            raise InputError(f"{what} {path} does not exist or is not a file")
    if args.image is not None:
        imageio.load_image(args.image)  # validate before loading any network
    if args.method != "feu" and args.k is not None:
        raise InputError("--k applies to --method feu only")
    if args.method == "deltaedit" and args.beta is not None:
        raise InputError("--beta applies to global and feu; DeltaEdit uses --threshold")
    if args.method != "deltaedit" and args.threshold is not None:
        raise InputError("--threshold applies to --method deltaedit only")
    if args.method == "feu" and args.neutral is not None:
        raise InputError("FEU needs no neutral text (that is its point); drop --neutral")
    if args.method == "feu" and args.corpus is None and not args.random_weights:
        raise InputError("--method feu needs --corpus INDEX (build one with `editrt corpus build`)")
    if args.corpus is not None and not args.corpus.is_file():
        raise InputError(f"corpus index {args.corpus} does not exist")
    if args.method != "feu" and args.corpus is not None:
        raise InputError("--corpus applies to --method feu only")
    if args.beta is not None and args.beta != "auto":
        from .methods.stylespace import check_beta

        check_beta(args.beta)
    if args.alpha is not None:
        from .config import STYLE_ALPHA_LIMIT
        from .methods.stylespace import as_strengths

        as_strengths(args.alpha, 0.0, limit=STYLE_ALPHA_LIMIT, what="alpha")
    cfg = _method_config(args)
    check_device(args.device)
    kw = _common_kwargs(args)
    common = dict(config=cfg, fs3=args.fs3, stats=args.stats, backend=args.backend, precision=args.precision, **kw)
    if args.method == "global":
        from .methods.stylespace.global_direction import GlobalDirection

        editor = GlobalDirection(**common)
        run = lambda src: editor.edit(src, args.target, args.neutral, alpha=args.alpha, beta=args.beta)  # noqa: E731
    elif args.method == "feu":
        from .methods.stylespace.feu import FEU

        editor = FEU(corpus=args.corpus, **common)
        run = lambda src: editor.edit(src, args.target, alpha=args.alpha, beta=args.beta, k=args.k)  # noqa: E731
    else:
        from .methods.stylespace.deltaedit import DeltaEdit

        editor = DeltaEdit(**common)
        run = lambda src: editor.edit(src, args.target, args.neutral, strength=args.alpha,  # noqa: E731
                                      threshold=args.threshold)
    source = args.image if args.image is not None else editor.codes_from_seeds([args.seed])
    result = run(source)
    result.save(out)
    _warn_random(args)
    print(f"{args.method}: {result.channels_changed} channels changed, strengths {list(result.strengths)} -> {out}")
    return 0


def partial_path(out: Path) -> Path:
    """Where ``editrt relevance`` keeps the resume checkpoint of ``out`` until it is complete."""
    return out.with_name(out.name + ".partial.safetensors")


def cmd_relevance(args) -> int:
    from .cli_args import check_device
    from .config import GlobalDirectionConfig
    from .imageio import check_output_path

    cfg = GlobalDirectionConfig.preset("tiny") if args.random_weights else GlobalDirectionConfig()
    gen_name, clip_name = _names(args)
    n_images = args.images if args.images is not None else cfg.relevance_images
    stats_n = args.stats_samples if args.stats_samples is not None else cfg.stats_samples
    if args.output is not None:
        check_output_path(args.output, image=False)
        if args.output.suffix not in (".npy", ".safetensors"):
            raise InputError(f"output {args.output}: use a .safetensors or .npy file")
    check_device(args.device)

    import numpy as np

    from .methods.stylespace import channel_stats_for, compute_relevance, default_batch, relevance_store_path
    from .methods.stylespace.relevance_matrix import CHECKPOINT_EVERY_ROWS, RelevanceInterrupted
    from .models.clip import load_clip
    from .models.stylegan2 import StyleGAN2

    kw = _common_kwargs(args)
    G = StyleGAN2.load(gen_name or cfg.generator, weights=kw["weights"], random_init=kw["random_init"],
                       device=kw["device"], download=kw["download"], allow_pickle=kw["allow_pickle"])
    clip = load_clip(clip_name or cfg.clip_model, weights=kw["weights"], random_init=kw["random_init"],
                     device=kw["device"], download=kw["download"], allow_pickle=kw["allow_pickle"])
    out = args.output or relevance_store_path(G, clip.name)
    ckpt = partial_path(out)  # the final path only ever holds a complete matrix
    stats = channel_stats_for(G, n=stats_n, psi=cfg.stats_psi, cutoff=cfg.stats_cutoff, seed=cfg.stats_seed,
                              cache=not args.random_weights)
    try:
        if args.ray is not None:
            fs3 = _relevance_on_ray(args, G, clip, stats, cfg, n_images, gen_name or cfg.generator,
                                    clip_name or cfg.clip_model, ckpt, out)
        else:
            fs3 = compute_relevance(G, clip, stats, n_images=n_images, sigma=cfg.relevance_sigma,
                                    seed=cfg.stats_seed, psi=cfg.stats_psi, cutoff=cfg.stats_cutoff,
                                    batch_size=args.batch_size or default_batch(G), checkpoint=ckpt,
                                    checkpoint_every_rows=args.checkpoint_every or CHECKPOINT_EVERY_ROWS,
                                    progress=not args.no_progress)
    except RelevanceInterrupted as exc:
        print(f"editrt: {exc}", file=sys.stderr)
        return 130
    if out.suffix == ".safetensors":
        os.replace(ckpt, out)  # complete: the checkpoint (fs3 + provenance) becomes the result
    else:
        from .files import atomic_open

        with atomic_open(out, "wb") as f:
            np.save(f, fs3.numpy())
        ckpt.unlink(missing_ok=True)
    _warn_random(args)
    print(f"relevance matrix {tuple(fs3.shape)} -> {out}")
    return 0


def _relevance_on_ray(args, G, clip, stats, cfg, n_images, gen_name, clip_name, ckpt, out):
    from .jobs.cli_args import gpus_per_worker, ray_address
    from .jobs.relevance import Networks, RelevanceSettings, relevance_on_ray, shard_dir
    from .methods.stylespace import default_batch

    kw = _common_kwargs(args)
    networks = Networks(gen_name, clip_name, weights=kw["weights"], random_init=kw["random_init"],
                        device=kw["device"], download=kw["download"], allow_pickle=kw["allow_pickle"])
    settings = RelevanceSettings(n_images=n_images, sigma=cfg.relevance_sigma, seed=cfg.stats_seed, psi=cfg.stats_psi,
                                 cutoff=cfg.stats_cutoff, batch_size=args.batch_size or default_batch(G))
    return relevance_on_ray(networks, G, clip, stats, settings, ckpt, address=ray_address(args), workers=args.workers,
                            shard_rows=args.shard_rows, num_gpus=gpus_per_worker(args.device),
                            progress=not args.no_progress, shards=shard_dir(out))


def cmd_corpus_build(args) -> int:
    from .cli_args import check_device
    from .imageio import check_output_path

    out = check_output_path(args.output, image=False)
    if out.suffix != ".safetensors":
        raise InputError(f"corpus index {out}: use a .safetensors file name")
    if args.folder is not None and not args.folder.is_dir():
        raise InputError(f"--folder {args.folder} is not a folder")
    check_device(args.device)
    from .methods.stylespace import build_corpus_from_folder, build_corpus_from_generator
    from .models.clip import load_clip

    gen_name, clip_name = _names(args)
    kw = _common_kwargs(args)
    clip = load_clip(clip_name or "ViT-B-32", weights=kw["weights"], random_init=kw["random_init"],
                     device=kw["device"], download=kw["download"], allow_pickle=kw["allow_pickle"])
    if args.folder is not None:
        index = build_corpus_from_folder(clip, args.folder, progress=not args.no_progress)
    else:
        from .models.stylegan2 import StyleGAN2

        G = StyleGAN2.load(gen_name or "ffhq-1024", weights=kw["weights"], random_init=kw["random_init"],
                           device=kw["device"], download=kw["download"], allow_pickle=kw["allow_pickle"])
        index = build_corpus_from_generator(clip, G, args.samples, seed=args.seed, progress=not args.no_progress)
    index.save(out)
    _warn_random(args)
    print(json.dumps({"images": len(index), "clip_model": index.clip_model, "output": str(out)}))
    return 0


__all__ = ["add_subcommands", "cmd_style_edit", "cmd_relevance", "cmd_corpus_build"]
