"""Direction edits give the same images through backend="onnxruntime" as through torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from editrt.config import DeltaEditConfig, GlobalDirectionConfig
from editrt.engines.stages import EngineCallable, EngineClip, EngineGenerator
from editrt.methods.stylespace.deltaedit import DeltaEdit
from editrt.methods.stylespace.global_direction import GlobalDirection
from editrt.models.clip import load_clip
from editrt.models.stylegan2 import StyleGAN2


@pytest.fixture(scope="module")
def fs3():
    G = StyleGAN2.load("tiny", random_init=True, seed=0)
    clip = load_clip("tiny", random_init=True, seed=0)
    return F.normalize(torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(3)),
                       dim=1)


@pytest.fixture()
def engines_dir(tmp_path_factory, monkeypatch):
    # the editors load their networks by name with random_init and seed 0, so the store shared with
    # test_engines_export.py (same weights identity) already holds their graphs when run together
    path = tmp_path_factory.getbasetemp() / "engines_shared"
    monkeypatch.setenv("EDITRT_ENGINES", str(path))
    return path


def test_deltaedit_onnxruntime_matches_torch(fs3, engines_dir):
    cfg = DeltaEditConfig.preset("tiny")
    ref_editor = DeltaEdit(config=cfg, random_init=True, fs3=fs3)
    eng_editor = DeltaEdit(config=cfg, random_init=True, fs3=fs3, backend="onnxruntime", stats=ref_editor.stats)
    assert isinstance(eng_editor.generator, EngineGenerator) and isinstance(eng_editor.clip, EngineClip)
    assert isinstance(eng_editor.mapper, EngineCallable)
    code = ref_editor.codes_from_seeds([1, 2])
    ref = ref_editor.edit(code, "smiling face", strength=[1.0])
    got = eng_editor.edit(code, "smiling face", strength=[1.0])
    used = set(eng_editor.stages.engines._engines)
    assert {"clip/tiny/text", "clip/tiny/image", "stylegan2/tiny/synthesis", "deltaedit/tiny/mapper"} <= used
    assert (ref.images - got.images).abs().max() < 1e-3
    assert (ref.source - got.source).abs().max() < 1e-3


def test_global_direction_onnxruntime_matches_torch(fs3, engines_dir):
    cfg = GlobalDirectionConfig.preset("tiny")
    ref_editor = GlobalDirection(config=cfg, fs3=fs3, random_init=True)
    eng_editor = GlobalDirection(config=cfg, fs3=fs3, random_init=True, backend="onnxruntime",
                                 stats=ref_editor.stats)
    code = ref_editor.codes_from_seeds([3])
    ref = ref_editor.edit(code, "a smiling face", alpha=[2.0], beta=0.05)
    got = eng_editor.edit(code, "a smiling face", alpha=[2.0], beta=0.05)
    assert (ref.images - got.images).abs().max() < 1e-3
