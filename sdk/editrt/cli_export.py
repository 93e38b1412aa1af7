"""``editrt export``: the engines' export command, plus ``--for METHOD``: build exactly the
specs a method declares (``FlexIT.specs``, ``GlobalDirection.specs``, ...), for the method's
default config or a preset.

    editrt export --for deltaedit --precision fp16          # what `style-edit --method deltaedit` opens
    editrt export --for flexit --preset tiny --random-weights
    editrt export --for global --photos                     # + the e4e encoder for real photos

``export/build_engines.py`` runs the same code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .engines import cli as engines_cli
from .errors import EditrtError, InputError

METHODS = ("flexit", "global", "feu", "deltaedit")


def method_class(method: str):
    if method == "flexit":
        from .methods.flexit import FlexIT

        return FlexIT
    from .methods import stylespace

    classes = {"global": stylespace.GlobalDirection, "feu": stylespace.FEU, "deltaedit": stylespace.DeltaEdit}
    if method not in classes:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    return classes[method]


def method_specs(method: str, *, preset: str | None = None, photos: bool = False) -> list[str]:
    """The spec names an edit of ``method`` runs, for its default config or ``preset``."""
    cls = method_class(method)
    config = cls.config_class.preset(preset) if preset else cls.config_class()
    if method == "flexit":
        if photos:
            raise InputError("--photos applies to the direction edits (e4e inversion); FlexIT edits photos directly")
        return cls.specs(config)
    return cls.specs(config, photos=photos)


def add_arguments(p: argparse.ArgumentParser) -> None:
    engines_cli.add_arguments(p)
    p.add_argument("--for", dest="for_method", choices=METHODS,
                   help="export the specs this method's edits run (instead of --models)")
    p.add_argument("--preset", help="with --for: the method's config preset (e.g. tiny; default: its defaults)")
    p.add_argument("--photos", action="store_true", help="with --for global|feu|deltaedit: add the e4e encoder")


def cmd_export(args) -> int:
    if args.for_method:
        if args.models:
            raise InputError("give --models or --for, not both")
        args.models = method_specs(args.for_method, preset=args.preset, photos=args.photos)
    elif args.preset or args.photos:
        raise InputError("--preset and --photos apply to --for METHOD")
    return engines_cli.cmd_export(args)


def add_subcommands(subparsers) -> None:
    p = subparsers.add_parser("export", help="export models to ONNX (and TensorRT plans) into an artifact store")
    add_arguments(p)
    p.set_defaults(func=cmd_export)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (export/build_engines.py): same arguments as ``editrt export``."""
    parser = argparse.ArgumentParser(prog="build_engines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return cmd_export(args)
    except EditrtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


__all__ = ["add_subcommands", "cmd_export", "method_specs", "main", "METHODS"]
