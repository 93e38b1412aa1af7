"""``editrt export --for METHOD`` builds (here: lists) exactly the specs the method declares."""

from __future__ import annotations

import json

import pytest

from editrt.cli import main
from editrt.cli_export import method_specs
from editrt.methods.flexit import FlexIT
from editrt.methods.stylespace import FEU, DeltaEdit, GlobalDirection


def test_method_specs_follow_the_configs():
    assert method_specs("flexit", preset="tiny") == ["vqgan/tiny/encoder", "vqgan/tiny/decoder",
                                                     "clip/tiny/text", "clip/tiny/image"]
    assert len(method_specs("flexit")) == 2 + 2 * 3  # the paper: VQGAN f16 + three CLIP nets
    assert method_specs("global") == ["clip/ViT-B-32/text", "stylegan2/ffhq-1024/synthesis"]
    assert method_specs("feu", photos=True)[-1] == "e4e/ffhq/encoder"
    assert set(method_specs("deltaedit", preset="tiny")) == {"clip/tiny/text", "clip/tiny/image",
                                                             "stylegan2/tiny/synthesis", "deltaedit/tiny/mapper"}
    for cls in (FlexIT, GlobalDirection, FEU, DeltaEdit):  # every declared spec is registered
        from editrt.models.registry import get_spec

        for name in cls.specs():
            assert get_spec(name).name == name


def test_export_for_lists_the_method_specs(tmp_path, capsys):
    rc = main(["export", "--for", "deltaedit", "--preset", "tiny", "--random-weights", "--list", "--json",
               "--precision", "fp16", "--out", str(tmp_path)])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["spec"] for r in rows} == set(method_specs("deltaedit", preset="tiny"))
    assert all(r["precision"] == "fp16" and r["status"] == "missing" for r in rows)


@pytest.mark.parametrize("argv, message", [
    (["export", "--out", "X"], "--models SPEC"),
    (["export", "--for", "global", "--models", "clip/tiny", "--out", "X"], "not both"),
    (["export", "--models", "clip/tiny", "--preset", "tiny", "--out", "X"], "apply to --for"),
    (["export", "--for", "flexit", "--photos", "--out", "X"], "--photos"),
])
def test_export_argument_errors(argv, message, capsys):
    assert main(argv) != 0
    assert message in capsys.readouterr().err
