"""The one way editrt publishes a file: completely or not at all, with ordinary permissions.

Every writer (images, reports, manifests, checkpoints, relevance matrices, benchmark JSON) goes
through :func:`atomic_path`: the content is written to a hidden temporary file in the target's
folder, flushed to disk, given the mode a plain ``open()`` would give (``0o666`` minus the
umask; ``mkstemp`` alone leaves ``0o600``), then renamed over the target. Readers see the old
file or the new one, never a part; on any error the temporary file is removed and the target is
untouched.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterator

_log = logging.getLogger(__name__)

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``);
    elsewhere the set-and-restore dance, under a lock."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def publish_mode(*, directory: bool = False) -> int:
    """Mode of a new file (``0o666``) or folder (``0o777``) under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds, publish it as ``path``.

    For writers that want a file name (``torch.save``, ``safetensors.save_file``, ``np.save``).
    ``mode``: the published file's permissions (default :func:`publish_mode`). The folder must
    exist. On an exception the temporary file is removed and ``path`` is unchanged.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:  # the writer may have replaced the file: sync what is there now
            os.fsync(f.fileno())
        os.chmod(tmp, publish_mode() if mode is None else mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None) -> Iterator[IO]:
    """``open(path, mode)`` for writing ("w" or "wb"), published atomically when the block ends."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=encoding if "b" not in mode else None) as f:
            yield f


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` completely or not at all."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, **dumps: Any) -> Path:
    """``json.dumps(obj)`` plus a final newline, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def iter_jsonl(path: Path) -> Iterator[dict]:
    """The complete JSON-object lines of an append-only file (a torn last line is skipped)."""
    if not path.is_file():
        return
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                _log.warning("%s:%d: ignoring an incomplete line (interrupted run)", path, n)
                continue
            if isinstance(rec, dict):
                yield rec


def append_jsonl(path: Path, records: list[dict]) -> None:
    # A torn line from an interrupted run must not glue onto the next record.
    needs_newline = False
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) != b"\n"
    with open(path, "ab") as f:
        if needs_newline:
            f.write(b"\n")
        f.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


__all__ = ["append_jsonl", "iter_jsonl", "atomic_path", "atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
           "publish_mode", "current_umask"]
