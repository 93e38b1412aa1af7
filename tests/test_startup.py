"""Commands that need no network answer before torch, open_clip or onnx are imported: every
``--help``, ``editrt weights`` and a bad input path (the heavy imports cost seconds and ~1 GB)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "open_clip", "onnx", "onnxruntime", "taming", "lpips", "ray", "tritonclient")

PROBE = """
import contextlib, io, json, sys
from editrt.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        rc = main(sys.argv[1:])
    except SystemExit as exc:
        rc = exc.code
print(json.dumps({"rc": rc, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def run(argv: list[str], cwd) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def subcommands() -> list[str]:
    from editrt.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(action.choices)


@pytest.mark.parametrize("argv", [["--help"], ["weights"], ["weights", "--json"]], ids=" ".join)
def test_light_commands_import_nothing_heavy(argv, tmp_path):
    assert run(argv, tmp_path) == {"rc": 0, "heavy": []}


def test_every_subcommand_help_imports_nothing_heavy(tmp_path):
    names = subcommands()
    assert {"edit", "style-edit", "weights", "evaluate", "export", "relevance", "demo"} <= set(names)
    for name in names:
        assert run([name, "--help"], tmp_path) == {"rc": 0, "heavy": []}, name


@pytest.mark.parametrize("argv", [
    ["edit", "missing.png", "--source", "a cat", "--target", "a dog", "-o", "out.png"],
    ["style-edit", "--image", "missing.png", "--neutral", "a face", "--target", "a smiling face", "-o", "out.png"],
], ids=lambda a: a[0])
def test_a_missing_input_is_refused_before_the_heavy_imports(argv, tmp_path):
    result = run(argv, tmp_path)
    assert result["rc"] == 2 and result["heavy"] == []
    assert not (tmp_path / "out.png").exists()


def test_the_probe_sees_a_heavy_import(tmp_path):
    """``doctor`` reports library versions, so it imports torch: the probe must notice."""
    assert "torch" in run(["doctor"], tmp_path)["heavy"]
