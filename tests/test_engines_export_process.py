"""The ONNX export runs in a child interpreter: torch.export switches oneDNN, NNPACK and cuDNN off
process-wide while it traces, so an in-process export changes the kernels (and the results) of
torch work in other threads. Here: the parent's switches never move during an export, the child
rebuilds each wrapper exactly from its tensors, and its failures come back as clear errors."""

from __future__ import annotations

import logging
import threading

import onnx
import pytest
import torch

from editrt.engines.build import build_onnx
from editrt.engines.onnx_export import export_onnx, load_module_tensors, module_tensors, rebuildable_by_name
from editrt.engines.onnxruntime_backend import OrtEngine
from editrt.engines.store import ArtifactStore
from editrt.engines.torch_backend import as_output_dict
from editrt.errors import EngineError
from editrt.models.registry import ModelSpec, TensorSpec, get_spec, list_specs

TINY = [s for s in list_specs() if "/tiny/" in s]


def _switches():
    return (torch._C._get_mkldnn_enabled(), torch._C._get_nnpack_enabled(), torch.backends.cudnn.enabled,
            torch.jit.isinstance.__module__)


def test_an_export_leaves_other_threads_kernels_alone(tmp_path):
    before, seen, stop = _switches(), set(), threading.Event()

    def watch():
        while not stop.is_set():
            seen.add(_switches())
            stop.wait(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        art = build_onnx("vqgan/tiny/decoder", store=ArtifactStore(tmp_path), random_init=True, seed=0, verify=False)
    finally:
        stop.set()
        watcher.join()
    assert len(seen) == 1 and seen == {before}, seen
    assert art.report["export"]["process_seconds"] >= art.report["export"]["export_seconds"] > 0


@pytest.mark.parametrize("name", TINY)
def test_state_dict_rebuilds_the_wrapper_exactly(name):
    """What the child does: the spec's architecture (seed 0) given the parent's tensors (seed 5)
    must compute exactly what the parent's module computes."""
    spec = get_spec(name)
    assert rebuildable_by_name(spec)
    parent = spec.build(random_init=True, seed=5).eval()
    child = spec.build(random_init=True, seed=0).eval()
    assert any(not torch.equal(a, b) for a, b in zip(parent.state_dict().values(), child.state_dict().values()))
    load_module_tensors(child, module_tensors(parent), name)
    feeds = spec.sample_inputs(seed=3)
    with torch.no_grad():
        want = as_output_dict(spec, parent(*[feeds[t.name] for t in spec.inputs]))
        got = as_output_dict(spec, child(*[feeds[t.name] for t in spec.inputs]))
    for k in want:
        assert torch.equal(got[k], want[k]), k


def test_the_graph_carries_the_callers_weights(tmp_path):
    spec = get_spec("stylegan2/tiny/mapping")
    module = spec.build(random_init=True, seed=5)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    export_onnx(module, spec, tmp_path / "m.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no request/state/result files left
    feeds = spec.sample_inputs(seed=4, B=3)
    got = OrtEngine(spec, tmp_path / "m.onnx")(feeds)
    with torch.no_grad():
        want = as_output_dict(spec, module(*[feeds[t.name] for t in spec.inputs]))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def test_weights_of_another_architecture_are_named(tmp_path):
    other = get_spec("deltaedit/tiny/mapper").build(random_init=True, seed=0)
    with pytest.raises(EngineError, match="stylegan2/tiny/mapping.*do not fit the spec's architecture"):
        export_onnx(other, get_spec("stylegan2/tiny/mapping"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_spec_made_at_run_time_is_exported_here_with_a_warning(tmp_path, caplog):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval()
    spec = ModelSpec("custom/scorer", build=lambda **_: net, inputs=(TensorSpec("x", ("B", 4)),),
                     outputs=(TensorSpec("y", ("B", 3)),))
    assert not rebuildable_by_name(spec)
    with caplog.at_level(logging.WARNING, logger="editrt.engines.onnx_export"):
        report = export_onnx(net, spec, tmp_path / "m.onnx")
    assert "exporting it in this process" in caplog.text and "process_seconds" not in report
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    x = torch.randn(5, 4)
    torch.testing.assert_close(OrtEngine(spec, tmp_path / "m.onnx")({"x": x})["y"], net(x).detach(),
                               rtol=1e-5, atol=1e-6)
