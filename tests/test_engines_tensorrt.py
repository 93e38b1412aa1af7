"""TensorRT backend. Skips cleanly without `tensorrt` (never installed on our machines) or a GPU."""

from __future__ import annotations

import pytest
import torch

try:  # the PyPI stubs / bindings without libraries fail with errors other than ImportError
    import tensorrt as trt  # noqa: F401
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"TensorRT is not importable ({type(exc).__name__}); it cannot be installed on our machines",
                allow_module_level=True)

pytestmark = [pytest.mark.tensorrt, pytest.mark.cuda]

from editrt.engines.build import relative_error  # noqa: E402
from editrt.engines.stages import EngineSet, open_engine  # noqa: E402
from editrt.engines.store import ArtifactStore  # noqa: E402
from editrt.engines.torch_backend import as_output_dict  # noqa: E402
from editrt.models.registry import get_spec  # noqa: E402


@pytest.mark.parametrize("name", ["stylegan2/tiny/mapping", "deltaedit/tiny/mapper", "clip/tiny/text"])
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_plan_matches_torch(name, cuda_graph, tmp_path):
    spec = get_spec(name)
    module = spec.build(random_init=True, seed=0).cuda()
    engine = open_engine(spec, "tensorrt", store=ArtifactStore(tmp_path), module=module,
                         weights_id="random-init:seed=0", device="cuda", cuda_graph=cuda_graph)
    for b in (1, 3, 3):  # the repeat replays the captured graph
        feeds = {k: v.cuda() for k, v in spec.sample_inputs(seed=b, B=b).items()}
        got = engine(feeds)
        with torch.no_grad():
            ref = as_output_dict(spec, module(*[feeds[t.name] for t in spec.inputs]))
        for n in ref:
            assert relative_error(got[n], ref[n]) < 1e-3


def test_text_plan_takes_trimmed_token_rows(tmp_path):
    """One plan for every token count in the profile (trimmed template rows and full rows)."""
    spec = get_spec("clip/tiny/text")
    module = spec.build(random_init=True, seed=0).cuda()
    engine = open_engine(spec, "tensorrt", store=ArtifactStore(tmp_path), module=module,
                         weights_id="random-init:seed=0", device="cuda")
    for t in (2, 9, 16, 77):
        feeds = {k: v.cuda() for k, v in spec.sample_inputs(seed=t, B=3, T=t).items()}
        with torch.no_grad():
            ref = module(feeds["tokens"])
        assert relative_error(engine(feeds)["embedding"], ref) < 1e-3, t


def test_shared_arena_across_engines(tmp_path):
    engines = EngineSet("tensorrt", store=ArtifactStore(tmp_path), device="cuda")
    names = ["stylegan2/tiny/mapping", "stylegan2/tiny/styles"]
    wrappers = [get_spec(n).build(random_init=True, seed=0).cuda() for n in names]
    for w in wrappers:
        engines.register(w, random_init=True, seed=0)
    engines.open(wrappers)
    assert engines.arena is not None and engines.arena.size > 0
    z = torch.randn(2, get_spec(names[0]).inputs[0].shape[1], device="cuda")
    w = engines.run(wrappers[0], z)
    wp = w[:, None].expand(-1, get_spec(names[1]).inputs[0].shape[1], -1).contiguous()
    styles = engines.run(wrappers[1], wp)
    assert all(torch.isfinite(s).all() for s in styles)
