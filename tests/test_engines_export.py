"""Every tiny spec: ONNX export, onnxruntime CPU parity with torch, dynamic batch, fp16 drift."""

from __future__ import annotations

import os

import onnx
import pytest
import torch

from editrt.engines.build import build_onnx, comparison_cases, relative_error, resolve_models
from editrt.engines.onnx_export import graph_io_shapes
from editrt.engines.onnxruntime_backend import OrtEngine
from editrt.engines.stages import open_engine
from editrt.engines.store import ArtifactStore
from editrt.engines.torch_backend import TorchEngine, as_output_dict
from editrt.errors import InputError
from editrt.models.registry import get_spec, list_specs

TINY = [s for s in list_specs() if "/tiny/" in s]


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    # one store per test session, shared by the engine test files (each still runs alone)
    return ArtifactStore(tmp_path_factory.getbasetemp() / "engines_shared")


@pytest.fixture(scope="module")
def modules():
    return {}


def _module(modules, name):
    if name not in modules:
        modules[name] = get_spec(name).build(random_init=True, seed=0)
    return modules[name]


def test_tiny_specs_cover_every_family():
    families = {s.split("/")[0] for s in TINY}
    assert {"clip", "vqgan", "stylegan2", "deltaedit", "e4e"} <= families, TINY


@pytest.mark.parametrize("name", TINY)
def test_export_matches_torch_with_dynamic_batch(name, store, modules):
    spec = get_spec(name)
    module = _module(modules, name)
    # verify=False: the comparison below is the check (the build's own one would repeat it)
    art = build_onnx(spec, store=store, precision="fp32", random_init=True, seed=0, module=module,
                     weights_id="random-init:seed=0", verify=False)
    # the batch axis stayed symbolic (a batch-1 example would have fixed it)
    shapes = graph_io_shapes(onnx.load(str(art.path), load_external_data=False))
    for t in spec.inputs:
        assert isinstance(shapes[t.name][0], str), (t.name, shapes[t.name])
    engine = OrtEngine(spec, art.path)
    for b in (1, 3):
        feeds = spec.sample_inputs(seed=7, B=b)
        got = engine(feeds)
        with torch.no_grad():
            ref = as_output_dict(spec, module(*[feeds[t.name] for t in spec.inputs]))
        for n in [t.name for t in spec.outputs]:
            assert got[n].shape == ref[n].shape
            assert got[n].dtype == torch.float32
            assert relative_error(got[n], ref[n]) < 1e-4, (name, b, n)


@pytest.mark.parametrize("name", ["clip/tiny/image", "vqgan/tiny/decoder", "stylegan2/tiny/synthesis"])
def test_fp16_graph_reports_drift(name, store, modules):
    spec = get_spec(name)
    art = build_onnx(spec, store=store, precision="fp16", random_init=True, seed=0, module=_module(modules, name),
                     weights_id="random-init:seed=0")
    report = art.report
    assert report["precision"]["initializers"].get("FLOAT16", 0) > 0  # really a reduced-precision graph
    drift = report["drift_vs_torch_fp32"]["max"]
    print(f"{name} fp16 drift vs torch fp32: {drift:.2e}")
    assert 1e-6 < drift < 2e-2, drift
    # normalisations kept in fp32: their inputs are fp32 in the graph
    model = onnx.load(str(art.path))
    kept = [n for n in model.graph.node if n.op_type in spec.fp32_ops]
    casts_to_fp32 = {n.output[0] for n in model.graph.node
                     if n.op_type == "Cast" and n.attribute[0].i == onnx.TensorProto.FLOAT}
    if kept:
        assert any(x in casts_to_fp32 for n in kept for x in n.input)
    # fp32 I/O whatever the precision
    out = OrtEngine(spec, art.path, precision="fp16")(spec.sample_inputs(B=2))
    assert all(v.dtype == torch.float32 for v in out.values())


