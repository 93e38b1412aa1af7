import json
import subprocess
import sys

import pytest
from PIL import Image

from editrt.cli import main
from editrt.demo import sample_image_path


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "in.png"
    Image.open(sample_image_path()).save(p)
    return p


def test_edit_random_weights_end_to_end(tmp_path, image, capsys):
    before = image.read_bytes()
    out, report = tmp_path / "out.png", tmp_path / "r.json"
    code = main(["edit", str(image), "--source", "red circle", "--target", "blue circle", "-o", str(out),
                 "--random-weights", "--steps", "2", "--report", str(report), "--no-progress"])
    assert code == 0
    assert Image.open(out).size == (64, 64)
    data = json.loads(report.read_text())
    assert data["steps"] == 2 and data["random_weights"] and data["config"]["clip_models"] == ["tiny"]
    printed = capsys.readouterr().out
    assert "random weights" in printed and "EDITRT_HOME" in printed
    assert image.read_bytes() == before  # input untouched


@pytest.mark.parametrize("args,code,msg", [
    (["--source", "a", "--target", "b"], 2, "does not exist"),  # missing image
    (["--source", "", "--target", "b"], 2, "empty"),
    (["--source", "a", "--target", "dog " * 90], 2, "too long"),
])
def test_edit_errors_have_exit_codes(tmp_path, image, capsys, args, code, msg):
    img = str(tmp_path / "missing.png") if msg == "does not exist" else str(image)
    out = tmp_path / "o.png"
    got = main(["edit", img, *args, "-o", str(out), "--random-weights", "--steps", "1", "--no-progress"])
    assert got == code
    assert msg in capsys.readouterr().err
    assert not out.exists()  # nothing half-written


def test_missing_weights_exit_code_3(tmp_path, image, capsys):
    # the shipped tiny CLIP and VQGAN are found; the VGG trunk of LPIPS is not
    got = main(["edit", str(image), "--source", "a", "--target", "b", "-o", str(tmp_path / "o.png"),
                "--preset", "tiny", "--weights-dir", str(tmp_path)])
    assert got == 3
    err = capsys.readouterr().err
    assert "missing checkpoint for lpips/vgg" in err and "clip/tiny" not in err


def test_toy_models_by_name_without_random_weights(tmp_path, image, capsys):
    """`--preset toy` edits with the trained models shipped in the package, offline."""
    out, report = tmp_path / "toy.png", tmp_path / "toy.json"
    assert main(["edit", str(image), "--source", "red circle", "--target", "blue circle", "-o", str(out),
                 "--preset", "toy", "--steps", "1", "--report", str(report), "--no-progress"]) == 0
    data = json.loads(report.read_text())
    assert not data["random_weights"] and data["config"]["lpips_net"] == "toy"
    assert "random weights were used" not in capsys.readouterr().out


def test_toy_models_by_name_from_the_api():
    import torch

    from editrt.config import FlexITConfig
    from editrt.methods.flexit import FlexIT
    from editrt.toy import models as toy

    ed = FlexIT(FlexITConfig.preset("toy"))
    ref = toy.load_toy_models()
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(ed.clip.embed_image(x)[0], ref.clip.embed_image(x)[0])
    assert torch.equal(ed.vqgan.encode(x), ref.vqgan.encode(x))
    assert torch.equal(ed.lpips(x, x * 0.5), ref.lpips(x, x * 0.5))


def test_output_checks_before_work(tmp_path, image, capsys):
    assert main(["edit", str(image), "--source", "a", "--target", "b", "-o", str(image), "--random-weights"]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert main(["edit", str(image), "--source", "a", "--target", "b", "-o", str(tmp_path / "x.txt"),
                 "--random-weights"]) == 2


def test_weights_and_doctor(capsys):
    assert main(["weights", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {r["key"] for r in rows}
    assert {"clip/ViT-B-32", "vqgan/vqgan_imagenet_f16_1024", "lpips/vgg", "eval/deit", "eval/inception",
            "styleclip/ffhq-1024/fs3", "styleclip/corpus", "e4e/ffhq", "deltaedit/ffhq/mapper"} <= keys
    assert not any(r["found"] for r in rows if r["key"] == "clip/ViT-B-32")
    tiny = next(r for r in rows if r["key"] == "clip/tiny")
    assert tiny["found"] and "shipped with editrt" in tiny["origin"]
    assert all(r["origin"] and "used_by" in r for r in rows)
    assert main(["weights"]) == 0
    text = capsys.readouterr().out
    for key in keys:  # the text listing shows every row of the JSON one, with its origin
        assert key in text
    assert "from: download: https://dl.fbaipublicfiles.com/deit/" in text and "corpus build" in text
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "kernels" in info and "torch" in info["libraries"]


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "editrt.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "edit" in out.stdout and "demo" in out.stdout


def test_demo_random_weights(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--steps", "2", "--random-weights"]) == 0
    assert (tmp_path / "flexit_output.png").exists() and (tmp_path / "report.json").exists()
    assert "random weights" in capsys.readouterr().out
