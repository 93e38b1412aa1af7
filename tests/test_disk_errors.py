"""A full or read-only disk ends every writing command with exit 7 and one line, keeping no
partial file; a failed `evaluate` leaves no empty folders behind.

The disk is simulated where every editrt writer finishes, the atomic rename (``os.replace``) of
a finished temporary file into place: it raises ENOSPC / EROFS for paths under the output folder,
so the temporary-file clean-up of each writer runs for real.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from PIL import Image

from editrt.cli import main
from editrt.demo import sample_image_path


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """Make renames into ``tmp_path/out`` fail with the errno given to ``set``."""
    out = tmp_path / "out"
    out.mkdir()
    real = os.replace
    state = {"errno": errno.ENOSPC}

    def failing_replace(src, dst, *a, **kw):
        if str(Path(dst).resolve()).startswith(str(out.resolve())):
            raise OSError(state["errno"], os.strerror(state["errno"]), str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", failing_replace)
    return out, state


def _leftovers(folder: Path) -> list[str]:
    """Files left under ``folder``, except the store's lock file."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".lock")


@pytest.mark.parametrize("err,why", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_edit_on_a_full_or_read_only_disk(full_disk, tmp_path, capsys, err, why):
    out, state = full_disk
    state["errno"] = err
    image = tmp_path / "in.png"
    Image.open(sample_image_path()).save(image)
    code = main(["edit", str(image), "--source", "a", "--target", "b", "-o", str(out / "o.png"),
                 "--random-weights", "--steps", "1", "--no-progress"])
    msg = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 7 and why in msg and "Traceback" not in msg, msg
    assert _leftovers(out) == []


@pytest.mark.parametrize("argv", [
    ["corpus", "build", "--samples", "2", "--random-weights", "--no-progress", "-o", "{o}/index.safetensors"],
    ["export", "--models", "stylegan2/tiny/mapping", "--random-weights", "--no-verify", "--out", "{o}/store"],
], ids=["corpus-build", "export"])
def test_commands_on_a_full_disk(full_disk, capsys, argv):
    out, _ = full_disk
    code = main([a.format(o=out) for a in argv])
    msg = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 7 and "disk is full" in msg, msg
    assert _leftovers(out) == []


def test_relevance_on_a_full_disk_keeps_nothing(full_disk, capsys):
    out, _ = full_disk
    code = main(["relevance", "--random-weights", "--no-progress", "--images", "1", "-o", str(out / "fs3.npy")])
    msg = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 7 and "disk is full" in msg, msg
    assert _leftovers(out) == []


def test_evaluate_failure_leaves_no_empty_folders(full_disk, capsys):
    out, _ = full_disk
    run = out / "runs" / "toy"
    code = main(["evaluate", "--toy", "--method", "none", "--baselines", "COPY", "--limit", "1",
                 "--stats-per-class", "1", "--no-progress", "-o", str(run)])
    msg = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 7 and "disk is full" in msg, msg
    assert not (out / "runs").exists()  # created by this run, empty after the failure: removed
