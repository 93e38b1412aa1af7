"""`editrt style-edit`, `editrt relevance` and `editrt corpus build` end to end with
--random-weights (tiny generator + tiny CLIP, offline), and their bad-input exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from editrt.cli import main
from editrt.methods import stylespace as sc


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.mark.parametrize("method", ["global", "deltaedit"])
def test_style_edit_seed_end_to_end(method, tmp_path, capsys):
    out = tmp_path / f"{method}.png"
    assert run("style-edit", "--method", method, "--seed", 3, "--target", "smiling face", "--alpha", "1,2",
               "--random-weights", "-o", out) == 0
    assert Image.open(out).size == (3 * 32, 32)  # source + 2 strengths
    meta = json.loads((tmp_path / f"{method}.png.json").read_text())
    assert meta["method"] == method and meta["strengths"] == [1.0, 2.0] and meta["channels_changed"] > 0
    captured = capsys.readouterr()
    assert "channels changed" in captured.out and "random weights" in captured.err


def test_corpus_build_then_feu_edit_of_a_photo(tmp_path):
    corpus = tmp_path / "corpus.safetensors"
    assert run("corpus", "build", "--samples", 24, "--random-weights", "--no-progress", "-o", corpus) == 0
    index = sc.CorpusIndex.load(corpus, clip_model="tiny")
    assert len(index) == 24 and index.s_codes.shape[0] == 24
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "feu.png"
    assert run("style-edit", "--method", "feu", "--image", photo, "--target", "smiling face", "--k", 5,
               "--corpus", corpus, "--random-weights", "-o", out) == 0
    assert Image.open(out).size == (2 * 32, 32)
    # an index of another CLIP model is refused, and nothing is written
    other = sc.CorpusIndex(index.embeddings, "ViT-B-32", index.items, index.provenance)
    other.save(tmp_path / "other.safetensors")
    bad_out = tmp_path / "bad.png"
    assert run("style-edit", "--method", "feu", "--seed", 1, "--target", "smiling face", "--k", 5,
               "--corpus", tmp_path / "other.safetensors", "--random-weights", "-o", bad_out) == 2
    assert not bad_out.exists()


def test_relevance_command_and_fs3_option(tmp_path):
    out = tmp_path / "fs3.npy"
    assert run("relevance", "--random-weights", "--no-progress", "-o", out) == 0
    fs3 = np.load(out)
    assert fs3.shape == (336, 64) and np.allclose(np.linalg.norm(fs3, axis=1), 1, atol=1e-5)
    assert not list(tmp_path.glob("*.partial.safetensors"))
    edit = tmp_path / "g.png"
    assert run("style-edit", "--seed", 0, "--target", "smiling face", "--fs3", out, "--random-weights",
               "-o", edit) == 0
    np.save(tmp_path / "ffhq.npy", np.zeros((6048, 512), np.float32))
    assert run("style-edit", "--seed", 0, "--target", "smiling face", "--fs3", tmp_path / "ffhq.npy",
               "--random-weights", "-o", tmp_path / "x.png") == 3
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("argv,code", [
    (["--target", "face", "--neutral", "face"], 2),          # zero direction
    (["--target", "smiling face", "--beta", "1.5"], 2),      # beta out of range
    (["--target", "smiling face", "--alpha", "nan"], 2),     # alpha out of range
    (["--target", "smiling face", "--alpha", "500"], 2),
    (["--method", "feu", "--target", "smiling face"], 2),    # feu without a corpus
    (["--method", "deltaedit", "--target", "smiling face", "--beta", "0.1"], 2),
])
def test_bad_inputs_exit_codes_and_no_output(argv, code, tmp_path):
    out = tmp_path / "out.png"
    args = ["style-edit", "--seed", 0, *argv, "-o", out]
    if "feu" not in argv:
        args.append("--random-weights")
    assert run(*args) == code
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_checkpoints_and_bad_paths(tmp_path):
    # real weights requested, none in the (isolated) store -> weights error
    assert run("style-edit", "--seed", 0, "--target", "smiling face", "--generator", "tiny", "--clip", "tiny",
               "-o", tmp_path / "o.png") == 3
    assert run("style-edit", "--seed", 0, "--target", "smiling face", "--random-weights",
               "-o", tmp_path / "o.xyz") == 2
    assert run("corpus", "build", "--folder", tmp_path / "nothing", "--random-weights", "-o",
               tmp_path / "c.safetensors") == 2
    assert not list(tmp_path.iterdir())
