"""The wire format of editrt's Triton models, shared by the server and :mod:`editrt.client`.

Every model is batched (``max_batch_size > 0``): each tensor below carries a leading batch
dimension of 1 per request, which Triton's dynamic batcher stacks across requests. Shapes are
given without it; ``-1`` is a variable dimension.

Direction models (``global``, ``feu``, ``deltaedit``), one source per request (exactly one of):
    image  BYTES [1]       encoded image (PNG, JPEG, ...), inverted with e4e
    seed   INT64 [1]       generator sample ``RandomState(seed)``, psi 0.7 (``codes_from_seeds``)
    latent FP32  [-1, -1]  W+ latents [n_latent, style_dim] (W as [1, style_dim])
  and the edit:
    target BYTES [1]; neutral BYTES [1] (global, deltaedit); strength FP32 [-1] (alpha for
    global/feu, the Δs multiplier for DeltaEdit; several give one output each); beta FP32 [1]
    (global, feu); threshold FP32 [1] (deltaedit); k INT32 [1] (feu).
  outputs: image BYTES [1] PNG grid (source, then each strength, as ``editrt style-edit -o``);
    images FP32 [-1, 3, -1, -1] edits in [-1, 1]; source FP32 [3, -1, -1]; codes FP32 [-1, -1]
    edited S codes (``StyleCode.flat``); direction FP32 [-1]; summary BYTES [1] JSON; error.

FlexIT (``flexit``): image BYTES [1], source BYTES [1], target BYTES [1], steps INT32 [1],
    seed INT64 [1]; outputs image (PNG of the edit), images FP32 [1, 3, S, S] in [0, 1],
    summary (the report, per-step history and step times), error.

CLIP embeddings (``clip_text``, ``clip_image``): text BYTES [1] or image BYTES [1] ->
    embedding FP32 [D] (unit norm; ``ClipNet.embed_text`` / ``embed_image``), error.

``error`` BYTES [1] is empty on success. A request that fails alone gets Triton's own error
response; one that fails inside a batch of several gets its error here (the other requests of
the batch are answered normally) and placeholder values in the other outputs. Either way the
message is :func:`error_payload`'s JSON, and the client raises the editrt error it names.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np

from .. import errors as E
from ..errors import InputError

DEFAULT_HOST = "127.0.0.1"  # every endpoint binds here unless told otherwise (not exposed)

DIRECTION_METHODS = ("global", "feu", "deltaedit")
METHODS = DIRECTION_METHODS + ("flexit",)
CLIP_MODELS = ("clip_text", "clip_image")
MAX_PROMPT_BYTES = 1000  # before tokenising; CLIP's 77-token limit is checked by its tokenizer
MAX_IMAGE_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model (shape without the batch dimension)."""

    name: str
    dtype: type  # numpy type: np.bytes_, np.float32, np.int64, np.int32
    shape: tuple[int, ...]
    optional: bool = False

    @property
    def triton_dtype(self) -> str:
        return {np.bytes_: "BYTES", np.float32: "FP32", np.int64: "INT64", np.int32: "INT32"}[self.dtype]


def _t(name, dtype, shape, optional=False) -> TensorSpec:
    return TensorSpec(name, dtype, tuple(shape), optional)


ERROR_OUT = _t("error", np.bytes_, (1,))
_SOURCE_INPUTS = (_t("image", np.bytes_, (1,), True), _t("seed", np.int64, (1,), True),
                  _t("latent", np.float32, (-1, -1), True))
_STYLE_OUTPUTS = (_t("image", np.bytes_, (1,)), _t("images", np.float32, (-1, 3, -1, -1)),
                  _t("source", np.float32, (3, -1, -1)), _t("codes", np.float32, (-1, -1)),
                  _t("direction", np.float32, (-1,)), _t("summary", np.bytes_, (1,)), ERROR_OUT)
_EDIT_INPUTS = {
    "global": (_t("target", np.bytes_, (1,)), _t("neutral", np.bytes_, (1,), True),
               _t("strength", np.float32, (-1,), True), _t("beta", np.float32, (1,), True)),
    "feu": (_t("target", np.bytes_, (1,)), _t("strength", np.float32, (-1,), True),
            _t("beta", np.float32, (1,), True), _t("k", np.int32, (1,), True)),
    "deltaedit": (_t("target", np.bytes_, (1,)), _t("neutral", np.bytes_, (1,), True),
                  _t("strength", np.float32, (-1,), True), _t("threshold", np.float32, (1,), True)),
}

INPUTS: dict[str, tuple[TensorSpec, ...]] = {
    **{m: _SOURCE_INPUTS + _EDIT_INPUTS[m] for m in DIRECTION_METHODS},
    "flexit": (_t("image", np.bytes_, (1,)), _t("source", np.bytes_, (1,)), _t("target", np.bytes_, (1,)),
               _t("steps", np.int32, (1,), True), _t("seed", np.int64, (1,), True)),
    "clip_text": (_t("text", np.bytes_, (1,)),),
    "clip_image": (_t("image", np.bytes_, (1,)),),
}
OUTPUTS: dict[str, tuple[TensorSpec, ...]] = {
    **{m: _STYLE_OUTPUTS for m in DIRECTION_METHODS},
    "flexit": (_t("image", np.bytes_, (1,)), _t("images", np.float32, (-1, 3, -1, -1)),
               _t("summary", np.bytes_, (1,)), ERROR_OUT),
    "clip_text": (_t("embedding", np.float32, (-1,)), ERROR_OUT),
    "clip_image": (_t("embedding", np.float32, (-1,)), ERROR_OUT),
}


