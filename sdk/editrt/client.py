"""``EditClient``: edits from an ``editrt serve`` (Triton) server, as the SDK's own result types.

    from editrt.client import EditClient
    with EditClient("127.0.0.1:8000") as client:                 # HTTP; "grpc://127.0.0.1:8001" for gRPC
        r = client.edit(target="smiling face", seed=3, method="global", strength=[2.0, 4.0])
        r.save("edit.png")                                         # a StyleEditResult, as GlobalDirection.edit
        f = client.edit("cat.png", "dog", source="cat", method="flexit")   # an EditResult, as FlexIT.edit

The wire format is :mod:`editrt.serve.protocol`. A failed request raises the editrt error the
server raised (InputError for a bad image or prompt, NumericalError, ...), with its message.
Needs ``tritonclient`` (the ``serve`` extra).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import BackendUnavailable, EditrtError, InputError
from .serve import protocol as P


def _parse_url(url: str, protocol: str | None) -> tuple[str, str]:
    for scheme in ("http", "grpc"):
        if url.startswith(f"{scheme}://"):
            if protocol not in (None, scheme):
                raise InputError(f"url {url} says {scheme} but protocol={protocol!r}")
            return scheme, url[len(scheme) + 3:].rstrip("/")
    if "://" in url:
        raise InputError(f"url {url}: use host:port, http://host:port or grpc://host:port")
    protocol = protocol or "http"
    if protocol not in ("http", "grpc"):
        raise InputError(f"protocol must be http or grpc, got {protocol!r}")
    return protocol, url.rstrip("/")


def image_bytes(image) -> bytes:
    """Encoded bytes of a path (sent as the file is), bytes, PIL image, uint8 HxWx3 array or
    float [3, H, W] tensor in [0, 1] (PNG, lossless)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"image {path} does not exist or is not a file")
        return path.read_bytes()
    from .imageio import as_image_tensor

    return P.encode_png(as_image_tensor(image))


