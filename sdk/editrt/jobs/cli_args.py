"""The ``--ray [ADDRESS]`` and ``--workers`` options shared by the commands that run on Ray."""

from __future__ import annotations

import argparse

LOCAL = "local"
DEFAULT_SHARD_ROWS = 64  # relevance rows per Ray task: ~minutes per shard at 1024 px on one GPU


def add_ray_args(p: argparse.ArgumentParser, unit: str) -> None:
    p.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                   help=f"run the {unit} on Ray: a local cluster (no ADDRESS), this machine's cluster "
                        "('auto') or HOST:PORT / ray://HOST:PORT")
    p.add_argument("--workers", type=int, help="Ray actors (default: one per GPU with --device cuda, else per CPU)")


def ray_address(args) -> str | None:
    """The address for :func:`ray_session` (None: start a local cluster)."""
    return None if args.ray in (None, LOCAL) else args.ray


def gpus_per_worker(device: str) -> float:
    return 1.0 if str(device).startswith("cuda") else 0.0


__all__ = ["add_ray_args", "ray_address", "gpus_per_worker", "LOCAL", "DEFAULT_SHARD_ROWS"]
