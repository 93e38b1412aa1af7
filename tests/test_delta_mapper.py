"""Delta Mapper (DeltaEdit delta_mapper.py): architecture, key names, parameter count, goldens."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from editrt.errors import InputError, WeightsError
from editrt.models.delta_mapper import (FFHQ_CONFIG, TINY_CONFIG, DeltaMapper, DeltaMapperConfig, EqualLinear,
                                        PixelNorm, load_delta_mapper, parameter_count)

torch.set_num_threads(2)
GOLDEN = Path(__file__).parent / "golden" / "deltaedit_tiny_mapper.safetensors"


def test_full_size_parameter_count_without_allocating():
    # 82.76 M (DeltaEdit models/delta_mapper.py), counted on the meta device
    assert parameter_count(FFHQ_CONFIG) == 82_760_576
    assert FFHQ_CONFIG.s_dim == 6048 and FFHQ_CONFIG.clip_dim == 1024


def test_full_size_state_dict_keys_are_net_face_keys():
    with torch.device("meta"):
        net = DeltaMapper(FFHQ_CONFIG)
    expected = set()
    for group in ("coarse", "medium", "fine"):
        for mod, idx in (("sm", range(1, 5)), ("cm", range(1, 5)), ("fm", range(0, 4))):
            for i in idx:
                expected |= {f"{mod}_{group}.mapping.{i}.weight", f"{mod}_{group}.mapping.{i}.bias"}
    sd = net.state_dict()
    assert set(sd) == expected
    assert sd["sm_fine.mapping.1.weight"].shape == (2464, 2464)
    assert sd["cm_fine.mapping.1.weight"].shape == (2464, 1024)
    assert sd["fm_fine.mapping.0.weight"].shape == (2464, 4928)
    assert sd["fm_coarse.mapping.3.bias"].shape == (512,)


def test_full_size_forward_shapes_on_meta():
    with torch.device("meta"):
        net = DeltaMapper(FFHQ_CONFIG)
        out = net(torch.empty(2, 6048), torch.empty(2, 1024))
    assert out.shape == (2, 6048)


def test_pixelnorm_normalises_dim1_even_for_layer_axis():
    x = torch.randn(2, 3, 5)
    y = PixelNorm()(x)
    # mean of squares over dim 1 (the layer axis for [B, 3, 512]) is 1, not over the channels
    assert torch.allclose((y ** 2).mean(dim=1), torch.ones(2, 5), atol=1e-5)
    assert not torch.allclose((y ** 2).mean(dim=2), torch.ones(2, 3), atol=1e-2)


def test_equal_linear_matches_reference_formula():
    torch.manual_seed(0)
    lin = EqualLinear(7, 4)
    with torch.no_grad():
        lin.bias.normal_()
    assert torch.allclose(lin.weight.std(), torch.tensor(100.0), rtol=0.5)  # randn / lr_mul 0.01
    x = torch.randn(3, 2, 7)  # 3-D input: bias over the last axis
    ref = F.leaky_relu(x @ (lin.weight * 0.01 / math.sqrt(7)).T + lin.bias * 0.01, 0.2) * math.sqrt(2)
    assert torch.allclose(lin(x), ref, atol=1e-5)


def test_tiny_shapes_and_validation():
    net = load_delta_mapper("tiny", random_init=True, seed=0)
    out = net(torch.randn(4, TINY_CONFIG.s_dim), torch.randn(4, TINY_CONFIG.clip_dim))
    assert out.shape == (4, TINY_CONFIG.s_dim) and torch.isfinite(out).all()
    with pytest.raises(InputError):
        net(torch.randn(4, TINY_CONFIG.s_dim + 1), torch.randn(4, TINY_CONFIG.clip_dim))
    with pytest.raises(InputError):
        net(torch.randn(4, TINY_CONFIG.s_dim), torch.randn(3, TINY_CONFIG.clip_dim))


def test_golden_output():
    data = load_file(str(GOLDEN))
    net = load_delta_mapper("tiny", random_init=True, seed=1234)
    with torch.no_grad():
        out = net(data["sspace"], data["clip_cond"])
    torch.testing.assert_close(out, data["delta_s"], atol=1e-5, rtol=1e-5)


def test_golden_script_inputs_match_file():
    spec = importlib.util.spec_from_file_location(
        "make_goldens_deltaedit", Path(__file__).parents[1] / "scripts" / "make_goldens_deltaedit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = load_file(str(GOLDEN))
    for k, v in mod.golden_inputs().items():
        torch.testing.assert_close(v, data[k])


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path):
    net = load_delta_mapper("tiny", random_init=True, seed=3)
    path = tmp_path / "net.pth"
    torch.save(net.state_dict(), path)  # net_face.pth is a plain state_dict
    loaded = load_delta_mapper("tiny", path=path)
    x, c = torch.randn(2, TINY_CONFIG.s_dim), torch.randn(2, TINY_CONFIG.clip_dim)
    torch.testing.assert_close(loaded(x, c), net(x, c))

    bad = dict(net.state_dict())
    bad.pop("fm_fine.mapping.3.bias")
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match="missing"):
        load_delta_mapper("tiny", path=tmp_path / "missing.pth")
    other = DeltaMapper(DeltaMapperConfig(2, 64, 2, 64, 96, 128)).state_dict()
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="shape"):
        load_delta_mapper("tiny", path=tmp_path / "other.pth")
    with pytest.raises(WeightsError):
        load_delta_mapper("tiny", weights=tmp_path / "empty_store")


def test_for_layout_and_registry():
    from editrt.models.registry import get_spec, list_specs
    from editrt.models.stylegan2 import StyleLayout

    layout = StyleLayout.from_config("ffhq-1024")
    assert DeltaMapperConfig.for_layout(layout.conv_channels, 512) == FFHQ_CONFIG
    tiny = StyleLayout.from_config("tiny")
    assert DeltaMapperConfig.for_layout(tiny.conv_channels, 64, coarse_layers=2, medium_layers=2) == TINY_CONFIG
    with pytest.raises(InputError):
        DeltaMapperConfig.for_layout(tiny.conv_channels, 64)  # medium widths 64/32/32/16 differ
    spec = get_spec("deltaedit/tiny/mapper")
    feeds = spec.sample_inputs()
    out = spec.build(random_init=True)(*feeds.values())
    assert out.shape == (2, TINY_CONFIG.s_dim)
    assert {"deltaedit/ffhq/mapper", "deltaedit/tiny/mapper"} <= set(list_specs("deltaedit/"))
