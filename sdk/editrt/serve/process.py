"""``editrt serve`` as a child process on free loopback ports: for tests, benchmarks and scripts
that need a real server they start and stop themselves.

    with ServerProcess(["--random-weights", "--methods", "global"]) as server:
        EditClient(server.url("grpc")).edit(target="smiling face", seed=1)
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from ..errors import BackendUnavailable
from .runtime import free_port

READY_PREFIX = '{"ready"'


class ServerProcess:
    """Start ``python -m editrt.cli serve ARGS`` with free ports and wait (at most
    ``startup_s``) for its ready line; ``stop`` sends SIGTERM (Triton's drain) and waits.

    env: extra environment variables (e.g. OMP_NUM_THREADS, EDITRT_HOME); log: a file for the
    server's stderr (default: discarded). Triton's own log lines go to stdout before the ready line.
    """

    def __init__(self, args: Sequence[str], *, startup_s: float = 300.0, env: dict[str, str] | None = None,
                 log: str | os.PathLike | None = None):
        self.ports = {k: free_port() for k in ("http", "grpc", "metrics")}
        sdk = str(Path(__file__).resolve().parents[2])
        full_env = dict(os.environ, **(env or {}))
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (sdk, full_env.get("PYTHONPATH")) if p)
        self._log = open(log, "w") if log is not None else subprocess.DEVNULL
        cmd = [sys.executable, "-m", "editrt.cli", "serve", *map(str, args),
               "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
               "--metrics-port", str(self.ports["metrics"])]
        self.proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.output: collections.deque[str] = collections.deque(maxlen=500)  # stdout lines (last 500)
        self.ready = self._wait_ready(startup_s)

    def _wait_ready(self, startup_s: float) -> dict:
        box: dict = {}
        ready = threading.Event()

        def read() -> None:  # reads to the end, so the server never blocks on a full pipe
            for line in self.proc.stdout:
                if not ready.is_set() and line.startswith(READY_PREFIX):
                    box["ready"] = json.loads(line)
                    ready.set()
                    continue
                self.output.append(line)
            ready.set()
        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        ready.wait(timeout=startup_s)
        if "ready" not in box:
            rc = self.proc.poll()
            self.stop()
            raise BackendUnavailable(f"editrt serve was not ready within {startup_s:.0f} s (exit code {rc}); "
                                     f"last output: {''.join(list(self.output)[-5:]).strip()}")
        self.output.clear()
        return box["ready"]

    def url(self, protocol: str = "http") -> str:
        return f"{protocol}://127.0.0.1:{self.ports[protocol]}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def terminate(self) -> None:
        """SIGTERM: the server drains and exits (see :meth:`wait`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Exit code and stdout since the ready line (killed if it outlives ``timeout_s``)."""
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        return rc, "".join(self.output)

    def stop(self, timeout_s: float = 60.0) -> int:
        self.terminate()
        rc, _ = self.wait(timeout_s)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
            self._log = subprocess.DEVNULL
        return rc

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout_s`` passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


__all__ = ["ServerProcess", "wait_until"]
