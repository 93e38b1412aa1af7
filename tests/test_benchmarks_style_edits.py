"""benchmarks/style_edits.py: the reference-style loops compute what the SDK computes; rows by stage."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import harness  # noqa: E402
import style_edits as se  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    torch.set_num_threads(1)
    return se.StyleBench(preset="tiny", device=torch.device("cpu"),
                         budget=harness.Budget(warmup=0, warmup_s=0.0, min_reps=1, max_reps=1, min_time_s=0.0))


def test_numpy_boundary_matches_sdk(bench):
    from editrt.methods.stylespace import boundary, split_delta

    ed = se.build_editor("global", bench)
    dt = ed.direction(*se.PROMPTS["global"])
    beta = ed.config.beta
    ref = se._numpy_boundary(ed.fs3.cpu().numpy(), dt.cpu().numpy(), beta,
                             ed.stats.std.conv_view()[0].cpu().numpy())
    r, _ = boundary(ed.fs3, dt, beta)
    sdk = split_delta(r, ed.stats.std).conv_view()[0]
    torch.testing.assert_close(torch.from_numpy(ref).float(), sdk.float().cpu(), rtol=1e-5, atol=1e-6)


def test_per_class_text_encoding_matches_batched(bench):
    from editrt.methods.stylespace import template_embeddings

    ed = se.build_editor("global", bench)
    with torch.no_grad():
        a = se._classifier_per_class(ed.clip, ["smiling face", "face"])
        b = template_embeddings(ed.clip, ["smiling face", "face"])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_suite_rows(bench):
    rows = se.run_style_suite(bench, methods=("global",))
    doc = harness.make_document(rows, environment={"git": {}}, settings={"preset": "tiny", "device": "cpu"})
    assert harness.validate_document(doc) == []
    totals = {r["name"]: r for r in rows if not r.get("stage")}
    assert set(totals) == {"reference", "editrt"} and totals["editrt"]["ratio"] > 0
    stages = {r["stage"] for r in rows if r.get("stage") and r["variant"] == "editrt"}
    assert stages == {"text encoding", "direction", "synthesis", "decode"}
    assert all(r["items"] == bench.batch for r in rows)
