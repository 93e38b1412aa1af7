"""Decode and validate input images; write outputs atomically.

Accepted: anything Pillow decodes. Conversions (documented behaviour):
- EXIF orientation is applied, so the image is edited as it is displayed;
- grayscale (L, 1), palette (P), CMYK, YCbCr, LAB -> RGB through Pillow;
- alpha (RGBA, LA, PA) is composited over white;
- 16-bit and 32-bit integer / float grayscale (I;16*, I, F) are rescaled to 8 bits by their
  full range (65535 for 16-bit), not clipped.
Refused with :class:`InputError`: missing, empty, truncated or non-image files, images under
32 px on a side and images over 50 megapixels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

MIN_SIDE = 32
MAX_PIXELS = 50_000_000
OUTPUT_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                   ".tif": "TIFF", ".tiff": "TIFF"}


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read ``path`` as an 8-bit RGB PIL image (see module docstring for conversions)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"image {path} does not exist")
    if not path.is_file():
        raise InputError(f"image {path} is not a file")
    if path.stat().st_size == 0:
        raise InputError(f"image {path} is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise InputError(f"image {path} is {w}x{h} = {w * h / 1e6:.1f} MP, over the "
                                 f"{MAX_PIXELS / 1e6:.0f} MP limit; downscale it first")
            img.load()
            return to_rgb(img, str(path))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"image {path} is too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"image {path} is unreadable or truncated: {exc}") from None


def to_rgb(img: Image.Image, what: str = "image") -> Image.Image:
    """Validate size and convert any Pillow mode to 8-bit RGB (EXIF orientation applied)."""
    img = ImageOps.exif_transpose(img)
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise InputError(f"{what} is {w}x{h}: smaller than {MIN_SIDE} px on a side")
    if w * h > MAX_PIXELS:
        raise InputError(f"{what} is {w * h / 1e6:.1f} MP, over the {MAX_PIXELS / 1e6:.0f} MP limit")
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64)
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
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255)


def tensor_to_pil(x: torch.Tensor, *, rounding: str = "truncate") -> Image.Image:
    """[3, H, W] in [0, 1] -> PIL. ``truncate`` matches torchvision's ``ToPILImage`` (FlexIT's
    reference); ``round`` rounds to nearest."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise InputError(f"expected an image tensor [3, H, W], got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InputError("image tensor contains NaN or infinite values")
    y = x.detach().float().cpu().clamp(0, 1).mul(255)
    y = y.round() if rounding == "round" else y.floor()
    return Image.fromarray(y.to(torch.uint8).permute(1, 2, 0).numpy(), "RGB")


def as_image_tensor(image, *, what: str = "image") -> torch.Tensor:
    """Path / PIL / uint8 HWC array / float [3,H,W] tensor -> float [3, H, W] in [0, 1]."""
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


def check_output_path(out: str | os.PathLike, *, inputs: tuple = ()) -> Path:
    """Validate an output path before any work: known suffix, writable folder, not an input."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InputError(f"output {out}: unsupported extension {out.suffix!r}; use one of "
                         f"{', '.join(sorted(OUTPUT_SUFFIXES))}")
    for src in inputs:
        if isinstance(src, (str, os.PathLike)) and Path(src).exists() and out.exists() \
                and os.path.samefile(src, out):
            raise InputError(f"output {out} is the input file; editrt never overwrites its input")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"output folder {parent} is not writable")
    return out


from .files import atomic_write_bytes  # noqa: E402  (kept here for existing callers)


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    """Save atomically (temp file + rename); format from the suffix."""
    import io

    path = Path(path)
    fmt = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"output {path}: unsupported extension {path.suffix!r}")
    if isinstance(image, torch.Tensor):
        image = tensor_to_pil(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["load_image", "to_rgb", "pil_to_tensor", "tensor_to_pil", "as_image_tensor",
           "check_output_path", "save_image", "atomic_write_bytes", "MIN_SIDE", "MAX_PIXELS"]