class EditClient:
    """Client of an ``editrt serve`` server over HTTP or gRPC (tritonclient).

    url: ``host:port`` (HTTP unless ``protocol="grpc"``), ``http://host:port`` or
    ``grpc://host:port``; timeout_s: per request (network and inference).
    """

    def __init__(self, url: str = "127.0.0.1:8000", *, protocol: str | None = None, timeout_s: float = 300.0):
        self.protocol, self.url = _parse_url(url, protocol)
        try:
            if self.protocol == "http":
                import tritonclient.http as tc
            else:
                import tritonclient.grpc as tc
            from tritonclient.utils import InferenceServerException
        except ImportError as exc:
            raise BackendUnavailable(f"the client needs tritonclient (pip install 'editrt[serve]'): {exc}") from None
        self._tc, self._exc_type, self.timeout_s = tc, InferenceServerException, float(timeout_s)
        kw = ({"network_timeout": self.timeout_s, "connection_timeout": self.timeout_s}
              if self.protocol == "http" else {})
        self._client = tc.InferenceServerClient(self.url, **kw)

    # -- server state ---------------------------------------------------------------------------------
    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:  # noqa: BLE001 - not reachable = not ready
            return False

    def models(self) -> list[str]:
        """Names of editrt's models that the server has ready (PyTriton restricts the repository index)."""
        return [m for m in P.METHODS + P.CLIP_MODELS if self._ready(m)]

    def _ready(self, model: str) -> bool:
        try:
            return bool(self._client.is_model_ready(model))
        except self._exc_type:
            return False

    # -- edits ----------------------------------------------------------------------------------------
    def edit(self, image=None, target: str | None = None, *, method: str = "global", source: str | None = None,
             seed: int | None = None, latent=None, neutral: str | None = None,
             strength: float | Sequence[float] | None = None, beta: float | None = None,
             threshold: float | None = None, k: int | None = None, steps: int | None = None):
        """One edit on the server; the same result type as the SDK call.

        Direction methods (``global``, ``feu``, ``deltaedit``): exactly one of ``image`` (a photo,
        inverted with e4e on the server), ``seed`` (generator sample) or ``latent`` (W+ [n_latent, D]
        or W [D]); ``strength`` is alpha (global, feu) or DeltaEdit's Δs multiplier, one value or
        several. Returns a :class:`~editrt.methods.stylespace.result.StyleEditResult` (batch 1;
        ``extras["png"]`` holds the server's PNG grid). ``flexit``: ``image``, ``source`` text
        and ``target``, optional ``steps`` and ``seed``; returns an
        :class:`~editrt.methods.flexit.EditResult` (``snapshots`` empty: not sent).
        """
        if not isinstance(target, str):
            raise InputError("give the target text (target='...')")
        if method == "flexit":
            if image is None or source is None:
                raise InputError("flexit needs image= and source= (text describing the input)")
            unused = [n for n, v in (("latent", latent), ("neutral", neutral), ("strength", strength),
                                     ("beta", beta), ("threshold", threshold), ("k", k)) if v is not None]
            if unused:
                raise InputError(f"{', '.join(unused)} do not apply to flexit")
            feeds = {"image": P.bytes_tensor(image_bytes(image)), "source": P.bytes_tensor(source),
                     "target": P.bytes_tensor(target)}
            if steps is not None:
                feeds["steps"] = np.array([[steps]], dtype=np.int32)
            if seed is not None:
                feeds["seed"] = np.array([[seed]], dtype=np.int64)
            return self._flexit_result(self.infer("flexit", feeds), source, target)
        if method not in P.DIRECTION_METHODS:
            raise InputError(f"unknown method {method!r}; use one of {', '.join(P.METHODS)}")
        if source is not None or steps is not None:
            raise InputError("source= and steps= apply to flexit only (direction methods take neutral=)")
        given = [n for n, v in (("image", image), ("seed", seed), ("latent", latent)) if v is not None]
        if len(given) != 1:
            raise InputError(f"give exactly one of image=, seed= or latent=, got {given or 'none'}")
        feeds = {"target": P.bytes_tensor(target)}
        if image is not None:
            feeds["image"] = P.bytes_tensor(image_bytes(image))
        elif seed is not None:
            feeds["seed"] = np.array([[seed]], dtype=np.int64)
        else:
            w = np.asarray(latent.detach().cpu() if hasattr(latent, "detach") else latent, dtype=np.float32)
            feeds["latent"] = (w[None] if w.ndim == 1 else w)[None]
        for name, value, dtype in (("neutral", neutral, None), ("beta", beta, np.float32),
                                   ("threshold", threshold, np.float32), ("k", k, np.int32)):
            if value is not None:
                feeds[name] = P.bytes_tensor(value) if dtype is None else np.array([[value]], dtype=dtype)
        if strength is not None:
            feeds["strength"] = np.asarray([strength] if np.isscalar(strength) else list(strength),
                                           dtype=np.float32)[None]
        return self._style_result(self.infer(method, feeds))

    def embed_text(self, text: str):
        """Unit CLIP text embedding [D] (torch float32) from ``clip_text``."""
        import torch

        return torch.from_numpy(self.infer("clip_text", {"text": P.bytes_tensor(text)})["embedding"][0].copy())

    def embed_image(self, image):
        """Unit CLIP image embedding [D] (torch float32) from ``clip_image``."""
        import torch

        out = self.infer("clip_image", {"image": P.bytes_tensor(image_bytes(image))})
        return torch.from_numpy(out["embedding"][0].copy())

    # -- transport ------------------------------------------------------------------------------------
    def infer(self, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Raw call: ``feeds`` with their batch dimension -> every output as numpy."""
        inputs = []
        for name, value in feeds.items():
            value = np.asarray(value)
            dtype = "BYTES" if value.dtype == object else {np.float32: "FP32", np.int64: "INT64",
                                                            np.int32: "INT32", np.float64: "FP64"}[value.dtype.type]
            x = self._tc.InferInput(name, list(value.shape), dtype)
            x.set_data_from_numpy(value)
            inputs.append(x)
        outputs = [self._tc.InferRequestedOutput(s.name) for s in P.OUTPUTS.get(model, ())]
        kw = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        result = self._call(self._client.infer, model, inputs, outputs=outputs or None, **kw)
        out = {s.name: result.as_numpy(s.name) for s in P.OUTPUTS.get(model, ())}
        err = out.get("error")
        if err is not None and err.reshape(-1)[0]:
            raise self._error(bytes(err.reshape(-1)[0]).decode())
        return out

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except self._exc_type as exc:
            raise self._error(str(exc), getattr(exc, "status", lambda: None)()) from None
        except Exception as exc:  # noqa: BLE001 - transport failures (refused, closed mid-request, ...)
            raise BackendUnavailable(f"editrt server at {self.protocol}://{self.url} is not reachable: "
                                     f"{type(exc).__name__}: {exc}") from None

    def _error(self, text: str, status=None) -> EditrtError:
        payload = P.parse_error(text)
        if payload is not None:
            return P.error_class(payload["type"])(payload["message"])
        status = str(status or "")
        if "400" in status or "INVALID_ARG" in status or "[400]" in text:
            return InputError(f"the server refused the request: {text.strip()}")
        if "connection" in text.lower() or "UNAVAILABLE" in status or "unavailable" in text.lower():
            return BackendUnavailable(f"editrt server at {self.protocol}://{self.url}: {text.strip()}")
        return EditrtError(f"editrt server error: {text.strip()}")

    # -- results --------------------------------------------------------------------------------------
    @staticmethod
    def _style_result(out: dict[str, np.ndarray]):
        import torch

        from .methods.stylespace.result import StyleEditResult
        from .models.stylegan2 import StyleCode, StyleLayer, StyleLayout

        summary = json.loads(bytes(out["summary"].reshape(-1)[0]))
        layout = StyleLayout(tuple(StyleLayer(**row) for row in summary["layout"]))
        codes = torch.from_numpy(out["codes"][0].copy())
        extras: dict[str, Any] = dict(summary["extras"])
        extras["png"] = bytes(out["image"].reshape(-1)[0])
        extras["served"] = summary["batch"]
        return StyleEditResult(
            images=torch.from_numpy(out["images"].copy()), codes=[StyleCode.from_flat(codes[i:i + 1], layout)
                                                                 for i in range(codes.shape[0])],
            source=torch.from_numpy(out["source"].copy()), strengths=tuple(summary["strengths"]),
            channels_changed=int(summary["channels_changed"]), direction=torch.from_numpy(out["direction"][0].copy()),
            method=summary["method"], config=summary["config"], extras=extras)

    @staticmethod
    def _flexit_result(out: dict[str, np.ndarray], source: str, target: str):
        import torch

        from .config import FlexITConfig
        from .methods.flexit import EditResult

        summary = json.loads(bytes(out["summary"].reshape(-1)[0]))
        return EditResult(images=torch.from_numpy(out["images"][0].copy()), history=summary["history"],
                          snapshots={}, config=FlexITConfig.from_dict(summary["config"]),
                          step_seconds=list(summary["step_seconds"]), sources=[source], targets=[target])

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "EditClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def triton_metrics(url: str, timeout_s: float = 10.0) -> dict[str, dict[str, float]]:
    """Triton's Prometheus counters by model: ``{model: {metric: value}}`` from ``url``
    (``http://host:metrics_port/metrics``), e.g. ``nv_inference_request_success``,
    ``nv_inference_count`` (requests) and ``nv_inference_exec_count`` (model calls = batches)."""
    import re
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError as exc:
        raise BackendUnavailable(f"metrics at {url} are not reachable: {exc}") from None
    out: dict[str, dict[str, float]] = {}
    for m in re.finditer(r'^(nv_\w+)\{([^}]*)\}\s+([0-9.eE+-]+)$', text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if "model" in labels:
            out.setdefault(labels["model"], {})[m.group(1)] = float(m.group(3))
    return out


def png_pixels(data: bytes) -> np.ndarray:
    """Decoded PNG bytes -> uint8 [H, W, 3] (for comparing served images)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


__all__ = ["EditClient", "image_bytes", "png_pixels", "triton_metrics"]
