"""Every bad input gets its documented exit code (or editrt error type) and a message naming the
problem; no output file, partial or not, is left behind; no input file changes.

One table of CLI cases (run in-process through ``editrt.cli.main``) and one of API cases. All of
them are refused before any network loads, so the whole table runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from editrt import errors
from editrt.cli import main
from editrt.config import DeltaEditConfig, FEUConfig, FlexITConfig, GlobalDirectionConfig
from editrt.demo import sample_image_path


def _png_with_big_text(path: Path) -> None:
    """A valid 40x40 PNG whose compressed text chunk inflates past Pillow's MAX_TEXT_CHUNK."""
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1024), zip=True)
    Image.new("RGB", (40, 40), (10, 20, 30)).save(path, pnginfo=info)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The read-only inputs every case may point at."""
    d = tmp_path_factory.mktemp("inputs")
    Image.open(sample_image_path()).convert("RGB").save(d / "photo.png")
    os.symlink(d / "photo.png", d / "photo_link.png")
    os.link(d / "photo.png", d / "photo_hard.png")
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image at all\n")
    data = (d / "photo.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (8, 8)).save(d / "small.png")
    arr = np.full((64, 64), 0.5, np.float32)
    arr[3, 5] = np.nan
    Image.fromarray(arr, mode="F").save(d / "nan.tif")
    _png_with_big_text(d / "bigtext.png")
    (d / "folder").mkdir()
    (d / "folder" / "keep.txt").write_text("x")
    (d / "afile.txt").write_text("a file")
    configs = {
        "lr_inf.json": '{"preset": "tiny", "lr": Infinity}',
        "lr_huge.json": '{"preset": "tiny", "lr": 1e30}',
        "steps_float.json": '{"preset": "tiny", "steps": 2.5}',
        "clip_str.json": '{"preset": "tiny", "clip_models": "tiny"}',
        "lpips_resnet.json": '{"preset": "tiny", "lpips_net": "resnet"}',
        "vqgan_nope.json": '{"preset": "tiny", "vqgan": "nope"}',
        "unknown_key.json": '{"learning_rate": 0.1}',
        "list.json": "[1, 2, 3]",
        "broken.json": "{not json",
        "bad_preset.json": '{"preset": "huge"}',
        "hflip_text.json": '{"preset": "tiny", "hflip": "yes"}',
        "steps_neg.json": '{"preset": "tiny", "steps": -3}',
        "augment_negative.json": '{"preset": "tiny", "n_augment": -1}',
        "broken.yaml": "steps: [1, 2\n",
        "preset_number.json": '{"preset": 3}',
        "crop.json": '{"preset": "tiny", "crop_scale": [0.9, 0.2]}',
        "crop_len.json": '{"preset": "tiny", "crop_scale": [0.9, 0.95, 1.0]}',
    }
    for name, text in configs.items():
        (d / name).write_text(text)
    (d / "grid.png.json").write_text("{}")  # also used as an --fs3 input below
    return d


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


IMG = "{w}/photo.png"
EDIT = ["edit", IMG, "--source", "a cat", "--target", "a dog", "-o", "{o}/out.png", "--random-weights"]


def _edit(*extra, image=IMG, out="{o}/out.png"):
    base = ["edit", image, "--source", "a cat", "--target", "a dog", "-o", out, "--random-weights"]
    return base + list(extra)


STYLE = ["style-edit", "--seed", "1", "--target", "smiling face", "--random-weights"]


def _style(*extra, out="{o}/grid.png"):
    return STYLE + ["-o", out] + list(extra)


REL = ["relevance", "--random-weights", "--no-progress"]
CORPUS = ["corpus", "build", "--random-weights", "--no-progress"]
EVAL = ["evaluate", "--toy", "--no-progress"]

# (id, argv, exit code, message fragment)
CLI_CASES = [
    # edit: the image
    ("edit-missing-image", _edit(image="{w}/nope.png"), 2, "does not exist"),
    ("edit-image-is-folder", _edit(image="{w}/folder"), 2, "is not a file"),
    ("edit-empty-image", _edit(image="{w}/empty.png"), 2, "empty (0 bytes)"),
    ("edit-text-as-image", _edit(image="{w}/text.png"), 2, "not an image"),
    ("edit-truncated-png", _edit(image="{w}/truncated.png"), 2, "unreadable or truncated"),
    ("edit-tiny-image", _edit(image="{w}/small.png"), 2, "smaller than 32 px"),
    ("edit-nan-tiff", _edit(image="{w}/nan.tif"), 2, "NaN or infinite"),
    ("edit-huge-png-text", _edit(image="{w}/bigtext.png"), 2, "text metadata"),
    # edit: outputs against inputs and each other
    ("edit-output-is-input", _edit(out=IMG), 2, "is the input file"),
    ("edit-output-symlink-to-input", _edit(out="{w}/photo_link.png"), 2, "is the input file"),
    ("edit-output-hardlink-to-input", _edit(out="{w}/photo_hard.png"), 2, "is the input file"),
    ("edit-report-is-input", _edit("--report", IMG), 2, "is the input file"),
    ("edit-report-hardlink-input", _edit("--report", "{w}/photo_hard.png"), 2, "is the input file"),
    ("edit-report-is-output", _edit("--report", "{o}/out.png"), 2, "also the output"),
    ("edit-report-is-config", _edit("--config", "{w}/lr_inf.json", "--report", "{w}/lr_inf.json"), 2,
     "is the input file"),
    ("edit-output-is-folder", _edit(out="{o}"), 2, "is a folder"),
    ("edit-output-bad-suffix", _edit(out="{o}/out.gifx"), 2, "unsupported extension"),
    ("edit-output-no-folder", _edit(out="{o}/missing/out.png"), 2, "does not exist"),
    ("edit-output-parent-is-file", _edit(out="{w}/afile.txt/out.png"), 2, "is not a folder"),
    ("edit-report-is-folder", _edit("--report", "{o}"), 2, "is a folder"),
    # edit: texts
    ("edit-source-equals-target", ["edit", IMG, "--source", "A dog", "--target", "a dog ", "-o", "{o}/out.png",
                                   "--random-weights"], 2, "nothing to edit"),
    ("edit-empty-source", ["edit", IMG, "--source", "  ", "--target", "a dog", "-o", "{o}/out.png"], 2, "is empty"),
    ("edit-empty-target", ["edit", IMG, "--source", "cat", "--target", "", "-o", "{o}/out.png"], 2, "is empty"),
    # edit: numbers
    ("edit-steps-negative", _edit("--steps", "-1"), 2, "must be >= 0"),
    ("edit-steps-text", _edit("--steps", "ten"), 2, "expected an integer"),
    ("edit-seed-negative", _edit("--seed", "-1"), 2, "must be >= 0"),
    ("edit-seed-too-large", _edit("--seed", str(2**32)), 2, "seeds range"),
    ("edit-backend-unknown", _edit("--backend", "tflite"), 2, "invalid choice"),
    # edit: config files and presets
    ("edit-config-missing", _edit("--config", "{w}/none.json"), 2, "cannot read config"),
    ("edit-config-broken-json", _edit("--config", "{w}/broken.json"), 2, "not valid"),
    ("edit-config-broken-yaml", _edit("--config", "{w}/broken.yaml"), 2, "not valid"),
    ("edit-config-not-mapping", _edit("--config", "{w}/list.json"), 2, "mapping"),
    ("edit-config-lr-inf", _edit("--config", "{w}/lr_inf.json"), 2, "FlexITConfig.lr: expected a finite number"),
    ("edit-config-lr-huge", _edit("--config", "{w}/lr_huge.json"), 2, "lr=1e+30"),
    ("edit-config-steps-float", _edit("--config", "{w}/steps_float.json"), 2, "steps: expected an integer"),
    ("edit-config-clip-str", _edit("--config", "{w}/clip_str.json"), 2, "clip_models: expected a list"),
    ("edit-config-lpips-resnet", _edit("--config", "{w}/lpips_resnet.json"), 2, "lpips_net: unknown network"),
    ("edit-config-vqgan-nope", _edit("--config", "{w}/vqgan_nope.json"), 2, "vqgan: unknown network"),
    ("edit-config-unknown-key", _edit("--config", "{w}/unknown_key.json"), 2, "unknown option"),
    ("edit-config-bad-preset", _edit("--config", "{w}/bad_preset.json"), 2, "unknown preset"),
    ("edit-config-preset-number", _edit("--config", "{w}/preset_number.json"), 2, "preset must be a name"),
    ("edit-config-hflip-text", _edit("--config", "{w}/hflip_text.json"), 2, "hflip: expected true/false"),
    ("edit-config-steps-negative", _edit("--config", "{w}/steps_neg.json"), 2, "steps=-3"),
    ("edit-config-augment-negative", _edit("--config", "{w}/augment_negative.json"), 2, "n_augment=-1"),
    ("edit-config-crop-order", _edit("--config", "{w}/crop.json"), 2, "crop_scale"),
    ("edit-config-crop-length", _edit("--config", "{w}/crop_len.json"), 2, "expected 2 values"),
    ("edit-preset-unknown", _edit("--preset", "huge"), 2, "unknown preset"),
    # edit: devices
    ("edit-device-gpu0", _edit("--device", "gpu0"), 6, "backend unavailable"),
    ("edit-device-bogus", _edit("--device", "tpu-x"), 2, "is not a device"),
    ("edit-device-cuda", _edit("--device", "cuda"), 6, "backend unavailable"),
    ("edit-device-cuda3", _edit("--device", "cuda:3"), 6, "backend unavailable"),
    # style-edit
    ("style-image-missing", STYLE[:1] + ["--image", "{w}/nope.png", "--target", "x", "-o", "{o}/g.png"], 2,
     "does not exist"),
    ("style-image-and-seed", STYLE + ["--image", IMG, "-o", "{o}/g.png"], 2, "not allowed with"),
    ("style-seed-negative", ["style-edit", "--seed", "-5", "--target", "x", "-o", "{o}/g.png"], 2, "must be >= 0"),
    ("style-seed-too-large", ["style-edit", "--seed", str(2**32 + 7), "--target", "x", "-o", "{o}/g.png"], 2,
     "seeds range"),
    ("style-k-zero", _style("--method", "feu", "--k", "0"), 2, "must be >= 1"),
    ("style-k-with-global", _style("--k", "5"), 2, "--k applies to --method feu"),
    ("style-beta-with-deltaedit", _style("--method", "deltaedit", "--beta", "0.1"), 2, "--beta applies"),
    ("style-threshold-with-global", _style("--threshold", "0.1"), 2, "--threshold applies"),
    ("style-neutral-with-feu", _style("--method", "feu", "--neutral", "face"), 2, "drop --neutral"),
    ("style-corpus-missing", _style("--method", "feu", "--corpus", "{w}/none.safetensors"), 2, "does not exist"),
    ("style-corpus-with-global", _style("--corpus", "{w}/afile.txt"), 2, "--corpus applies"),
    ("style-alpha-text", _style("--alpha", "big"), 2, "comma-separated numbers"),
    ("style-alpha-huge", _style("--alpha", "1000"), 2, "out of range"),
    ("style-alpha-inf", _style("--alpha", "inf"), 2, "out of range"),
    ("style-beta-text", _style("--beta", "high"), 2, "beta must be a number"),
    ("style-beta-too-large", _style("--beta", "5"), 2, "beta 5.0 is out of range"),
    ("style-output-is-input", STYLE[:1] + ["--image", IMG, "--target", "x", "-o", IMG], 2, "is the input file"),
    ("style-output-folder", _style(out="{o}"), 2, "is a folder"),
    ("style-output-bad-suffix", _style(out="{o}/grid.txt"), 2, "unsupported extension"),
    ("style-sidecar-is-input", _style("--fs3", "{w}/grid.png.json", out="{w}/grid.png"), 2, "is the input file"),
    ("style-fs3-missing", _style("--fs3", "{w}/none.npy"), 2, "--fs3"),
    ("style-stats-missing", _style("--stats", "{w}/none.safetensors"), 2, "--stats"),
    ("style-empty-target", ["style-edit", "--seed", "1", "--target", " ", "-o", "{o}/g.png"], 2, "is empty"),
    ("style-neutral-equals-target", _style("--neutral", "Smiling face"), 2, "nothing to edit"),
    ("style-device-cuda", _style("--device", "cuda"), 6, "backend unavailable"),
    ("style-device-bogus", _style("--device", "tpu:x"), 2, "is not a device"),
    # relevance
    ("relevance-images-zero", REL + ["--images", "0", "-o", "{o}/fs3.safetensors"], 2, "must be >= 1"),
    ("relevance-stats-one", REL + ["--stats-samples", "1", "-o", "{o}/fs3.safetensors"], 2, "must be >= 2"),
    ("relevance-batch-zero", REL + ["--batch-size", "0", "-o", "{o}/fs3.safetensors"], 2, "must be >= 1"),
    ("relevance-checkpoint-zero", REL + ["--checkpoint-every", "0", "-o", "{o}/fs3.safetensors"], 2,
     "must be >= 1"),
    ("relevance-output-suffix", REL + ["-o", "{o}/fs3.txt"], 2, "use a .safetensors or .npy"),
    ("relevance-output-no-folder", REL + ["-o", "{o}/missing/fs3.npy"], 2, "does not exist"),
    ("relevance-output-folder", REL + ["-o", "{o}"], 2, "is a folder"),
    ("relevance-device-cuda3", REL + ["--device", "cuda:3", "-o", "{o}/fs3.npy"], 6, "backend unavailable"),
    # corpus build
    ("corpus-output-suffix", CORPUS + ["--samples", "2", "-o", "{o}/index.npy"], 2, "use a .safetensors"),
    ("corpus-output-folder", CORPUS + ["--samples", "2", "-o", "{o}"], 2, "is a folder"),
    ("corpus-folder-missing", CORPUS + ["--folder", "{w}/nope", "-o", "{o}/i.safetensors"], 2, "is not a folder"),
    ("corpus-samples-zero", CORPUS + ["--samples", "0", "-o", "{o}/i.safetensors"], 2, "must be >= 1"),
    ("corpus-seed-negative", CORPUS + ["--samples", "2", "--seed", "-1", "-o", "{o}/i.safetensors"], 2,
     "must be >= 0"),
    ("corpus-no-source", CORPUS + ["-o", "{o}/i.safetensors"], 2, "one of the arguments"),
    ("corpus-device-cuda", CORPUS + ["--samples", "2", "--device", "cuda", "-o", "{o}/i.safetensors"], 6,
     "backend unavailable"),
    # evaluate
    ("evaluate-batch-zero", EVAL + ["--batch-size", "0", "-o", "{o}/run"], 2, "must be >= 1"),
    ("evaluate-grid-rows-negative", EVAL + ["--grid-rows", "-1", "-o", "{o}/run"], 2, "must be >= 1"),
    ("evaluate-limit-zero", EVAL + ["--limit", "0", "-o", "{o}/run"], 2, "must be >= 1"),
    ("evaluate-output-is-file", EVAL + ["-o", "{w}/afile.txt"], 2, "is a file"),
    ("evaluate-unknown-baseline", EVAL + ["--baselines", "COPY,MAGIC", "-o", "{o}/run"], 2, "unknown baseline"),
    ("evaluate-seed-negative", EVAL + ["--seed", "-2", "-o", "{o}/run"], 2, "must be >= 0"),
    ("evaluate-device-cuda", EVAL + ["--device", "cuda", "-o", "{o}/run"], 6, "backend unavailable"),
    ("evaluate-imagenet-missing", ["evaluate", "--imagenet-root", "{w}/nope", "--random-weights", "-o", "{o}/run"],
     2, "is not a folder"),
    ("evaluate-toy-random", EVAL + ["--random-weights", "-o", "{o}/run"], 2, "applies to ImageNet"),
    # export
    ("export-out-is-file", ["export", "--models", "stylegan2/tiny/mapping", "--random-weights", "--out",
                            "{w}/afile.txt"], 2, "is a file"),
    ("export-unknown-model", ["export", "--models", "nope/model", "--random-weights", "--out", "{o}/store"], 2,
     "no model spec matches"),
    ("export-precision-fp8", ["export", "--models", "stylegan2/tiny/mapping", "--precision", "fp8", "--out",
                              "{o}/store"], 2, "invalid choice"),
    # top level
    ("no-command", [], 2, "required"),
    ("unknown-command", ["paint"], 2, "invalid choice"),
]


@pytest.mark.parametrize("argv,code,message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(world, tmp_path, capsys, argv, code, message):
    out = tmp_path / "out"
    out.mkdir()
    before = _digest(world)
    args = [a.format(w=world, o=out) for a in argv]
    try:
        got = main(args)
    except SystemExit as exc:  # argparse usage errors
        got = exc.code
    err = capsys.readouterr().err
    assert got == code, err
    assert message in err.strip().splitlines()[-1], err  # a one-line message (after argparse's usage)
    assert "Traceback" not in err
    assert list(out.iterdir()) == [] or all(p.name == "store" for p in out.iterdir())  # nothing written
    assert not (out / "store").exists() or not any((out / "store").rglob("*.onnx"))
    assert _digest(world) == before  # inputs untouched


def _nan_tiff(tmp: Path) -> Path:
    arr = np.ones((40, 40), np.float32)
    arr[0, 0] = np.inf
    Image.fromarray(arr, mode="F").save(tmp / "inf.tif")
    return tmp / "inf.tif"


# (id, callable, error type, message fragment)
API_CASES = [
    ("flexit-lr-inf", lambda t: FlexITConfig(lr=float("inf")), errors.InputError, "FlexITConfig.lr"),
    ("flexit-lr-nan", lambda t: FlexITConfig(lr=float("nan")), errors.InputError, "finite"),
    ("flexit-lr-huge", lambda t: FlexITConfig(lr=1e30), errors.InputError, "lr=1e+30"),
    ("flexit-steps-float", lambda t: FlexITConfig(steps=2.5), errors.InputError, "FlexITConfig.steps"),
    ("flexit-steps-bool", lambda t: FlexITConfig(steps=True), errors.InputError, "FlexITConfig.steps"),
    ("flexit-clip-str", lambda t: FlexITConfig(clip_models="tiny"), errors.InputError, "clip_models"),
    ("flexit-clip-blank", lambda t: FlexITConfig(clip_models=("ViT B 32",)), errors.InputError, "not CLIP model"),
    ("flexit-lpips-resnet", lambda t: FlexITConfig(lpips_net="resnet"), errors.InputError, "lpips_net"),
    ("flexit-vqgan-nope", lambda t: FlexITConfig(vqgan="nope"), errors.InputError, "FlexITConfig.vqgan"),
    ("flexit-coef-inf", lambda t: FlexITConfig(image_coef=float("-inf")), errors.InputError, "image_coef"),
    ("flexit-snapshot-negative", lambda t: FlexITConfig(snapshot_steps=(-1,)), errors.InputError, "snapshot_steps"),
    ("flexit-autocast", lambda t: FlexITConfig(autocast="fp8"), errors.InputError, "autocast"),
    ("flexit-replace-text", lambda t: FlexITConfig().replace(n_augment="8"), errors.InputError, "n_augment"),
    ("global-alpha-inf", lambda t: GlobalDirectionConfig(alpha=float("inf")), errors.InputError, "alpha"),
    ("global-beta-large", lambda t: GlobalDirectionConfig(beta=2.0), errors.InputError, "beta"),
    ("global-samples-float", lambda t: GlobalDirectionConfig(stats_samples=1.5), errors.InputError, "stats_samples"),
    ("global-neutral-blank", lambda t: GlobalDirectionConfig(neutral=" "), errors.InputError, "neutral"),
    ("global-range-length", lambda t: GlobalDirectionConfig(auto_beta_range=(0.1, 0.2)), errors.InputError,
     "auto_beta_range"),
    ("feu-k-zero", lambda t: FEUConfig(k=0), errors.InputError, "k=0"),
    ("feu-svm-unknown", lambda t: FEUConfig(svm="rbf"), errors.InputError, "svm"),
    ("deltaedit-threshold-nan", lambda t: DeltaEditConfig(threshold=float("nan")), errors.InputError, "threshold"),
    ("deltaedit-strength-huge", lambda t: DeltaEditConfig(strength=1e9), errors.InputError, "strength"),
    ("image-float-array", lambda t: _as_tensor(np.zeros((64, 64, 3), np.float32)), errors.InputError,
     "uint8 HxWx3"),
    ("image-nan-tensor", lambda t: _as_tensor(torch.full((3, 64, 64), float("nan"))), errors.InputError, "NaN"),
    ("image-tensor-range", lambda t: _as_tensor(torch.full((3, 64, 64), 2.0)), errors.InputError, "[0, 1]"),
    ("image-tensor-small", lambda t: _as_tensor(torch.zeros(3, 8, 8)), errors.InputError, "smaller than"),
    ("image-list", lambda t: _as_tensor([[0, 1]]), errors.InputError, "unsupported type list"),
    ("image-inf-tiff", lambda t: _load(_nan_tiff(t)), errors.InputError, "NaN or infinite"),
    ("image-save-nan", lambda t: _save(torch.full((3, 40, 40), float("nan")), t / "x.png"), errors.InputError,
     "NaN"),
    ("image-degenerate-output", lambda t: _degenerate(torch.full((3, 40, 40), 0.5)), errors.NumericalError,
     "uniform image"),
    ("output-check-hardlink", lambda t: _hardlinked_output(t), errors.InputError, "is the input file"),
]


def _as_tensor(x):
    from editrt.imageio import as_image_tensor

    return as_image_tensor(x)


def _load(p):
    from editrt.imageio import load_image

    return load_image(p)


def _save(x, p):
    from editrt.imageio import save_image

    return save_image(x, p)


def _degenerate(x):
    from editrt.imageio import check_not_degenerate

    return check_not_degenerate(x)


def _hardlinked_output(t: Path):
    from editrt.imageio import check_output_path

    src = t / "in.png"
    Image.new("RGB", (40, 40)).save(src)
    os.link(src, t / "alias.png")
    return check_output_path(t / "alias.png", inputs=(src,))


@pytest.mark.parametrize("call,error,message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(tmp_path, call, error, message):
    before = _digest(tmp_path)
    with pytest.raises(error) as info:
        call(tmp_path)
    assert message in str(info.value)
    assert not (tmp_path / "x.png").exists()
    after = _digest(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before


def test_table_size():
    assert len(CLI_CASES) + len(API_CASES) >= 80
    assert len({c[0] for c in CLI_CASES + API_CASES}) == len(CLI_CASES) + len(API_CASES)


def test_config_name_lists_follow_the_models():
    from editrt import config
    from editrt.models.lpips import TOY, _SLICES
    from editrt.models.vqgan import VQGAN_CONFIGS

    assert set(config.VQGAN_NAMES) == set(VQGAN_CONFIGS)
    assert set(config.LPIPS_NETS) == set(_SLICES) | {TOY}
    for name, cfg in FlexITConfig.presets().items():  # every preset passes its own checks
        assert cfg == FlexITConfig.from_dict(cfg.to_dict()), name


def test_random_weights_config_without_preset_uses_tiny_networks(world, tmp_path):
    """--random-weights --config FILE (no preset key) builds the tiny networks, and says so."""
    import argparse

    from editrt.cli import _flexit_config, describe_networks

    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"steps": 3}))
    cfg = _flexit_config(argparse.Namespace(preset=None, config=cfg_file, random_weights=True))
    assert cfg.clip_models == ("tiny",) and cfg.vqgan == "tiny" and cfg.steps == 3
    assert "CLIP tiny; VQGAN tiny" in describe_networks(cfg, True)
    paper = _flexit_config(argparse.Namespace(preset=None, config=cfg_file, random_weights=False))
    assert paper.clip_models == FlexITConfig().clip_models and paper.steps == 3


def test_every_help_option_has_a_description():
    import argparse

    from editrt.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif action.option_strings or action.dest not in ("help",):
                yield path, action

    missing = [f"{path}: {a.option_strings or a.dest}" for path, a in walk(build_parser(), "editrt")
               if not a.help and a.dest != "help"]
    assert missing == []


def test_broken_pipe_is_not_an_error(monkeypatch, tmp_path):
    """`editrt ... --json | head`: the reader leaving is not a traceback (and exits 0)."""
    import sys

    class ClosedPipe:
        def __init__(self):
            self._file = open(tmp_path / "stdout", "w")

        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return self._file.fileno()

    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    assert main(["doctor", "--json"]) == 0
    pipe._file.close()


def test_text_chunk_message_is_not_truncation(world):
    from editrt.imageio import load_image

    with pytest.raises(errors.InputError, match="text metadata") as info:
        load_image(world / "bigtext.png")
    assert "truncated" not in str(info.value)
    assert zlib  # (the chunk is zlib-compressed text: Pillow refuses to inflate it)


def test_animated_input_uses_the_first_frame_and_says_so(tmp_path):
    import logging

    from editrt.imageio import load_image

    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=40)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("editrt.imageio")
    logger.addHandler(handler)
    try:
        img = load_image(p)
    finally:
        logger.removeHandler(handler)
    assert img.getpixel((5, 5))[0] > 200  # the first (red) frame
    text = " ".join(r.getMessage() for r in records)
    assert "3 frames" in text and "first one" in text
