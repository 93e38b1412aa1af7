"""backend="auto", the direction editors' default: onnxruntime on CPU for fp32 synthesis from
AUTO_ONNXRUNTIME_FROM_PX up, torch otherwise; a stage whose engine fails runs in torch; and the
default engine store leaves nothing in a working directory that has no engines/ folder."""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

from editrt.config import GlobalDirectionConfig
from editrt.engines import stages
from editrt.engines.stages import AUTO_ONNXRUNTIME_FROM_PX, EngineSet, auto_backend
from editrt.engines.store import default_root
from editrt.errors import EngineError, InputError
from editrt.methods.flexit import FlexIT
from editrt.methods.stylespace.global_direction import GlobalDirection
from editrt.models.stylegan2 import StyleGAN2, SynthesisExport

HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None


def test_what_auto_picks(monkeypatch):
    big, small = AUTO_ONNXRUNTIME_FROM_PX, AUTO_ONNXRUNTIME_FROM_PX // 2
    assert auto_backend("cpu", big) == ("onnxruntime" if HAVE_ORT else "torch")
    assert auto_backend("cpu", 1024) == auto_backend("cpu", big)
    assert auto_backend("cpu", small) == "torch"
    assert auto_backend("cpu", None) == "torch"  # no synthesis (FlexIT)
    assert auto_backend("cpu", 1024, "fp16") == "torch" and auto_backend("cpu", 1024, "bf16") == "torch"
    assert auto_backend("cuda", 1024) == "torch"  # TensorRT is the caller's choice
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else object())
    assert auto_backend("cpu", 1024) == "torch"


def test_engine_set_of_auto():
    s = EngineSet.of("auto", synthesis_px=AUTO_ONNXRUNTIME_FROM_PX // 2)
    assert s.backend == "torch" and not s.fallback
    if HAVE_ORT:
        s = EngineSet.of("auto", synthesis_px=1024)
        assert s.backend == "onnxruntime" and s.fallback
    assert not EngineSet.of("onnxruntime").fallback  # an explicit backend never falls back
    with pytest.raises(InputError, match="depends on the pipeline's synthesis size"):
        EngineSet("auto")  # auto needs the synthesis size: editors and EngineSet.of resolve it


def test_a_failing_engine_runs_in_torch_under_auto_only(monkeypatch, caplog):
    G = StyleGAN2.load("tiny", random_init=True, seed=0)
    stage = SynthesisExport(G)
    code = G.styles_from_w(G.mapping(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(0))))
    with torch.no_grad():
        want = stage(*code.styles)
    calls = []

    def broken(self, wrapper):
        calls.append(wrapper)
        raise EngineError("disk full")
    monkeypatch.setattr(EngineSet, "engine", broken)
    auto = EngineSet("onnxruntime", fallback=True)
    with caplog.at_level(logging.WARNING, logger=stages.__name__):
        got = [auto.run(stage, *code.styles) for _ in range(2)]
    assert all(torch.equal(g, want) for g in got)
    assert len(calls) == 1 and "runs in torch" in caplog.text and "disk full" in caplog.text
    assert auto.counters["stylegan2/tiny/synthesis"].calls == 2
    with pytest.raises(EngineError, match="disk full"):
        EngineSet("onnxruntime").run(stage, *code.styles)


def test_a_network_without_a_spec_runs_in_torch_under_auto_only():
    net = torch.nn.Linear(4, 2).eval()  # a custom network: no spec_name
    x = torch.randn(3, 4)
    assert torch.equal(EngineSet("onnxruntime", fallback=True).run(net, x), net(x).detach())
    with pytest.raises(InputError, match="no registered spec"):
        EngineSet("onnxruntime").run(net, x)


def test_editors_resolve_auto_by_generator_size(monkeypatch, tmp_path):
    cfg = GlobalDirectionConfig.preset("tiny")
    assert GlobalDirection(config=cfg, random_init=True).backend == "torch"  # 32 px: below the threshold
    assert FlexIT(random_init=True, backend="auto").backend == "torch"
    if not HAVE_ORT:
        return
    monkeypatch.setattr(stages, "AUTO_ONNXRUNTIME_FROM_PX", 32)
    monkeypatch.setenv("EDITRT_ENGINES", str(tmp_path / "engines"))
    fast = GlobalDirection(config=cfg, random_init=True)
    assert fast.backend == "onnxruntime" and fast.engines.fallback
    ref = GlobalDirection(config=cfg, random_init=True, backend="torch", fs3=fast.fs3, stats=fast.stats)
    code = ref.codes_from_seeds([1])
    a = fast.edit(code, "smiling face", alpha=[2.0])
    b = ref.edit(code, "smiling face", alpha=[2.0])
    assert (a.images - b.images).abs().max() < 1e-4
    assert {e.backend for e in fast.engines._engines.values()} == {"onnxruntime"}


def test_default_store_leaves_the_working_directory_alone(monkeypatch, tmp_path):
    monkeypatch.delenv("EDITRT_ENGINES", raising=False)
    monkeypatch.setenv("EDITRT_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert default_root() == tmp_path / "home" / "engines"
    (tmp_path / "engines").mkdir()
    assert default_root().resolve() == (tmp_path / "engines").resolve()
    monkeypatch.setenv("EDITRT_ENGINES", str(tmp_path / "elsewhere"))
    assert default_root() == tmp_path / "elsewhere"
