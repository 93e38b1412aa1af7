"""The toy protocol of the direction methods (editrt.eval.stylespace) on the shipped toy StyleGAN2."""

import json

import pytest
import torch

from editrt.errors import InputError
from editrt.eval import stylespace as SP
from editrt.toy import models as TM
from editrt.toy import world


@pytest.fixture(scope="module")
def toy():
    return TM.load_toy_style()


def test_score_kept_and_accuracy(toy):
    q = next(q for q in world.toy_queries() if q.kind == "colour")
    target = world.make_image(q.target_id, world.STREAM_QUERY, 0)
    source = world.make_image(q.source_id, world.STREAM_QUERY, 0)
    rows = SP.score(toy, torch.stack([target, source]), source, q)
    assert rows[0]["correct"] and rows[0]["kept"] and not rows[0]["unedited"]
    assert not rows[1]["correct"] and rows[1]["kept"] and rows[1]["unedited"] and rows[1]["lpips"] < 1e-3


def test_protocol_runs_and_reports(tmp_path, toy):
    s = SP.evaluate_stylespace(toy, tmp_path, split="test", limit=2, flexit=False, pool=256, progress=False,
                               methods=("global", "deltaedit", "channel", "none"))
    names = [r["method"] for r in s["rows"]]
    assert names == ["no edit", "best single channel", "StyleCLIP global", "DeltaEdit"]
    none = s["rows"][0]
    assert none["kept"] == 100.0 and none["lpips"] < 1e-6 and none["accuracy"] <= 50.0
    for r in s["rows"]:
        assert len(r["grid"]) >= 1 and r["setting"] in [g["setting"] for g in r["grid"]]
    assert json.loads((tmp_path / SP.SUMMARY_FILE).read_text())["queries"] == 2
    assert "| DeltaEdit |" in (tmp_path / SP.TABLE_FILE).read_text()
    assert (tmp_path / SP.GRID_FILE).is_file()


def test_bad_arguments(tmp_path, toy):
    with pytest.raises(InputError, match="split"):
        SP.evaluate_stylespace(toy, tmp_path, split="train")
    with pytest.raises(InputError, match="sources"):
        SP.evaluate_stylespace(toy, tmp_path, sources="photos")


def test_cli_needs_toy(tmp_path):
    from editrt.cli import main

    assert main(["evaluate", "--imagenet-root", str(tmp_path), "--family", "stylespace", "-o", str(tmp_path / "o")]) == 2


def test_a_beta_over_every_channel_keeps_the_source():
    from editrt.methods.stylespace import boundary

    fs3, dt = torch.eye(3), torch.tensor([0.5, 0.2, 0.1])

    def edit(beta, alphas):
        boundary(fs3, dt, beta)  # no channel over beta 0.6: NoChannelOverBeta
        return torch.zeros(len(alphas), 3, 4, 4)

    src = torch.ones(3, 4, 4)
    grid = [{"alpha": 2.0, "beta": 0.1}, {"alpha": 2.0, "beta": 0.6}, {"alpha": 4.0, "beta": 0.6}]
    out = SP._by_beta(grid, edit, src)
    assert out.shape == (3, 3, 4, 4) and out[0].eq(0).all() and out[1:].eq(1).all()
    with pytest.raises(InputError):
        SP._by_beta(grid, edit)  # without a source the error stays

    def other_error(beta, alphas):
        raise InputError("empty prompt")
    with pytest.raises(InputError, match="empty prompt"):
        SP._by_beta(grid, other_error, src)  # only an edit that selects no channel keeps the source
