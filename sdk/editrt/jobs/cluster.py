"""Connecting to Ray: an existing cluster by address, or a local one started (and stopped) here.

A local cluster listens on the loopback address only as far as Ray allows (its GCS and raylet
still bind every interface), has no dashboard and sends nothing off the machine.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from ..errors import BackendUnavailable, InputError

log = logging.getLogger(__name__)


def require_ray():
    """The ``ray`` module, or a clear error naming the extra to install."""
    try:
        import ray
    except ModuleNotFoundError:
        raise BackendUnavailable("--ray needs Ray: pip install 'editrt[ray]' (or pip install ray)") from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[object]:
    """Yield a connected ``ray`` module; shut down on exit only what this call started.

    ``address``: ``None`` starts a local cluster (``num_cpus``, default all cores); ``"auto"``
    joins the cluster of this machine (``ray start --head``); ``"HOST:PORT"`` or ``"ray://HOST:PORT"``
    joins a remote one (``RAY_ADDRESS`` stands in for a missing address). An already initialised Ray session is used as it is and left running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None and not str(address).strip():
        raise InputError("the Ray address is empty: give HOST:PORT, ray://HOST:PORT or 'auto'")
    kwargs = dict(log_to_driver=False, configure_logging=False)
    if address is None:
        kwargs.update(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                      _node_ip_address="127.0.0.1")
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise BackendUnavailable(f"could not connect to {where}: {exc}") from None
    log.info("ray: %s", ray.cluster_resources())
    try:
        yield ray
    finally:
        ray.shutdown()


__all__ = ["ray_session", "require_ray"]
