"""Artifact store: stale (weights, precision, library version), foreign and corrupt artifacts."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from editrt.engines import store as store_mod
from editrt.engines.build import artifact_key, build_onnx
from editrt.engines.onnxruntime_backend import OrtEngine
from editrt.engines.stages import open_engine
from editrt.engines.store import ArtifactStore, weights_identity
from editrt.errors import EngineError
from editrt.models.registry import get_spec

NAME = "deltaedit/tiny/mapper"  # a tiny spec with a known checkpoint file (deltaedit/tiny.safetensors)


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    """Weights folder + a store with one fp32 artifact, built once and copied per test."""
    root = tmp_path_factory.mktemp("store_template")
    folder = root / "weights"
    (folder / "deltaedit").mkdir(parents=True)
    module = get_spec(NAME).build(random_init=True, seed=3)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(folder / "deltaedit" / "tiny.safetensors"))
    build_onnx(NAME, store=ArtifactStore(root / "engines"), weights=folder, verify=False)
    return root


@pytest.fixture()
def weights_dir(_template, tmp_path):
    shutil.copytree(_template / "weights", tmp_path / "weights")
    return tmp_path / "weights"


@pytest.fixture()
def built(_template, tmp_path, weights_dir):
    shutil.copytree(_template / "engines", tmp_path / "engines")
    store = ArtifactStore(tmp_path / "engines")
    art = build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    return store, art


def test_weights_identity_follows_the_file(weights_dir):
    a = weights_identity(NAME, weights=weights_dir)
    assert a.startswith("files:") and a == weights_identity(NAME, weights=weights_dir)
    assert weights_identity(NAME, random_init=True, seed=1) != weights_identity(NAME, random_init=True, seed=2)


def test_valid_artifact_loads_and_runs(built, weights_dir):
    store, art = built
    again = build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    assert again.path == art.path
    manifest = json.loads((store.root / "manifest.json").read_text())
    entry = manifest["artifacts"][art.key.slot]
    assert entry["key"]["weights"] == art.key.weights and entry["files"]["model.onnx"]["size"] > 0
    engine = open_engine(NAME, "onnxruntime", store=store, weights=weights_dir, rebuild=False)
    out = engine(get_spec(NAME).sample_inputs(B=2))
    assert out["delta_s"].shape == (2, get_spec(NAME).outputs[0].shape[1])


def test_changed_weights_are_detected(built, weights_dir):
    store, _ = built
    ckpt = weights_dir / "deltaedit" / "tiny.safetensors"
    module = get_spec(NAME).build(random_init=True, seed=4)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(ckpt))
    with pytest.raises(EngineError, match="weights: artifact has"):
        build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    # allowed to rebuild: a fresh artifact replaces the stale one
    art = build_onnx(NAME, store=store, weights=weights_dir, rebuild=True, verify=False)
    assert art.key.weights == weights_identity(NAME, weights=weights_dir)
    assert store.lookup(art.key) is not None


def test_changed_library_version_is_detected(built, weights_dir, monkeypatch):
    store, _ = built
    real = store_mod.library_versions

    monkeypatch.setattr(store_mod, "library_versions", lambda: {**real(), "onnx": "0.0.1"})
    with pytest.raises(EngineError, match="onnx: artifact has"):
        build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    monkeypatch.setattr(store_mod, "library_versions", lambda: {**real(), "torch": "1.0"})
    with pytest.raises(EngineError, match="torch: artifact has"):
        build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    # the onnxruntime version is recorded, not compared, for ONNX files (they do not depend on it)
    monkeypatch.setattr(store_mod, "library_versions", lambda: {**real(), "onnxruntime": "9.9"})
    assert build_onnx(NAME, store=store, weights=weights_dir, rebuild=False) is not None


def test_changed_precision_is_detected(built, weights_dir):
    store, art = built
    with pytest.raises(EngineError, match="no fp16 ONNX artifact"):
        build_onnx(NAME, store=store, weights=weights_dir, precision="fp16", rebuild=False)
    # a manifest entry whose key says another precision than its slot: named, not loaded
    data = json.loads(store.manifest_path.read_text())
    data["artifacts"][art.key.slot]["key"]["precision"] = "fp16"
    store.manifest_path.write_text(json.dumps(data))
    with pytest.raises(EngineError, match="precision: artifact has 'fp16', now 'fp32'"):
        build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)


def test_truncated_and_corrupt_artifacts(built, weights_dir):
    store, art = built
    data = art.path.read_bytes()
    art.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EngineError, match="truncated"):
        build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    art.path.write_bytes(bytes(flipped))
    with pytest.raises(EngineError, match="sha256"):
        build_onnx(NAME, store=store, weights=weights_dir, rebuild=False)
    # a garbage file handed straight to onnxruntime: a clear EngineError, not a crash
    art.path.write_bytes(b"not an onnx file" * 10)
    with pytest.raises(EngineError, match="rebuild"):
        OrtEngine(get_spec(NAME), art.path)
    # rebuilding repairs it
    fixed = build_onnx(NAME, store=store, weights=weights_dir, verify=False)
    assert store.lookup(fixed.key) is not None


def test_foreign_files_and_bad_manifest(tmp_path):
    store = ArtifactStore(tmp_path)
    key = artifact_key(NAME, "onnx", "fp32", weights_id="random-init:seed=0")
    slot = tmp_path / key.slot
    slot.mkdir(parents=True)
    (slot / "model.onnx").write_bytes(b"x")
    with pytest.raises(EngineError, match="does not list"):
        store.lookup(key)
    store.manifest_path.write_text("{broken")
    with pytest.raises(EngineError, match="unreadable"):
        store.lookup(key)


def test_plan_keys_include_tensorrt_and_gpu():
    key = artifact_key(NAME, "plan", "fp16", weights_id="random-init:seed=0")
    fields = key.fields()
    assert {"tensorrt", "gpu", "compute_capability"} <= set(fields)
    assert "gpu" in store_mod.RELEVANT["plan"] and "gpu" not in store_mod.RELEVANT["onnx"]


def test_no_partial_files_left(built):
    store, _ = built
    leftovers = [p for p in store.root.rglob("*") if p.name.startswith((".staging-", ".manifest.")) or ".new-" in p.name]
    assert leftovers == []


def test_fixed_token_axis_clip_text_artifact_is_stale(tmp_path):
    """A CLIP text graph exported when the token axis was fixed to 77 is not reused: the spec
    signature (I/O shapes, profile) differs, so it is reported stale, then rebuilt dynamic in T."""
    import dataclasses

    import onnx

    from editrt.engines.onnx_export import graph_io_shapes
    from editrt.models.registry import TensorSpec

    spec = get_spec("clip/tiny/text")
    old = dataclasses.replace(spec, inputs=(TensorSpec("tokens", ("B", 77), torch.int32),),
                              axes={"B": 2}, profile={"B": (1, 2, 160)})
    store, wid = ArtifactStore(tmp_path), "random-init:seed=0"
    module = spec.build(random_init=True, seed=0)
    build_onnx(old, store=store, module=module, weights_id=wid, verify=False)
    with pytest.raises(EngineError, match="signature: artifact has"):
        build_onnx(spec, store=store, module=module, weights_id=wid, rebuild=False)
    art = build_onnx(spec, store=store, module=module, weights_id=wid, verify=False)
    assert graph_io_shapes(onnx.load(str(art.path)))["tokens"] == ["B", "T"]
    assert build_onnx(spec, store=store, module=module, weights_id=wid, rebuild=False).path == art.path
