"""Fuzzing the image decoder: mutated small files end in a decoded RGB image or editrt's own
InputError, never another exception, a hang or a memory blow-up.

A seed corpus of small valid files in every format Pillow writes here (built in-process, so the
bytes follow the installed Pillow) goes through a mutator: bit flips, "interesting" integers
(0, -1, 0x7fff, 0xffffffff, ...) written over random offsets in both byte orders, inserted,
deleted and duplicated ranges, truncation, splices of two seeds, and size fields rewritten to
huge values (PNG IHDR with a valid CRC, JPEG SOF). The CI run is bounded (about 60 s, fixed
seed); set ``EDITRT_FUZZ_SECONDS`` / ``EDITRT_FUZZ_CASES`` for a longer run, e.g.

    EDITRT_FUZZ_SECONDS=3600 EDITRT_FUZZ_CASES=210000 pytest tests/test_imageio_fuzz.py

A failing input is written to ``EDITRT_FUZZ_FAILURES`` (default: the test's tmp folder) so it
can be replayed with ``editrt.imageio.load_image``.
"""

from __future__ import annotations

import io
import os
import random
import resource
import signal
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from editrt import imageio
from editrt.errors import InputError

SEED = 20260
CI_SECONDS = float(os.environ.get("EDITRT_FUZZ_SECONDS", "60"))
CI_CASES = int(os.environ.get("EDITRT_FUZZ_CASES", "1000000"))
CASE_TIMEOUT_S = 10.0  # one decode longer than this counts as a hang
MAX_RSS_GROWTH_MB = 700  # decode memory is bounded by MAX_DECODE_PIXELS (see imageio)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def seed_corpus() -> dict[str, bytes]:
    """Small valid files: every mode editrt converts and every format Pillow can write here."""
    rng = np.random.RandomState(0)
    rgb = Image.fromarray(rng.randint(0, 256, (40, 48, 3), dtype=np.uint8), "RGB")
    rgba = Image.fromarray(rng.randint(0, 256, (36, 36, 4), dtype=np.uint8), "RGBA")
    gray16 = Image.fromarray(rng.randint(0, 65536, (34, 40), dtype=np.uint16))
    flt = Image.fromarray(rng.rand(33, 35).astype(np.float32), "F")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    frames = [rgb, rgb.rotate(90), rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    corpus = {
        "rgb.png": _encode(rgb, "PNG"),
        "rgba.png": _encode(rgba, "PNG"),
        "pal_trns.png": _encode(pal, "PNG", transparency=3),
        "gray16.png": _encode(gray16, "PNG"),
        "optimized.png": _encode(rgb, "PNG", optimize=True),
        "apng.png": _encode(frames[0], "PNG", save_all=True, append_images=frames[1:]),
        "rgb.jpg": _encode(rgb, "JPEG", quality=70),
        "progressive_exif.jpg": _encode(rgb, "JPEG", progressive=True, exif=exif.tobytes()),
        "cmyk.jpg": _encode(rgb.convert("CMYK"), "JPEG"),
        "gray.jpg": _encode(rgb.convert("L"), "JPEG"),
        "anim.gif": _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "rgb.bmp": _encode(rgb, "BMP"),
        "pal.bmp": _encode(pal, "BMP"),
        "float.tif": _encode(flt, "TIFF"),
        "gray16.tif": _encode(gray16, "TIFF"),
        "lzw.tif": _encode(rgb, "TIFF", compression="tiff_lzw"),
        "multipage.tif": _encode(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
        "rgb.tga": _encode(rgb, "TGA"),
        "rgb.ppm": _encode(rgb, "PPM"),
        "rgb.ico": _encode(rgb.resize((48, 48)), "ICO", sizes=[(48, 48)]),
        "rgb.pcx": _encode(rgb, "PCX"),
        "rgb.dds": _encode(rgba, "DDS"),
        "rgb.qoi": _encode(rgb, "QOI") if "QOI" in Image.SAVE else b"",
    }
    if features.check("webp"):
        corpus["rgb.webp"] = _encode(rgb, "WEBP", quality=60)
        corpus["anim.webp"] = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    if features.check_codec("avif") if "avif" in features.codecs else False:
        corpus["rgb.avif"] = _encode(rgb, "AVIF", quality=50)
    if features.check("jpg_2000"):
        corpus["rgb.jp2"] = _encode(rgb, "JPEG2000")
    return {k: v for k, v in corpus.items() if v}


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 42933, 666]


def _png_with_size(data: bytes, w: int, h: int) -> bytes:
    """Rewrite a PNG's IHDR width/height (CRC recomputed) so only the claimed size lies."""
    if not data.startswith(b"\x89PNG") or len(data) < 33:
        return data
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", w, h)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return data[:12] + bytes(ihdr) + crc + data[33:]


def _jpeg_with_size(data: bytes, w: int, h: int) -> bytes:
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        i = data.find(marker)
        if i >= 0 and i + 9 <= len(data):
            return data[:i + 5] + struct.pack(">HH", min(h, 0xFFFF), min(w, 0xFFFF)) + data[i + 9:]
    return data


def mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    """One to four random mutations of ``data`` (``other``: a second seed for splices)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        n = len(buf)
        if n == 0:
            buf = bytearray(other[: rng.randint(1, len(other))])
            continue
        pos = rng.randrange(n)
        if op == 0:  # bit flips
            for _ in range(rng.randint(1, 8)):
                p = rng.randrange(n)
                buf[p] ^= 1 << rng.randrange(8)
        elif op == 1:  # an interesting integer, 1/2/4 bytes, either byte order
            size = rng.choice((1, 2, 4))
            value = rng.choice(INTERESTING) & ((1 << (8 * size)) - 1)
            buf[pos:pos + size] = value.to_bytes(size, rng.choice(("big", "little")))
        elif op == 2:  # insert random bytes
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        elif op == 3:  # delete a range
            del buf[pos:pos + rng.randint(1, max(1, n // 8))]
        elif op == 4:  # truncate
            buf = buf[: rng.randint(0, n)]
        elif op == 5:  # duplicate a range (repeated chunks, frames)
            end = min(n, pos + rng.randint(1, 256))
            buf[end:end] = buf[pos:end] * rng.randint(1, 8)
        elif op == 6:  # splice with another seed
            cut = rng.randrange(len(other))
            buf = buf[:pos] + bytearray(other[cut:])
        elif op == 7:  # a huge claimed size with a valid header
            w, h = rng.choice([(42933, 666), (65535, 65535), (100000, 1), (8000, 8000), (1, 100000)])
            buf = bytearray(_jpeg_with_size(_png_with_size(bytes(buf), w, h), w, h))
        else:  # random bytes overwritten
            for _ in range(rng.randint(1, 16)):
                buf[rng.randrange(len(buf))] = rng.randrange(256) if buf else 0
    return bytes(buf)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def _check_one(path: Path) -> str:
    """'ok' (valid RGB image), 'refused' (InputError); anything else raises."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        img = imageio.load_image(path)
    except InputError as exc:
        assert str(exc), "an InputError without a message"
        return "refused"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert img.mode == "RGB"
    w, h = img.size
    assert min(w, h) >= imageio.MIN_SIDE and w * h <= imageio.MAX_DECODE_PIXELS
    return "ok"


def run_fuzz(tmp: Path, *, seconds: float, cases: int, seed: int = SEED) -> dict[str, int]:
    corpus = list(seed_corpus().items())
    rng = random.Random(seed)
    failures = Path(os.environ.get("EDITRT_FUZZ_FAILURES", tmp))
    counts = {"ok": 0, "refused": 0}
    path = tmp / "case.bin"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t_end = time.monotonic() + seconds
    for i in range(cases):
        if time.monotonic() > t_end:
            break
        name, data = corpus[i % len(corpus)] if i < len(corpus) else rng.choice(corpus)
        case = data if i < len(corpus) else mutate(rng, data, rng.choice(corpus)[1])
        path.write_bytes(case)
        try:
            counts[_check_one(path)] += 1
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            keep = failures / f"fuzz-failure-{seed}-{i}-{name}"
            keep.write_bytes(case)
            kind = "hang (> %.0f s)" % CASE_TIMEOUT_S if isinstance(exc, _Hang) else f"{type(exc).__name__}: {exc}"
            pytest.fail(f"case {i} (mutated {name}, saved as {keep}) ended in {kind}")
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert growth_mb < MAX_RSS_GROWTH_MB, f"decoding raised peak memory by {growth_mb:.0f} MB"
    return counts


def test_seed_corpus_decodes(tmp_path):
    """Every unmutated seed is a valid image editrt decodes (so the mutants start from real files)."""
    corpus = seed_corpus()
    assert len(corpus) >= 20
    for name, data in corpus.items():
        p = tmp_path / name
        p.write_bytes(data)
        assert _check_one(p) == "ok", name


def test_huge_claimed_jpeg_is_decoded_small(tmp_path):
    """A tiny JPEG whose header claims 42933x666 px is decoded with DCT scaling under the
    decode budget, not at 28.6 MP."""
    big = Image.new("RGB", (42933 // 8 * 8, 666), (90, 120, 150))
    p = tmp_path / "wide.jpg"
    big.save(p, quality=5)
    img = imageio.load_image(p)
    assert img.size[0] * img.size[1] <= imageio.MAX_DECODE_PIXELS
    assert img.size[0] < big.size[0]


def test_fuzz_decoder_bounded(tmp_path):
    counts = run_fuzz(tmp_path, seconds=CI_SECONDS, cases=CI_CASES)
    total = counts["ok"] + counts["refused"]
    assert total > len(seed_corpus()), counts  # mutants did run
    print(f"fuzzed {total} files: {counts['ok']} decoded, {counts['refused']} refused with InputError")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EDITRT_FUZZ_LONG") != "1", reason="opt-in: EDITRT_FUZZ_LONG=1 (up to an hour)")
def test_fuzz_decoder_long(tmp_path):
    """Opt-in long run (``EDITRT_FUZZ_LONG=1``): 210,000 mutants, other seed, up to an hour."""
    counts = run_fuzz(tmp_path, seconds=3600, cases=210_000, seed=SEED + 1)
    assert counts["ok"] + counts["refused"] > 0
