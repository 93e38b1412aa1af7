import io

import numpy as np
import pytest
import torch
from PIL import Image

from editrt import imageio
from editrt.errors import InputError


def _rgb(w=64, h=48):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


def test_rgb_png_roundtrip(tmp_path):
    p = tmp_path / "a.png"
    _rgb().save(p)
    img = imageio.load_image(p)
    assert img.mode == "RGB" and img.size == (64, 48)
    t = imageio.pil_to_tensor(img)
    assert t.shape == (3, 48, 64) and 0 <= t.min() and t.max() <= 1


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"hello, not an image", "not an image")])
def test_empty_and_non_image(tmp_path, content, match):
    p = tmp_path / "x.png"
    p.write_bytes(content)
    with pytest.raises(InputError, match=match):
        imageio.load_image(p)


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        imageio.load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="not a file"):
        imageio.load_image(tmp_path)


def test_truncated(tmp_path):
    buf = io.BytesIO()
    _rgb(256, 256).save(buf, format="JPEG")
    p = tmp_path / "t.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated"):
        imageio.load_image(p)


def test_modes_are_converted(tmp_path):
    gray = Image.fromarray(np.full((40, 40), 100, np.uint8), "L")
    gray.save(tmp_path / "g.png")
    assert imageio.load_image(tmp_path / "g.png").getpixel((0, 0)) == (100, 100, 100)
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent red -> white
    rgba.save(tmp_path / "a.png")
    assert imageio.load_image(tmp_path / "a.png").getpixel((5, 5)) == (255, 255, 255)
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    r, g, b = imageio.load_image(tmp_path / "c.jpg").getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60
    arr16 = np.full((40, 40), 65535 // 2, np.uint16)
    Image.fromarray(arr16).save(tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").mode.startswith("I")
    assert imageio.load_image(tmp_path / "s.png").getpixel((0, 0)) == (127, 127, 127)  # 32767/65535*255 = 127.5: scaled, not clipped to 255


def test_exif_orientation(tmp_path):
    img = _rgb(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    img.save(tmp_path / "e.jpg", exif=exif.tobytes())
    assert imageio.load_image(tmp_path / "e.jpg").size == (40, 60)


def test_size_limits(tmp_path):
    _rgb(20, 64).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="smaller than 32"):
        imageio.load_image(tmp_path / "small.png")
    Image.new("1", (8000, 6400)).save(tmp_path / "huge.png")  # 51.2 MP, tiny file
    with pytest.raises(InputError, match="MP"):
        imageio.load_image(tmp_path / "huge.png")


def test_tensor_and_array_inputs():
    x = imageio.as_image_tensor(np.zeros((40, 50, 3), np.uint8))
    assert x.shape == (3, 40, 50)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        imageio.as_image_tensor(torch.full((3, 40, 40), 2.0))
    with pytest.raises(InputError, match="NaN"):
        imageio.as_image_tensor(torch.full((3, 40, 40), float("nan")))
    with pytest.raises(InputError, match="unsupported type"):
        imageio.as_image_tensor(12)


def test_save_is_atomic_and_never_overwrites_input(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    _rgb().save(src)
    before = src.read_bytes()
    with pytest.raises(InputError, match="is the input"):
        imageio.check_output_path(src, inputs=(src,))
    with pytest.raises(InputError, match="extension"):
        imageio.check_output_path(tmp_path / "out.gifx")
    with pytest.raises(InputError, match="does not exist"):
        imageio.check_output_path(tmp_path / "no" / "out.png")
    out = tmp_path / "out.png"

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "replace", boom)
    with pytest.raises(OSError):
        imageio.save_image(torch.rand(3, 40, 40), out)
    assert not out.exists() and list(tmp_path.iterdir()) == [src]  # no partial or temp file
    monkeypatch.undo()
    imageio.save_image(torch.rand(3, 40, 40), out)
    assert Image.open(out).size == (40, 40) and src.read_bytes() == before


def test_tensor_to_pil_truncates_like_topilimage():
    x = torch.full((3, 32, 32), 0.999)  # 254.7 -> 254 (truncation), 255 when rounding
    assert imageio.tensor_to_pil(x).getpixel((0, 0)) == (254, 254, 254)
    assert imageio.tensor_to_pil(x, rounding="round").getpixel((0, 0)) == (255, 255, 255)
