"""The shipped toy models: they load from the package, are trained, and run the protocol and demo."""

import json

import pytest
import torch

from editrt.toy import models as TM
from editrt.toy import world as W


@pytest.fixture(scope="module")
def toy():
    assert TM.available(), "toy weights must ship in editrt/data/toy (scripts/train_toy.py)"
    return TM.load_toy_models()


def test_weights_ship_with_the_package(toy):
    folder = TM.toy_dir()
    assert folder.parts[-3:] == ("editrt", "data", "toy")
    man = TM.manifest()
    assert set(man["models"]) == {"vqgan", "clip", "classifier", "stylegan2", "stylegan2_encoder", "stylegan2_stats",
                                  "stylegan2_fs3", "stylegan2_corpus", "deltaedit_mapper"}
    total = sum((folder / f).stat().st_size for f in TM.WEIGHT_FILES + TM.STYLE_FILES)
    assert total < 25e6
    import hashlib

    for entry in man["models"].values():
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]


def test_models_are_trained(toy):
    from editrt.toy.train import clip_zero_shot, held_out

    x, labels = held_out(2)
    with torch.no_grad():
        acc = (toy.classifier(x).argmax(1) == labels).float().mean().item()
        rec = toy.vqgan.decode_clamped(toy.vqgan.encode(x))
    assert acc >= 0.5  # random: ~0.04 (shipped weights: 0.64 held out)
    assert clip_zero_shot(toy.clip.nets[0].model, x, labels) >= 0.6
    assert (rec - x).abs().mean().item() < 0.15  # random decoder: ~0.3 (shipped: 0.09)


def test_missing_weights_error(tmp_path):
    from editrt.errors import WeightsError

    assert not TM.available(tmp_path)
    with pytest.raises(WeightsError, match="train_toy.py"):
        TM.load_toy_models(tmp_path)


def test_short_toy_evaluation_cli(tmp_path):
    from editrt.cli import main

    out = tmp_path / "eval"
    assert main(["evaluate", "--toy", "--limit", "3", "--steps", "2", "--batch-size", "3",
                 "--stats-per-class", "4", "--no-progress", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["method"]: r for r in summary["rows"]}
    assert set(rows) == {"COPY", "ENCODE", "RETRIEVE", "FlexIT"} and all(r["n"] == 3 for r in rows.values())
    assert rows["COPY"]["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert rows["RETRIEVE"]["accuracy"] >= 33.0  # the classifier recognises real target images
    for r in rows.values():
        assert {"accuracy", "lpips", "sfid", "csfid"} <= set(r)
    assert (out / "examples.png").is_file()
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12
    # resumed: nothing recomputed
    assert main(["evaluate", "--toy", "--limit", "3", "--steps", "2", "--batch-size", "3",
                 "--stats-per-class", "4", "--no-progress", "-o", str(out)]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 12


def test_demo_runs(tmp_path, capsys):
    from editrt.toy import demo

    assert demo.available()
    assert demo.run(tmp_path, steps=2) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["steps"] == 2 and report["classifier_before"][0][0] == "orange circle"
    for name in ("input.png", "flexit_output.png", "comparison.png", "global_output.png", "feu_output.png",
                 "deltaedit_output.png", "inverted_output.png"):
        assert (tmp_path / name).is_file()
    assert set(report["direction_methods"]) == {"inverted", "global", "feu", "deltaedit"}
    assert "classifier before" in capsys.readouterr().out


def test_demo_input_is_a_red_circle():
    from editrt.toy.demo import demo_image

    x = demo_image()
    sat = x.amax(0) - x.amin(0)
    assert int(x[:, sat > 0.5].mean(1).argmax()) == 0
    assert W.CLASSES[W.class_index("red circle")] == "red circle"
