"""The seam's contract: every exportable wrapper names its spec, and EngineSet.run counts what it runs."""

from __future__ import annotations

import pytest
import torch

from editrt.engines.stages import EngineSet, spec_name_of
from editrt.errors import InputError
from editrt.models.registry import get_spec, list_specs

TINY = [n for n in list_specs() if "/tiny/" in n]


@pytest.mark.parametrize("name", TINY)
def test_every_wrapper_carries_its_spec_name(name):
    wrapper = get_spec(name).build(random_init=True, seed=0)
    assert spec_name_of(wrapper) == name


def test_torch_run_counts_calls_and_items():
    spec = get_spec("deltaedit/tiny/mapper")
    mapper = spec.build(random_init=True, seed=0)
    engines = EngineSet("torch")
    feeds = spec.sample_inputs(B=3)
    out = engines.run(mapper, feeds["sspace"], feeds["clip_cond"])
    assert torch.equal(out, mapper(feeds["sspace"], feeds["clip_cond"]).detach())
    engines.run(mapper, feeds["sspace"][:1], feeds["clip_cond"][:1])
    c = engines.counters["deltaedit/tiny/mapper"]
    assert (c.calls, c.items) == (2, 4)
    assert engines.count("/mapper").items == 4 and engines.count("/synthesis").items == 0
    engines.reset_counters()
    assert engines.counters == {}


def test_torch_run_at_bf16_returns_fp32():
    spec = get_spec("stylegan2/tiny/mapping")
    wrapper = spec.build(random_init=True, seed=0)
    z = spec.sample_inputs(B=2)["z"]
    got = EngineSet("torch", precision="bf16").run(wrapper, z)
    ref = EngineSet("torch").run(wrapper, z)
    assert got.dtype == torch.float32
    assert 0 < float((got - ref).abs().max()) < 0.1 * float(ref.abs().max())


def test_engine_set_arguments_are_checked():
    with pytest.raises(InputError, match="backend"):
        EngineSet("tflite")
    with pytest.raises(InputError, match="precision"):
        EngineSet("torch", precision="int8")
    with pytest.raises(InputError, match="EngineSet"):
        EngineSet.of(3)
    engines = EngineSet("onnxruntime", precision="fp16")
    assert EngineSet.of(engines) is engines and EngineSet.of(engines, precision="fp16") is engines
