"""`editrt export --triton-repo`: configs parsed back with Triton's own ModelConfig protobuf
schema (shipped in tritonclient), so a misspelt field or enum fails, and a real export whose
ONNX model runs with the inputs its config declares."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from editrt.cli import main  # noqa: E402
from editrt.errors import InputError  # noqa: E402
from editrt.models.registry import get_spec, list_specs  # noqa: E402
from editrt.serve.triton_repo import batched, check_repo_options, config_text, model_name  # noqa: E402


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("name", [n for n in list_specs() if "/tiny/" in n])
@pytest.mark.parametrize("kind", ["onnx", "plan"])
def test_every_tiny_spec_gives_a_valid_model_config(name, kind):
    spec = get_spec(name)
    cfg = parse(config_text(spec, kind=kind, precision="fp16", max_batch=16, instances=2, instance_kind="gpu"))
    assert cfg.name == model_name(name, "fp16") == name.replace("/", "_") + "_fp16"
    assert cfg.platform == {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}[kind]
    assert [i.name for i in cfg.input] == [t.name for t in spec.inputs]
    assert [o.name for o in cfg.output] == [t.name for t in spec.outputs]
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    if batched(spec):
        cap = spec.profile["B"][2] if kind == "plan" else 16
        assert cfg.max_batch_size == min(16, cap) and cfg.HasField("dynamic_batching")
        for t, i in zip(spec.inputs, cfg.input):  # dims exclude the batch axis; other dynamic axes are -1
            assert list(i.dims) == [d if isinstance(d, int) else -1 for d in t.shape[1:]] or list(i.dims) == [1]
    else:
        assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")


def test_the_schema_catches_a_misspelt_field():
    good = config_text(get_spec("stylegan2/tiny/mapping"), kind="onnx", precision="fp32", max_batch=8,
                       instances=1, instance_kind="cpu")
    assert parse(good).instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    with pytest.raises(text_format.ParseError):
        parse(good.replace("max_batch_size", "max_batch"))
    with pytest.raises(text_format.ParseError):
        parse(good.replace("KIND_CPU", "KIND_CPUS"))


def test_bad_options_are_refused_before_any_export(tmp_path):
    spec = get_spec("stylegan2/tiny/mapping")
    with pytest.raises(InputError):
        config_text(spec, kind="savedmodel", precision="fp32", max_batch=8, instances=1, instance_kind="gpu")
    with pytest.raises(InputError):
        config_text(spec, kind="onnx", precision="fp32", max_batch=8, instances=1, instance_kind="tpu")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_repo_options(tmp_path / "file")
    with pytest.raises(InputError, match="does not exist"):
        check_repo_options(tmp_path / "missing" / "repo")
    assert main(["export", "--models", "stylegan2/tiny/mapping", "--random-weights", "--out", str(tmp_path / "s"),
                 "--triton-repo", str(tmp_path / "r"), "--triton-max-batch", "0"]) == 2
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").rglob("model.onnx"))


def test_export_writes_a_repository_that_runs(tmp_path, capsys):
    import onnxruntime as ort

    repo, store = tmp_path / "repo", tmp_path / "store"
    argv = ["export", "--models", "stylegan2/tiny/mapping", "--random-weights", "--out", str(store),
            "--triton-repo", str(repo), "--triton-max-batch", "4", "--triton-kind", "cpu", "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    model = repo / "stylegan2_tiny_mapping"
    assert sorted(p.relative_to(model).as_posix() for p in model.rglob("*")) == ["1", "1/model.onnx", "config.pbtxt"]
    assert not [p for p in repo.iterdir() if p.name.startswith(".")]  # no staging left behind
    cfg = parse((model / "config.pbtxt").read_text())
    assert cfg.max_batch_size == 4 and cfg.platform == "onnxruntime_onnx"
    session = ort.InferenceSession(str(model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    np_types = {mc.TYPE_FP32: np.float32, mc.TYPE_INT64: np.int64, mc.TYPE_INT32: np.int32}
    feeds = {i.name: np.random.RandomState(0).randn(3, *i.dims).astype(np_types[i.data_type]) for i in cfg.input}
    outs = session.run([o.name for o in cfg.output], feeds)
    for o, value in zip(cfg.output, outs):
        assert value.shape == (3, *o.dims) and value.dtype == np_types[o.data_type]
    # a second export replaces the model folder in place (same content, nothing stale kept)
    assert main(argv) == 0
    assert sorted(p.name for p in repo.iterdir()) == ["stylegan2_tiny_mapping"]


def test_a_per_item_scalar_is_reshaped():
    from editrt.models.registry import ModelSpec, TensorSpec

    spec = ModelSpec("toy/score", build=lambda **_: None, inputs=(TensorSpec("x", ("B", 4)),),
                     outputs=(TensorSpec("score", ("B",)),))
    cfg = parse(config_text(spec, kind="onnx", precision="fp32", max_batch=8, instances=1, instance_kind="gpu"))
    out = cfg.output[0]
    assert list(out.dims) == [1] and out.HasField("reshape") and list(out.reshape.shape) == []
