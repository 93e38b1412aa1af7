"""The ``editrt`` command.

Exit codes (stable, for scripts): 0 success; 1 unexpected internal error; 2 bad input or usage
(image, prompt, option, config); 3 missing or mismatched checkpoint; 4 non-finite values
(NaN/inf); 5 stale, foreign or corrupt engine artifact; 6 backend unavailable (no such device,
missing runtime); 7 an output cannot be written (disk full, read-only, no permission);
130 interrupted (SIGINT/SIGTERM).

Every input is checked before any network loads, so a bad path or option answers in well under a
second; torch, open_clip and onnx are imported only by the commands that run models.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from . import __version__
from .cli_args import BACKEND_CHOICES, RANDOM_WEIGHTS_WARNING, add_weights_args, check_device, check_texts, int_at_least, seed
from .errors import EditrtError, InputError, OutputError

log = logging.getLogger("editrt")

# Modules that add their own subcommands with add_subcommands(subparsers).
_PLUGINS = ("editrt.cli_style", "editrt.cli_train", "editrt.cli_export", "editrt.eval.cli", "editrt.serve.cli",
            "editrt.batch.cli")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editrt", description="Text-driven image editing: FlexIT, StyleCLIP, DeltaEdit.")
    parser.add_argument("--version", action="version", version=f"editrt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("edit", help="FlexIT edit of an image from a source -> target text pair")
    p.add_argument("image", type=Path, help="input photo (any format Pillow reads; never modified)")
    p.add_argument("--source", required=True, help="text describing the input (e.g. 'cat')")
    p.add_argument("--target", required=True, help="text describing the wanted output (e.g. 'dog')")
    p.add_argument("-o", "--output", required=True, type=Path, help="output image (.png, .jpg, ...)")
    p.add_argument("--steps", type=int_at_least(0), help="number of updates (default: config, 160)")
    p.add_argument("--config", type=Path, help="FlexITConfig overrides as JSON or YAML")
    p.add_argument("--preset", help="start from a named FlexITConfig preset (paper, tiny, reference_final, ...)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the augmentations and random weights (default 0)")
    p.add_argument("--report", type=Path, help="write a JSON report (losses per step, timings) here")
    p.add_argument("--backend", default="torch", choices=BACKEND_CHOICES,
                   help="runtime of the one-time encoders and the final decode (auto: torch)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of those stages (engine artifacts of that precision; torch: autocast)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_weights_args(p)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("demo", help="the embedded default: edit the bundled sample offline")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("demo_out"), help="folder of the results")
    p.add_argument("--steps", type=int_at_least(0), help="number of updates")
    p.add_argument("--seed", type=seed, default=0, help="seed of the edit (default 0)")
    p.add_argument("--random-weights", action="store_true",
                   help="use tiny random networks even when the trained toy models are available")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("weights", help="list the checkpoints editrt knows, found or missing")
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("doctor", help="report kernels, devices and library versions")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_doctor)

    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not name.startswith(exc.name or "\0"):  # a plugin not installed; other errors are real
                raise
            continue
        module.add_subcommands(sub)
    return parser


def _flexit_config(args):
    """The run's FlexITConfig: --preset, else tiny with --random-weights, else the paper's;
    then the --config file (whose own ``preset`` key, if any, must agree with --preset)."""
    from .config import FlexITConfig

    if args.preset:
        base = FlexITConfig.preset(args.preset)
    else:  # random weights: the tiny networks (fast, offline) unless a preset says otherwise
        base = FlexITConfig.preset("tiny") if args.random_weights else FlexITConfig()
    if not getattr(args, "config", None):
        return base
    cfg = FlexITConfig.from_file(args.config, default=base)
    if args.preset:  # the file's non-default options go on top of the command-line preset
        defaults = FlexITConfig().to_dict()
        cfg = base.replace(**{k: v for k, v in cfg.to_dict().items() if v != defaults[k]})
    return cfg


def describe_networks(cfg, random_weights: bool) -> str:
    """One line naming the networks a FlexIT run builds (so a full-size build is never silent)."""
    kind = "seeded random weights" if random_weights else "checkpoints"
    return (f"networks: CLIP {', '.join(cfg.clip_models)}; VQGAN {cfg.vqgan}; LPIPS {cfg.lpips_net} "
            f"({kind}, {cfg.image_size} px, {cfg.steps} steps)")


def cmd_edit(args) -> int:
    from . import imageio

    check_texts(source=args.source, target=args.target)
    out = imageio.check_output_path(args.output, inputs=(args.image, args.config))
    if args.report is not None:
        imageio.check_output_path(args.report, inputs=(args.image, args.config), others=(out,), image=False)
    imageio.load_image(args.image)  # validate before loading any network
    cfg = _flexit_config(args)
    check_device(args.device)
    print(describe_networks(cfg.replace(steps=args.steps) if args.steps is not None else cfg, args.random_weights),
          file=sys.stderr)
    from .methods.flexit import FlexIT

    editor = FlexIT(cfg, device=args.device, weights=args.weights_dir, random_init=args.random_weights,
                    seed=args.seed, download=args.download, allow_pickle=args.allow_pickle,
                    backend=args.backend, precision=args.precision)
    result = editor.edit(args.image, args.source, args.target, steps=args.steps, seed=args.seed,
                         progress=not args.no_progress)
    imageio.check_not_degenerate(result.images[0], what="the edited image")
    result.save(out)
    report = result.report()
    report["random_weights"] = bool(args.random_weights)
    if args.report is not None:
        imageio.atomic_write_bytes(args.report, json.dumps(report, indent=2).encode())
    _print_summary(report, out)
    if args.random_weights:
        print(RANDOM_WEIGHTS_WARNING)
    return 0


def _print_summary(report: dict, out: Path) -> None:
    first, last = report["first"], report["last"]
    print(f"wrote {out}")
    if first:
        print(f"steps: {report['steps']}  loss {first['loss'][0]:.4f} -> {last['loss'][0]:.4f}  "
              f"(clip {first['clip'][0]:.4f} -> {last['clip'][0]:.4f}, lpips {last['lpips'][0]:.4f}, "
              f"latent {last['latent'][0]:.4f})")
        print(f"time per step (median): {report['seconds_per_step_median'] * 1000:.1f} ms, "
              f"total {report['seconds_total']:.2f} s")


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.output_dir, steps=args.steps, seed=args.seed, force_random=args.random_weights)


def cmd_weights(args) -> int:
    from .known_files import editrt_home, inventory

    rows = inventory(args.weights_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"EDITRT_HOME = {editrt_home()}" + (f"   --weights-dir = {args.weights_dir}" if args.weights_dir else ""))
    status = {True: "found", False: "missing", None: "-"}
    for kind, title in (("checkpoint", "checkpoints"), ("computed", "computed by editrt"), ("user", "built by you")):
        group = [r for r in rows if r["kind"] == kind]
        print(f"\n{title}:")
        for r in group:
            print(f"  [{status[r['found']]:7}] {r['key']:40} {r['path']}")
            print(f"            from: {r['origin']}")
            if r["used_by"]:
                print(f"            used by: {r['used_by']}")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import collect, format_report

    info = collect()
    print(json.dumps(info, indent=2, default=str) if args.json else format_report(info))
    return 0


_DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
                errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                errno.EDQUOT: "the disk quota is exceeded", errno.EFBIG: "the file is too large for the file system"}


def _output_error(exc: OSError) -> OutputError | None:
    """A one-line OutputError for the OSErrors of writing (full/read-only disk), else None."""
    why = _DISK_ERRNOS.get(exc.errno)
    if why is None:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return OutputError(f"cannot write{where}: {why} ({exc.strerror or exc}); nothing partial was kept")


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():  # SIGTERM ends runs like Ctrl-C
        previous_term = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    else:
        previous_term = None
    t0 = time.perf_counter()
    try:
        return int(args.func(args) or 0)
    except EditrtError as exc:
        print(f"editrt: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `editrt weights --json | head`: the reader left, not an error of ours
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as exc:
        err = _output_error(exc)
        if err is None:
            raise
        print(f"editrt: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("editrt: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        log.debug("command took %.2f s", time.perf_counter() - t0)


__all__ = ["main", "build_parser", "InputError", "check_device", "check_texts", "int_at_least", "seed"]

if __name__ == "__main__":
    sys.exit(main())