def test_bf16_graph_is_valid_onnx(store, modules):
    name = "stylegan2/tiny/mapping"
    art = build_onnx(name, store=store, precision="bf16", random_init=True, seed=0, module=_module(modules, name),
                     weights_id="random-init:seed=0")
    onnx.checker.check_model(str(art.path), full_check=True)
    assert art.report["precision"]["initializers"].get("BFLOAT16", 0) > 0
    assert art.report["precision"]["opset"] >= 22
    drift = art.report["drift_vs_torch_fp32"]
    if "skipped" in drift:  # onnxruntime 1.2x CPU: no bf16 kernels (Gemm/Add); the report says so
        assert set(drift) == {"skipped"}
        assert "onnxruntime CPU cannot run this bf16 graph" in drift["skipped"] and "NOT_IMPLEMENTED" in drift["skipped"]
    else:  # a runtime with bf16 kernels: a measured drift of bf16 size (8-bit mantissa)
        assert 0 < drift["max"] < 3e-2


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_clip_text_graph_takes_any_token_count(precision, store, modules):
    """The token axis is symbolic inside the graph too: position embeddings and causal mask
    follow T (trimmed rows, trim_padding), where a traced constant would break at other sizes."""
    from editrt.models.clip import trim_padding

    name = "clip/tiny/text"
    spec, module = get_spec(name), _module(modules, name)
    art = build_onnx(spec, store=store, precision=precision, random_init=True, seed=0, module=module,
                     weights_id="random-init:seed=0")
    assert graph_io_shapes(onnx.load(str(art.path)))["tokens"] == ["B", "T"]
    assert {"T_2", "T_16"} <= set(comparison_cases(spec))  # the build's own check covers short rows too
    engine = OrtEngine(spec, art.path, precision=precision)

    def error(got, ref):  # fp32: round-off in absolute terms; fp16: the fp16 drift bound
        return float((got - ref).abs().max()) if precision == "fp32" else relative_error(got, ref)
    tol = 1e-5 if precision == "fp32" else 2e-2
    net = module.net
    full = net.tokenize(["a photo of a dog", "a bright photo of the cat", "itap of a very small and weird face"])
    rows = [trim_padding(full)] + [spec.sample_inputs(seed=t, B=3, T=t)["tokens"] for t in (2, 8, 15, 77)]
    assert rows[0].shape[1] < 16
    for tokens in rows:
        got = engine({"tokens": tokens})["embedding"]
        with torch.no_grad():
            ref = net.encode_text(tokens.long())
        assert error(got, ref) < tol, (precision, tuple(tokens.shape), error(got, ref))
    with torch.no_grad():  # trimmed rows through the graph = full rows through torch
        assert error(engine({"tokens": rows[0]})["embedding"], net.encode_text(full)) < tol


def test_torch_engine_and_input_checks(modules):
    name = "deltaedit/tiny/mapper"
    spec = get_spec(name)
    engine = TorchEngine(spec, _module(modules, name))
    feeds = spec.sample_inputs(B=3)
    out = engine(feeds)
    assert out["delta_s"].shape[0] == 3
    with pytest.raises(InputError, match="missing"):
        engine({"sspace": feeds["sspace"]})
    with pytest.raises(InputError, match="dynamic axis"):
        engine({"sspace": feeds["sspace"], "clip_cond": feeds["clip_cond"][:2]})
    with pytest.raises(InputError, match="dim 1"):
        engine({"sspace": feeds["sspace"][:, :5], "clip_cond": feeds["clip_cond"]})


def test_int64_tokens_are_cast_to_the_graph_int32(store, modules):
    name = "clip/tiny/text"
    engine = open_engine(name, "onnxruntime", store=store, random_init=True, seed=0, module=_module(modules, name),
                         weights_id="random-init:seed=0")
    feeds = get_spec(name).sample_inputs(B=2)
    a = engine(feeds)["embedding"]
    b = engine({"tokens": feeds["tokens"].long()})["embedding"]
    assert torch.equal(a, b)


