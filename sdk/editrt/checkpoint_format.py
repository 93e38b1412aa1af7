"""What a checkpoint file is, read from its bytes without running any of it.

Used to turn a failed load into an honest message: a random-bytes or truncated file is reported
as such, never as "pickled, pass --allow-pickle" (which would invite running code from a broken
file), and a refused pickle names the Python globals it would import.

Kinds: ``"zip"`` (``torch.save`` since 1.6, TorchScript archives, ``.npz``), ``"pickle"``
(legacy ``torch.save``, plain pickles), ``"safetensors"``, ``"npy"``, ``"empty"``, ``"unknown"``.
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from pathlib import Path

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = {bytes([0x80, p]) for p in range(2, 6)}
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit


def sniff(path: str | Path) -> str:
    """The kind of ``path`` from its first bytes (see module docstring)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head[:2] in _PICKLE_PROTOCOLS:
        return "pickle"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= _MAX_SAFETENSORS_HEADER and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def describe(path: str | Path) -> str:
    """One phrase for an error message: what the file is, or why it is not a checkpoint."""
    kind = sniff(path)
    size = Path(path).stat().st_size
    if kind == "empty":
        return "an empty file"
    if kind == "unknown":
        with open(path, "rb") as f:
            head = f.read(8)
        return (f"not a checkpoint: neither a zip archive (torch.save), a pickle, a safetensors nor an .npy "
                f"file ({size} bytes starting {head.hex(' ')})")
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return f"a truncated or damaged zip archive ({size} bytes; torch.save files are zip archives)"
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "a TorchScript archive"
        return "a torch.save zip archive" if any(n.endswith("data.pkl") for n in names) else "a zip archive"
    if kind == "safetensors":
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = f.read(n)
        try:
            json.loads(header)
        except ValueError:
            return f"a truncated or damaged safetensors file ({size} bytes)"
        return "a safetensors file"
    if kind == "pickle":
        scan = scan_pickle(path)
        return "a truncated pickle" if scan.truncated else "a pickle"
    return "an .npy array"


class PickleScan:
    """Globals a pickle refers to (``module.name``), and whether it ended before its STOP."""

    def __init__(self, globals_: list[str], truncated: bool):
        self.globals = globals_
        self.truncated = truncated


def _pickle_bytes(path: Path) -> bytes | None:
    """The main pickle of a checkpoint: ``*/data.pkl`` of a zip archive, or the file itself."""
    if sniff(path) == "zip":
        try:
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                return zf.read(member) if member else None
        except (zipfile.BadZipFile, OSError, KeyError):
            return None
    return path.read_bytes()


def scan_pickle(path: str | Path) -> PickleScan:
    """Walk the pickle opcodes (``pickletools.genops``, nothing is executed) and collect the
    globals it would import. A legacy ``torch.save`` file is several pickles in a row followed
    by raw storage bytes; they are scanned until a pickle fails to parse after the first."""
    data = _pickle_bytes(Path(path))
    if data is None:
        return PickleScan([], truncated=True)
    found: list[str] = []
    pos, first = 0, True
    while pos < len(data):
        strings: list[str] = []
        memo: dict[int, str] = {}
        stopped = False
        try:
            for op, arg, at in pickletools.genops(data[pos:]):
                name = op.name
                if name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING",
                            "BINSTRING", "STRING"):
                    strings.append(str(arg))
                elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    strings.append(memo[int(arg)])
                elif name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif name == "STOP":
                    pos += at + 1
                    stopped = True
                    break
        except ValueError:  # ran off the end of the data, or not pickle opcodes
            if first:
                return PickleScan(sorted(set(found)), truncated=True)
            break
        if not stopped:
            return PickleScan(sorted(set(found)), truncated=True)
        first = False
    return PickleScan(sorted(set(found)), truncated=False)


__all__ = ["sniff", "describe", "scan_pickle", "PickleScan"]
