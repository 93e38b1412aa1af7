"""`editrt relevance` interrupted by SIGINT, then SIGTERM, resumes to the bitwise-equal matrix.

The checkpoint lives beside the output (OUTPUT.partial.safetensors) until the matrix is
complete, is saved every --checkpoint-every rows and on the signal, and the message says how to
resume; the final path never holds an unfinished file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from editrt.cli import main
from editrt.methods.stylespace.provenance import load_tensors

SDK = Path(__file__).resolve().parents[1] / "sdk"
# batches of whole channels (16 images = 8 rows at 1 image per channel): a resumed run groups its
# work exactly as an uninterrupted one, so the result is bitwise equal
ARGS = ["relevance", "--random-weights", "--no-progress", "--batch-size", "16", "--checkpoint-every", "4"]


def _rows_done(partial: Path) -> int:
    try:
        return int(load_tensors(partial, "checkpoint")[1]["channels_done"])
    except Exception:  # noqa: BLE001 - being replaced right now; try again
        return 0


def _interrupt_after_first_rows(out: Path, sig: int, min_rows: int) -> tuple[int, str, int]:
    """Run the CLI in a child process, send ``sig`` once the checkpoint holds ``min_rows`` rows."""
    partial = out.with_name(out.name + ".partial.safetensors")
    env = {**os.environ, "PYTHONPATH": str(SDK), "OMP_NUM_THREADS": "1"}
    # SIGINT back to its default in the child, as for a foreground Ctrl-C: a suite started as a
    # background job of a non-interactive shell inherits SIGINT ignored, and Python then installs
    # no KeyboardInterrupt handler (the child would finish its work and exit 0)
    proc = subprocess.Popen([sys.executable, "-m", "editrt.cli", *ARGS, "-o", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and _rows_done(partial) >= min_rows:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, _rows_done(partial)


@pytest.mark.slow  # two child processes and two full tiny relevance matrices
def test_relevance_resumes_bitwise_after_sigint_and_sigterm(tmp_path):
    out = tmp_path / "fs3.safetensors"
    partial = out.with_name(out.name + ".partial.safetensors")
    code, err, first = _interrupt_after_first_rows(out, signal.SIGINT, 4)
    assert code == 130, err
    assert "run the same command again to resume" in err and str(partial) in err, err
    assert "Traceback" not in err
    assert not out.exists() and partial.exists() and first >= 4  # unfinished work beside, never at OUT
    code, err, second = _interrupt_after_first_rows(out, signal.SIGTERM, first + 4)
    assert code == 130 and "resume" in err, err
    assert second > first and not out.exists()
    assert main([*ARGS, "-o", str(out)]) == 0  # the third run finishes the matrix
    assert out.exists() and not partial.exists()
    resumed, meta = load_tensors(out, "relevance")
    assert meta["complete"] is True

    full = tmp_path / "full.safetensors"
    assert main([*ARGS, "-o", str(full)]) == 0
    uninterrupted, _ = load_tensors(full, "relevance")
    assert torch.equal(resumed["fs3"], uninterrupted["fs3"])
    assert bool(resumed["done"].all())
