"""``EditServer``: editrt's methods behind NVIDIA Triton Inference Server (through PyTriton).

One Triton model per method (``global``, ``feu``, ``deltaedit``, ``flexit``) plus the CLIP
embedding models (``clip_text``, ``clip_image``), each with Triton's dynamic batcher: requests
from many clients are fused into one model call of up to ``max_batch`` requests, waiting at most
``queue_delay_us`` for a batch to fill. Health (``/v2/health/live``, ``/v2/health/ready``) and
metrics (Prometheus text on the metrics port: ``nv_inference_request_success``,
``nv_inference_count``, ``nv_inference_exec_count``, queue and compute durations) are Triton's own.

Stopping (``stop``, SIGTERM or SIGINT in ``serve_forever``) is Triton's drain: it refuses new
requests, answers the ones received (running and queued) for up to ``drain_timeout_s``, then exits.
Every address defaults to loopback; another host only when the caller passes one.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import threading
import time
from typing import Sequence

from ..errors import BackendUnavailable, InputError
from . import protocol as P
from .handlers import ClipHandler, FlexITHandler, StyleEditHandler
from .loading import ModelSource, clip_of, load_editors
from .runtime import free_port, is_loopback, stub_environment

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class ServeOptions:
    """Addresses, served models and batching of an :class:`EditServer`. Ports 0 = pick free ones."""

    methods: tuple[str, ...] = P.METHODS
    clip_models: bool = True  # also serve clip_text and clip_image
    host: str = DEFAULT_HOST
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8  # requests fused into one model call
    queue_delay_us: int = 5000  # longest wait for a batch to fill
    fuse: bool = True  # equal-parameter direction edits of a batch in one SDK call
    drain_timeout_s: int = 15  # Triton's exit timeout: how long in-flight requests may finish
    log_verbose: int = 0

    def __post_init__(self):
        if not self.methods:
            raise InputError("serve at least one method")
        unknown = [m for m in self.methods if m not in P.METHODS]
        if unknown:
            raise InputError(f"unknown method(s) {unknown}; serve any of {', '.join(P.METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise InputError(f"methods listed twice: {list(self.methods)}")
        if not 1 <= self.max_batch <= 1024:
            raise InputError(f"max_batch must lie in [1, 1024], got {self.max_batch}")
        if not 0 <= self.queue_delay_us <= 10_000_000:
            raise InputError(f"queue_delay_us must lie in [0, 1e7], got {self.queue_delay_us}")
        if not 1 <= self.drain_timeout_s <= 3600:
            raise InputError(f"drain_timeout_s must lie in [1, 3600], got {self.drain_timeout_s}")
        for name in ("http_port", "grpc_port", "metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise InputError(f"{name} {port} is not a TCP port")
        ports = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p]
        if len(set(ports)) != len(ports):
            raise InputError(f"HTTP, gRPC and metrics ports must differ, got {ports}")

    def with_free_ports(self) -> "ServeOptions":
        return dataclasses.replace(self, **{n: getattr(self, n) or free_port(self.host)
                                            for n in ("http_port", "grpc_port", "metrics_port")})


class EditServer:
    """Loads the editors once, then serves them through Triton.

    ``with EditServer(options, source) as server: ...`` starts and stops it; ``server.http_url``
    and ``server.grpc_url`` are what :class:`editrt.client.EditClient` takes.
    """

    def __init__(self, options: ServeOptions | None = None, source: ModelSource | None = None):
        self.options = (options or ServeOptions()).with_free_ports()
        self.source = source or ModelSource()
        if not is_loopback(self.options.host):
            log.warning("serving on %s: reachable from other machines (editrt's default is %s)",
                        self.options.host, DEFAULT_HOST)
        self._check_ports()  # before minutes of model loading
        self.handlers = self._load()
        self._triton = None
        self._stop_requested = threading.Event()

    # -- models ---------------------------------------------------------------------------------------
    def _load(self) -> dict:
        t0 = time.perf_counter()
        handlers: dict = {}
        editors = load_editors(self.options.methods, self.source)
        for method, editor in editors.items():
            handlers[method] = (FlexITHandler(editor) if method == "flexit"
                                else StyleEditHandler(method, editor, fuse=self.options.fuse))
        if self.options.clip_models:
            clip = clip_of(editors[self.options.methods[0]])
            for kind in P.CLIP_MODELS:
                handlers[kind] = ClipHandler(kind, clip, fuse=self.options.fuse)
        log.info("loaded %s in %.1f s", ", ".join(handlers), time.perf_counter() - t0)
        return handlers

    def _check_ports(self) -> None:
        o = self.options
        for name, port in (("HTTP", o.http_port), ("gRPC", o.grpc_port), ("metrics", o.metrics_port)):
            with socket.socket(socket.AF_INET6 if ":" in o.host else socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((o.host, port))
                except OSError as exc:
                    raise InputError(f"{name} port {port} on {o.host} is not available ({exc.strerror}); "
                                     "choose another (0 picks a free one)") from None

    def model_names(self) -> list[str]:
        return list(self.handlers)

    # -- addresses ------------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> "EditServer":
        """Start Triton and bind every model; returns once the server reports ready."""
        try:
            from pytriton.triton import Triton, TritonConfig
        except ImportError as exc:
            raise BackendUnavailable(f"serving needs the serve extra (pip install 'editrt[serve]'): {exc}") from None
        o = self.options
        config = TritonConfig(http_address=o.host, http_port=o.http_port, grpc_address=o.host, grpc_port=o.grpc_port,
                              metrics_address=o.host, metrics_port=o.metrics_port, exit_timeout_secs=o.drain_timeout_s,
                              log_verbose=o.log_verbose, allow_gpu_metrics=False)
        with stub_environment():
            triton = Triton(config=config)
            try:
                self._bind(triton)
                triton.run()
            except Exception as exc:  # noqa: BLE001 - PyTriton raises plain exceptions
                triton.stop()
                raise BackendUnavailable(f"the Triton server did not start: {type(exc).__name__}: {exc}") from exc
        self._triton = triton
        log.info("serving %s: HTTP %s, gRPC %s, metrics %s", ", ".join(self.handlers), self.http_url,
                 self.grpc_url, self.metrics_url)
        return self

    def _bind(self, triton) -> None:
        """One Triton model per handler: typed inputs/outputs, dynamic batching."""
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

        o = self.options
        for name, handler in self.handlers.items():
            triton.bind(
                model_name=name, infer_func=handler,
                inputs=[Tensor(name=s.name, dtype=s.dtype, shape=s.shape, optional=s.optional) for s in P.INPUTS[name]],
                outputs=[Tensor(name=s.name, dtype=s.dtype, shape=s.shape) for s in P.OUTPUTS[name]],
                config=ModelConfig(max_batch_size=o.max_batch,
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=o.queue_delay_us)),
                strict=True)

    def stop(self) -> None:
        """Drain (Triton refuses new requests and answers those it holds) and stop."""
        if self._triton is not None:
            t0 = time.perf_counter()
            stubs = _backend_stubs()
            self._triton.stop()
            self._triton = None
            _reap(stubs)
            log.info("stopped in %.1f s", time.perf_counter() - t0)

    def serve_forever(self, on_ready=None) -> None:
        """Start, call ``on_ready(self)``, serve until SIGTERM/SIGINT (or :meth:`request_stop`), drain, stop."""
        previous = {s: signal.signal(s, lambda *_: self._stop_requested.set()) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_ready is not None:
                on_ready(self)
            while not self._stop_requested.wait(1.0):
                if self._triton is not None and not self._triton.is_alive():
                    raise BackendUnavailable("the Triton server process exited unexpectedly")
            log.info("stop requested: draining requests in flight (up to %d s)", self.options.drain_timeout_s)
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def request_stop(self) -> None:
        self._stop_requested.set()

    def __enter__(self) -> "EditServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _backend_stubs() -> list:
    """This process's Python-backend stub processes (children of its tritonserver)."""
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    stubs = []
    for c in children:
        try:
            if c.cmdline() and c.cmdline()[0].endswith("triton_python_backend_stub"):
                stubs.append(c)
        except psutil.Error:
            continue
    return stubs


def _reap(stubs: list, grace_s: float = 5.0) -> None:
    # When tritonserver leaves at its exit timeout, stubs it did not unload outlive it (they
    # ignore SIGTERM); end exactly those, so no stub stays behind.
    import psutil

    _, alive = psutil.wait_procs(stubs, timeout=grace_s)
    for proc in alive:
        log.debug("ending Python-backend stub %d left by tritonserver", proc.pid)
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def model_config_rows(names: Sequence[str]) -> list[dict]:
    """Inputs and outputs of the named models, for ``editrt serve --describe``."""
    def row(s: P.TensorSpec) -> dict:
        return {"name": s.name, "dtype": s.triton_dtype, "shape": list(s.shape), "optional": s.optional}
    return [{"model": n, "inputs": [row(s) for s in P.INPUTS[n]], "outputs": [row(s) for s in P.OUTPUTS[n]]}
            for n in names]


__all__ = ["EditServer", "ServeOptions", "ModelSource", "DEFAULT_HOST", "model_config_rows"]