def placeholder(spec: TensorSpec) -> np.ndarray:
    """A one-element stand-in [1, 1, ...] for an output of a failed request (zero sizes cannot
    cross PyTriton's shared memory)."""
    shape = (1,) + tuple(1 if d < 0 else d for d in spec.shape)
    if spec.dtype is np.bytes_:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=spec.dtype)


# -- values ---------------------------------------------------------------------------------------
def text_value(value, name: str) -> str:
    """A BYTES [1, 1] request value -> a non-empty UTF-8 string of at most MAX_PROMPT_BYTES."""
    raw = np.asarray(value).reshape(-1)
    if raw.size != 1:
        raise InputError(f"{name}: send one string, got {raw.size}")
    data = raw[0]
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_PROMPT_BYTES:
        raise InputError(f"{name} is {len(data)} bytes long, over the {MAX_PROMPT_BYTES}-byte limit")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name} is not valid UTF-8 text") from None
    if not text.strip():
        raise InputError(f"empty {name} prompt: describe the wanted image content")
    return text


def float_value(value, name: str) -> float:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size != 1 or not math.isfinite(float(v[0])):
        raise InputError(f"{name} must be one finite number, got {v.tolist()}")
    return float(v[0])


def floats_value(value, name: str) -> list[float]:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.size == 0 or not np.isfinite(v).all():
        raise InputError(f"{name} must be one or more finite numbers, got {v.tolist()}")
    return [float(x) for x in v]


def int_value(value, name: str) -> int:
    v = np.asarray(value).reshape(-1)
    if v.size != 1:
        raise InputError(f"{name} must be one integer, got {v.size} values")
    return int(v[0])


def decode_image(value, name: str = "image"):
    """Encoded image bytes -> 8-bit RGB PIL image, with ``editrt.imageio``'s checks and conversions."""
    from ..imageio import decode_image as decode_image_file

    raw = np.asarray(value).reshape(-1)
    if raw.size != 1:
        raise InputError(f"{name}: send one encoded image, got {raw.size}")
    data = bytes(raw[0])
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"{name} is {len(data) / 2**20:.1f} MiB, over the {MAX_IMAGE_BYTES // 2**20} MiB limit")
    return decode_image_file(io.BytesIO(data), name, unknown=f"{name} is not an image Pillow can read ({len(data)} bytes)")


def encode_png(image) -> bytes:
    """PIL image or float [3, H, W] tensor in [0, 1] -> PNG bytes (``imageio.tensor_to_pil``'s
    truncating conversion, as ``save_image``)."""
    from ..imageio import tensor_to_pil

    if not hasattr(image, "save"):
        image = tensor_to_pil(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def bytes_tensor(data: bytes | str) -> np.ndarray:
    """One BYTES value with its batch dimension: [1, 1] object array."""
    return np.array([[data.encode() if isinstance(data, str) else data]], dtype=object)


# -- errors ---------------------------------------------------------------------------------------
ERROR_MARK = "editrt-error "


class ServedError(Exception):
    """Raised in a model callable so that Triton returns editrt's message as the error."""


def error_payload(exc: BaseException) -> str:
    """``editrt-error {"type": ..., "message": ...}``: the error class (an editrt.errors name,
    or InternalError) and its message, on one line so that it survives Triton's traceback text."""
    kind = type(exc).__name__ if isinstance(exc, E.EditrtError) else "InternalError"
    message = str(exc) if isinstance(exc, E.EditrtError) else f"{type(exc).__name__}: {exc}"
    return ERROR_MARK + json.dumps({"type": kind, "message": message})


def parse_error(text: str) -> dict | None:
    """The ``{"type", "message"}`` of an :func:`error_payload` inside ``text``, or None. The
    payload is ASCII (``json.dumps``), so a once more escaped copy (as some transports show
    tracebacks) is unescaped safely."""
    start = text.find(ERROR_MARK)
    if start < 0:
        return None
    tail = text[start + len(ERROR_MARK):]
    for candidate in (tail, tail.encode("ascii", "backslashreplace").decode("unicode_escape")):
        try:
            payload, _ = json.JSONDecoder().raw_decode(candidate)
        except ValueError:
            continue
        if isinstance(payload, dict) and {"type", "message"} <= payload.keys():
            return payload
    return None


def error_class(kind: str) -> type[E.EditrtError]:
    """The editrt error class named ``kind``; EditrtError for anything else."""
    cls = getattr(E, kind, None)
    return cls if isinstance(cls, type) and issubclass(cls, E.EditrtError) else E.EditrtError


__all__ = ["TensorSpec", "INPUTS", "OUTPUTS", "METHODS", "DIRECTION_METHODS", "CLIP_MODELS", "decode_image",
           "encode_png", "error_payload", "parse_error", "error_class", "ServedError", "placeholder"]
