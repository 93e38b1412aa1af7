"""Decode and validate input images; write outputs atomically.

Accepted: anything Pillow decodes. Conversions (documented behaviour):
- EXIF orientation is applied, so the image is edited as it is displayed;
- grayscale (L, 1), palette (P), CMYK, YCbCr, LAB -> RGB through Pillow;
- alpha (RGBA, LA, PA) is composited over white;
- 16-bit and 32-bit integer / float grayscale (I;16*, I, F) are rescaled to 8 bits by their
  full range (65535 for 16-bit), not clipped;
- animated or multi-page files (GIF, APNG, WebP, TIFF): the first frame, with a warning;
- JPEGs over :data:`MAX_DECODE_PIXELS` are decoded at 1/2, 1/4 or 1/8 scale (the JPEG
  decoder's own DCT scaling, Pillow ``draft``), so decode memory stays bounded whatever size
  the header claims.
Refused with :class:`InputError`: missing, empty, truncated or non-image files, images under
32 px on a side, other formats over :data:`MAX_DECODE_PIXELS` once decoded (JPEGs over
:data:`MAX_PIXELS` claimed), float images with NaN or infinite pixels, and PNGs whose text
metadata exceeds Pillow's limits. Every failure of the decoder, whatever it raises, becomes an
InputError naming the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

if TYPE_CHECKING:  # torch loads with the first tensor conversion, not with `import editrt.imageio`
    import torch

log = logging.getLogger(__name__)

MIN_SIDE = 32
MAX_PIXELS = 50_000_000  # largest image a header may claim (JPEG: before DCT scaling)
# Largest image held decoded: 16 MP is 48 MB as uint8 RGB and 192 MB as the float tensor.
MAX_DECODE_PIXELS = 16_000_000
OUTPUT_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                   ".tif": "TIFF", ".tiff": "TIFF"}


def _check_claimed_size(img: Image.Image, what: str) -> None:
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InputError(f"{what} is {w}x{h} = {w * h / 1e6:.1f} MP, over the "
                         f"{MAX_PIXELS / 1e6:.0f} MP limit; downscale it first")
    if w * h <= MAX_DECODE_PIXELS:
        return
    if img.format == "JPEG":
        scale = 2
        while (w // scale) * (h // scale) > MAX_DECODE_PIXELS and scale < 8:
            scale *= 2
        img.draft(img.mode, (w // scale, h // scale))
        log.warning("%s is %dx%d (%.1f MP): decoded at 1/%d scale, %dx%d", what, w, h, w * h / 1e6,
                    scale, *img.size)
        if img.size[0] * img.size[1] <= MAX_DECODE_PIXELS:
            return
    raise InputError(f"{what} is {w}x{h} = {w * h / 1e6:.1f} MP; editrt decodes at most "
                     f"{MAX_DECODE_PIXELS / 1e6:.0f} MP, downscale it first")


def _decoder_message(exc: BaseException) -> str:
    text = str(exc)
    if "MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text or "text chunk" in text.lower():
        return "its PNG text metadata is larger than the decoder accepts (strip the metadata)"
    return f"unreadable or truncated ({type(exc).__name__}: {text[:200]})"


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read ``path`` as an 8-bit RGB PIL image (see module docstring for conversions)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image {path} does not exist")
    if not path.is_file():
        raise InputError(f"image {path} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"image {path} is empty (0 bytes)")
    return decode_image(path, f"image {path}", unknown=f"{path} is not an image Pillow can read")


def decode_image(source, what: str, *, unknown: str | None = None) -> Image.Image:
    """Decode ``source`` (a path or a binary file object) into an 8-bit RGB PIL image with the
    claimed-size bound, bounded decode memory and every decoder failure as an InputError."""
    try:
        with Image.open(source) as img:
            _check_claimed_size(img, what)
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                log.warning("%s has %d frames (animated or multi-page): editing the first one", what, frames)
            img.load()
            return to_rgb(img, what)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(unknown or f"{what} is not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{what} is too large: {exc}") from None
    except MemoryError:
        raise InputError(f"{what} needs more memory to decode than is available") from None
    except RecursionError:
        raise InputError(f"{what} is malformed (its structure nests too deeply)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's plugins raise OSError, SyntaxError, ValueError,
        # RuntimeError, TypeError, struct.error, EOFError, IndexError, ... on corrupt files
        raise InputError(f"{what}: {_decoder_message(exc)}") from None


def to_rgb(img: Image.Image, what: str = "image") -> Image.Image:
    """Validate size and convert any Pillow mode to 8-bit RGB (EXIF orientation applied)."""
    img = ImageOps.exif_transpose(img)
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{what} is {w}x{h}: smaller than {MIN_SIDE} px on a side")
    if w * h > MAX_DECODE_PIXELS:
        raise InputError(f"{what} is {w * h / 1e6:.1f} MP, over the {MAX_DECODE_PIXELS / 1e6:.0f} MP limit")
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64)
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise InputError(f"{what} has {bad} NaN or infinite pixel value(s); editrt refuses non-finite images")
        if mode.startswith("I;16"):
            arr = arr / 65535.0
        else:  # 32-bit: use the observed range
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        gray = Image.fromarray(np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return img.convert("RGB")
    return img


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL -> float [3, H, W] in [0, 1]."""
    import torch

    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def tensor_to_pil(x: torch.Tensor, *, rounding: str = "truncate") -> Image.Image:
    """[3, H, W] in [0, 1] -> PIL. ``truncate`` matches torchvision's ``ToPILImage`` (FlexIT's
    reference); ``round`` rounds to nearest."""
    import torch

    if x.ndim != 3 or x.shape[0] != 3:
        raise InputError(f"expected an image tensor [3, H, W], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError("image tensor contains NaN or infinite values")
    y = x.detach().float().cpu().clamp(0, 1).mul(255)
    y = y.round() if rounding == "round" else y.floor()
    return Image.fromarray(y.to(torch.uint8).permute(1, 2, 0).numpy(), "RGB")


def as_image_tensor(image, *, what: str = "image") -> torch.Tensor:
    """Path / PIL / uint8 HWC array / float [3,H,W] tensor -> float [3, H, W] in [0, 1]."""
    import torch

    if isinstance(image, (str, os.PathLike)):
        return pil_to_tensor(load_image(image))
    if isinstance(image, Image.Image):
        return pil_to_tensor(to_rgb(image, what))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"{what}: numpy images must be uint8 HxWx3, got {image.dtype} {image.shape}")
        return pil_to_tensor(to_rgb(Image.fromarray(image), what))
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise InputError(f"{what}: tensors must be float [3, H, W] in [0, 1], got {image.dtype} {tuple(image.shape)}")
        if not torch.isfinite(image).all():
            raise InputError(f"{what} contains NaN or infinite values")
        if image.min() < 0 or image.max() > 1:
            raise InputError(f"{what}: tensor values must lie in [0, 1] (got {float(image.min()):.3g}..{float(image.max()):.3g})")
        if min(image.shape[1:]) < MIN_SIDE:
            raise InputError(f"{what} is {image.shape[2]}x{image.shape[1]}: smaller than {MIN_SIDE} px")
        return image.float()
    raise InputError(f"{what}: unsupported type {type(image).__name__} (use a path, PIL image, "
                     "uint8 HxWx3 array or float [3,H,W] tensor)")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: same resolved path (symlinks followed) or, when both
    exist, the same inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(out: str | os.PathLike, *, inputs: tuple = (), others: tuple = (),
                      image: bool = True) -> Path:
    """Validate an output path before any work: known image suffix (``image=True``), not a
    folder, writable folder, and neither an input nor one of the ``others`` outputs (through
    symlinks and hard links)."""
    out = Path(out)
    kind = "output" if image else "output file"
    if out.is_dir() or str(out).endswith(os.sep):
        raise InputError(f"{kind} {out} is a folder; give a file name")
    if image and out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"{kind} {out}: unsupported extension {out.suffix!r}; use one of "
                         f"{', '.join(sorted(OUTPUT_SUFFIXES))}")
    for src in inputs:
        if isinstance(src, (str, os.PathLike)) and _same_file(Path(src), out):
            raise InputError(f"{kind} {out} is the input file {src}; editrt never overwrites its input")
    for other in others:
        if other is not None and _same_file(Path(other), out):
            raise InputError(f"{kind} {out} is also the output {other}; give each output its own path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"output folder {parent} does not exist")
    if not parent.is_dir():
        raise InputError(f"output folder {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder {parent} is not writable")
    return out


def check_not_degenerate(x: torch.Tensor, *, what: str = "output") -> None:
    """Refuse a decoded image [3, H, W] that is one flat colour: the optimisation diverged
    (e.g. a step length far beyond the latent's range), which must not pass as an edit."""
    from .errors import NumericalError

    if x.numel() and float(x.max() - x.min()) < 1 / 255:  # one 8-bit value everywhere
        raise NumericalError(f"{what} is a uniform image (every pixel {float(x.flatten()[0]):.3f}): the "
                             "edit diverged; lower lr or check the config")


from .files import atomic_write_bytes  # noqa: E402  (kept here for existing callers)


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    """Save atomically (temp file + rename); format from the suffix."""
    import io

    path = Path(path)
    fmt = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"output {path}: unsupported extension {path.suffix!r}")
    if not isinstance(image, Image.Image):
        image = tensor_to_pil(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["load_image", "to_rgb", "pil_to_tensor", "tensor_to_pil", "as_image_tensor",
           "check_output_path", "check_not_degenerate", "save_image", "atomic_write_bytes", "MIN_SIDE", "MAX_PIXELS"]
