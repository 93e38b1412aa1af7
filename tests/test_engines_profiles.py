"""Optimisation profiles from the specs, without TensorRT: the shapes the plan builder gives
TensorRT (through a recording stand-in for the ``tensorrt`` module; the names it stands in for
are checked against the real API in test_engines_tensorrt_api.py), the TensorRT EP's profile
strings and the plan's shape check. The CLIP text tower's token axis T has its own range."""

from __future__ import annotations

import types

import pytest
import torch

from editrt.engines import build as build_mod
from editrt.engines.onnx_export import graph_io_shapes
from editrt.engines.onnxruntime_backend import profile_strings
from editrt.engines.store import ArtifactStore
from editrt.engines.tensorrt_backend import TrtEngine
from editrt.errors import InputError
from editrt.models.registry import get_spec

TEXT = "clip/tiny/text"
TEXT_PROFILE = {"tokens": ((1, 2), (2, 16), (160, 77))}  # (B, T) at min, opt, max


def fake_tensorrt(calls: dict) -> types.SimpleNamespace:
    """Just what ``build_trt_plan`` touches; records the profile and the parsed file."""

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.setdefault("profile", {})[name] = (tuple(lo), tuple(opt), tuple(hi))

    class Cache:
        def serialize(self):
            return b"cache"

    class Config:
        builder_optimization_level = 0

        def add_optimization_profile(self, profile):
            calls["profiles"] = calls.get("profiles", 0) + 1

        def create_timing_cache(self, data):
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            pass

        def get_timing_cache(self):
            return Cache()

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"plan"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["onnx"] = path
            return True

    logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    return types.SimpleNamespace(Logger=logger, Builder=Builder, OnnxParser=OnnxParser, __version__="fake",
                                 NetworkDefinitionCreationFlag=types.SimpleNamespace(STRONGLY_TYPED=0))


def test_text_spec_profiles_the_token_axis():
    spec = get_spec(TEXT)
    assert spec.inputs[0].shape == ("B", "T")
    assert spec.profile_shapes() == TEXT_PROFILE
    assert profile_strings(spec) == {"trt_profile_min_shapes": "tokens:1x2", "trt_profile_opt_shapes": "tokens:2x16",
                                     "trt_profile_max_shapes": "tokens:160x77"}
    # every architecture: T up to its context length
    assert get_spec("clip/ViT-B-32/text").profile["T"] == (2, 16, 77)


def test_plan_build_gets_the_text_profile(tmp_path_factory, monkeypatch):
    import onnx

    calls: dict = {}
    monkeypatch.setattr(build_mod, "import_tensorrt", lambda: fake_tensorrt(calls))
    store = ArtifactStore(tmp_path_factory.getbasetemp() / "engines_shared")  # the ONNX graph other files build
    module = get_spec(TEXT).build(random_init=True, seed=0)
    art = build_mod.build_plan(TEXT, store=store, module=module, weights_id="random-init:seed=0")
    assert calls["profile"] == TEXT_PROFILE and calls["profiles"] == 1
    assert art.report["profile"] == {"tokens": [[1, 2], [2, 16], [160, 77]]}
    assert art.path.read_bytes() == b"plan"
    assert graph_io_shapes(onnx.load(str(calls["onnx"])))["tokens"] == ["B", "T"]


@pytest.mark.parametrize("T,ok", [(2, True), (16, True), (77, True), (1, False), (78, False)])
def test_plan_shape_check_follows_the_token_range(T, ok):
    spec = get_spec(TEXT)
    engine = types.SimpleNamespace(spec=spec, name=spec.name)  # the check needs no CUDA context
    feeds = {"tokens": torch.zeros(3, T, dtype=torch.int32)}
    if ok:
        TrtEngine._check_profile(engine, feeds)
    else:
        with pytest.raises(InputError, match="outside the engine's profile"):
            TrtEngine._check_profile(engine, feeds)
