"""Process facts the bundled Triton server depends on: the library path of its Python-backend
stub, loopback addresses and free ports.

PyTriton starts ``tritonserver`` with a copy of ``os.environ``; the server starts one Python-backend
stub per model, and that stub links ``libpython3.11.so``. With an interpreter built outside the
system (pyenv, conda) the loader finds the *system* libpython first and the first call fails
(``'_thread.RLock' object has no attribute '_recursion_count'``). Putting the running
interpreter's own lib folder first on ``LD_LIBRARY_PATH`` makes the stub load the same
libpython as the server process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import sysconfig
from pathlib import Path

log = logging.getLogger(__name__)


def python_lib_dir() -> Path | None:
    """Folder of the running interpreter's shared libpython, or None for a static build."""
    libdir, name = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if libdir and name and name.endswith(".so") and (Path(libdir) / name).exists():
        return Path(libdir)
    return None


def stub_library_path(current: str | None) -> str | None:
    """``LD_LIBRARY_PATH`` with the interpreter's lib folder first (None: leave it as it is)."""
    libdir = python_lib_dir()
    if libdir is None:
        log.warning("this Python has no shared libpython; Triton's Python-backend stub will load the system "
                    "libpython%s, which must be the same build as this interpreter",
                    sysconfig.get_config_var("py_version_short"))
        return None
    parts = [p for p in (current or "").split(os.pathsep) if p]
    if parts and Path(parts[0]) == libdir:
        return None
    return os.pathsep.join([str(libdir)] + [p for p in parts if Path(p) != libdir])


@contextlib.contextmanager
def stub_environment():
    """Within the block, ``LD_LIBRARY_PATH`` starts with this interpreter's lib folder (the
    environment the Triton server process is started with); restored afterwards."""
    before = os.environ.get("LD_LIBRARY_PATH")
    new = stub_library_path(before)
    if new is not None:
        os.environ["LD_LIBRARY_PATH"] = new
        log.debug("LD_LIBRARY_PATH for the Python-backend stub: %s", new)
    try:
        yield
    finally:
        if new is not None:
            if before is None:
                os.environ.pop("LD_LIBRARY_PATH", None)
            else:
                os.environ["LD_LIBRARY_PATH"] = before


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it; a race with other processes remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


__all__ = ["python_lib_dir", "stub_library_path", "stub_environment", "is_loopback", "free_port"]
