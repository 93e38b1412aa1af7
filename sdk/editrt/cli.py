"""The ``editrt`` command.

Exit codes (stable, for scripts): 0 success; 1 unexpected internal error; 2 bad input or usage
(image, prompt, option, config); 3 missing or mismatched checkpoint; 4 non-finite values
(NaN/inf); 5 stale, foreign or corrupt engine artifact; 6 backend unavailable; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time
from pathlib import Path

from . import __version__
from .errors import EditrtError, InputError

log = logging.getLogger("editrt")

# Modules that add their own subcommands with add_subcommands(subparsers).
_PLUGINS = ("editrt.cli_style", "editrt.cli_export", "editrt.eval.cli", "editrt.serve.cli")

RANDOM_WEIGHTS_WARNING = (
    "NOTE: random weights were used. The pipeline ran for real, but random networks give no "
    "meaningful edit. For real edits put the checkpoints in $EDITRT_HOME (see `editrt weights`) "
    "or pass --weights-dir DIR.")


def _add_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--random-weights", action="store_true",
                   help="seeded random weights (offline smoke run; no meaningful edit)")
    p.add_argument("--download", action="store_true", help="download missing checkpoints from their public source")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow checkpoints that need full unpickling (executes code: trusted files only)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editrt", description="Text-driven image editing: FlexIT, StyleCLIP, DeltaEdit.")
    parser.add_argument("--version", action="version", version=f"editrt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("edit", help="FlexIT edit of an image from a source -> target text pair")
    p.add_argument("image", type=Path)
    p.add_argument("--source", required=True, help="text describing the input (e.g. 'cat')")
    p.add_argument("--target", required=True, help="text describing the wanted output (e.g. 'dog')")
    p.add_argument("-o", "--output", required=True, type=Path, help="output image (.png, .jpg, ...)")
    p.add_argument("--steps", type=int, help="number of updates (default: config, 160)")
    p.add_argument("--config", type=Path, help="FlexITConfig overrides as JSON or YAML")
    p.add_argument("--preset", help="start from a named FlexITConfig preset (paper, tiny, reference_final, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", type=Path, help="write a JSON report (losses per step, timings) here")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"],
                   help="runtime of the one-time encoders and the final decode")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision of those stages (engine artifacts of that precision; torch: autocast)")
    p.add_argument("--no-progress", action="store_true")
    _add_weights_args(p)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("demo", help="the embedded default: edit the bundled sample offline")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("demo_out"))
    p.add_argument("--steps", type=int, help="number of updates")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-weights", action="store_true",
                   help="use tiny random networks even when the trained toy models are available")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("weights", help="list the checkpoints editrt knows, found or missing")
    p.add_argument("--weights-dir", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("doctor", help="report kernels, devices and library versions")
    p.add_argument("--json", action="store_true")
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
    from .config import FlexITConfig

    cfg = FlexITConfig.preset(args.preset) if getattr(args, "preset", None) else FlexITConfig()
    if getattr(args, "config", None):
        file_cfg = FlexITConfig.from_file(args.config)
        cfg = file_cfg if not args.preset else cfg.replace(**{
            k: v for k, v in file_cfg.to_dict().items() if v != FlexITConfig().to_dict()[k]})
    if args.random_weights and not args.preset and not args.config:
        cfg = FlexITConfig.preset("tiny")  # random weights: the tiny networks, fast and offline
    return cfg


def cmd_edit(args) -> int:
    from . import imageio
    from .methods.flexit import FlexIT

    out = imageio.check_output_path(args.output, inputs=(args.image,))
    if args.report is not None:
        imageio.check_output_path(args.report.with_suffix(".png"))  # folder checks
    imageio.load_image(args.image)  # validate before loading any network
    cfg = _flexit_config(args)
    editor = FlexIT(cfg, device=args.device, weights=args.weights_dir, random_init=args.random_weights,
                    seed=args.seed, download=args.download, allow_pickle=args.allow_pickle,
                    backend=args.backend, precision=args.precision)
    result = editor.edit(args.image, args.source, args.target, steps=args.steps, seed=args.seed,
                         progress=not args.no_progress)
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
    from .weights import editrt_home, inventory

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
    from .doctor import collect

    info = collect()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for section, values in info.items():
            print(f"{section}:")
            for k, v in (values.items() if isinstance(values, dict) else [("", values)]):
                print(f"  {k}: {v}" if k else f"  {v}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    try:
        return int(args.func(args) or 0)
    except EditrtError as exc:
        print(f"editrt: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("editrt: interrupted", file=sys.stderr)
        return 130
    finally:
        log.debug("command took %.2f s", time.perf_counter() - t0)


__all__ = ["main", "build_parser", "InputError"]

if __name__ == "__main__":
    sys.exit(main())