def test_clones_run_in_threads(store, modules):
    from concurrent.futures import ThreadPoolExecutor

    name = "stylegan2/tiny/mapping"
    engine = open_engine(name, "onnxruntime", store=store, module=_module(modules, name),
                         weights_id="random-init:seed=0")
    feeds = [get_spec(name).sample_inputs(seed=s, B=2) for s in range(6)]
    expected = [engine(f)["w"] for f in feeds]
    engines = [engine, engine.clone()]
    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(lambda i: engines[i % 2](feeds[i])["w"], range(6)))
    for g, e in zip(got, expected):
        assert torch.equal(g, e)


def test_cpu_arena_setting_reaches_the_session_and_changes_no_result(store, modules):
    from editrt.engines.stages import EngineSet
    from editrt.models.stylegan2 import SynthesisExport

    stage = SynthesisExport(_module(modules, "stylegan2/tiny/synthesis").generator)
    feeds = get_spec("stylegan2/tiny/synthesis").sample_inputs(seed=3, B=2)
    sets = {arena: EngineSet("onnxruntime", store=store, cpu_arena=arena) for arena in (True, False)}
    outs = {}
    for arena, es in sets.items():
        engine = es.engine(stage)
        assert engine.session.get_session_options().enable_cpu_mem_arena is arena
        assert engine.clone().cpu_arena is arena
        outs[arena] = es.run(stage, *feeds.values())
    assert torch.equal(outs[True], outs[False])


def test_cpu_arena_default_comes_from_the_environment(store, monkeypatch):
    from editrt.engines.onnxruntime_backend import ARENA_ENV

    name = "stylegan2/tiny/mapping"
    art = build_onnx(get_spec(name), store=store, random_init=True, seed=0)
    monkeypatch.delenv(ARENA_ENV, raising=False)
    assert OrtEngine(get_spec(name), art.path).cpu_arena  # on unless asked
    monkeypatch.setenv(ARENA_ENV, "off")
    engine = OrtEngine(get_spec(name), art.path)
    assert not engine.cpu_arena and not engine.session.get_session_options().enable_cpu_mem_arena
    assert OrtEngine(get_spec(name), art.path, cpu_arena=True).cpu_arena  # an explicit choice wins
    monkeypatch.setenv(ARENA_ENV, "sometimes")
    with pytest.raises(InputError, match=ARENA_ENV):
        OrtEngine(get_spec(name), art.path)


def test_resolve_models_groups():
    assert resolve_models(["stylegan2/tiny"]) == ["stylegan2/tiny/mapping", "stylegan2/tiny/styles",
                                                   "stylegan2/tiny/synthesis"]
    assert resolve_models(["clip/ViT-B/32"]) == ["clip/ViT-B-32/image", "clip/ViT-B-32/text"]
    assert all("/tiny/" not in s for s in resolve_models(["deltaedit"]))
    with pytest.raises(InputError):
        resolve_models(["nosuchmodel"])


def test_cli_export(tmp_path, capsys):
    from editrt.cli import main

    rc = main(["export", "--models", "stylegan2/tiny/mapping", "--precision", "fp32", "fp16",
               "--random-weights", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "stylegan2/tiny/mapping" in out and "fp16" in out
    assert (tmp_path / "manifest.json").exists()
    assert list((tmp_path / "stylegan2__tiny__mapping").glob("fp16-onnx-*/model.onnx"))
    rc = main(["export", "--models", "stylegan2/tiny/mapping", "--random-weights", "--out", str(tmp_path), "--list"])
    assert rc == 0 and "ok" in capsys.readouterr().out
    # TensorRT absent here: a clear "backend unavailable" exit code, not a traceback
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001
        rc = main(["export", "--models", "stylegan2/tiny/mapping", "--random-weights", "--out", str(tmp_path),
                   "--backend", "tensorrt"])
        assert rc == 6


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clip/ViT-B-32/image", "clip/ViT-B-32/text", "vqgan/vqgan_imagenet_f16_1024/decoder"])
def test_full_size_export(name, tmp_path):
    spec = get_spec(name)
    module = spec.build(random_init=True, seed=0)
    art = build_onnx(spec, store=ArtifactStore(tmp_path), random_init=True, module=module,
                     weights_id="random-init:seed=0")
    assert art.report["drift_vs_torch_fp32"]["max"] < 1e-4
    assert os.path.getsize(art.path) > 50e6
