"""FlexIT's GPU paths (autocast, channels_last, batched warps, torch.compile / CUDA graphs).

Skipped without a CUDA device; run them on a GPU machine with `pytest -m cuda`.
"""

import pytest
import torch

from editrt.config import FlexITConfig
from editrt.methods.flexit import FlexIT

pytestmark = pytest.mark.cuda
FIXED_VIEWS = dict(rotation_degrees=0.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False)


def _img(seed):
    return torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def plain():
    cfg = FlexITConfig.preset("tiny").replace(**FIXED_VIEWS, autocast="off", channels_last="off")
    return cfg, FlexIT(cfg, device="cuda", random_init=True).edit(_img(0), "red", "blue", steps=4)


@pytest.mark.parametrize("change,max_mean_diff", [
    ({}, 1e-4),  # GPU fp32 vs itself via the defaults' other switches off
    ({"autocast": "bf16"}, 0.02),
    ({"autocast": "fp16"}, 0.02),
    ({"channels_last": "on"}, 1e-4),
    ({"compile": "compile"}, 1e-3),
    ({"compile": "cuda_graph"}, 1e-3),
])
def test_gpu_switches_within_tolerance(plain, change, max_mean_diff):
    cfg, ref = plain
    got = FlexIT(cfg.replace(**change), device="cuda", random_init=True).edit(_img(0), "red", "blue", steps=4)
    assert torch.isfinite(got.images).all()
    assert (got.images - ref.images).abs().mean() < max_mean_diff


def test_cpu_and_gpu_agree():
    cfg = FlexITConfig.preset("tiny").replace(**FIXED_VIEWS, autocast="off", channels_last="off")
    cpu = FlexIT(cfg, random_init=True).edit(_img(1), "a", "b", steps=2)
    gpu = FlexIT(cfg, device="cuda", random_init=True).edit(_img(1), "a", "b", steps=2)
    assert (cpu.images - gpu.images).abs().mean() < 1e-3


def test_default_gpu_settings_batch():
    ed = FlexIT(FlexITConfig.preset("tiny"), device="cuda", random_init=True)
    res = ed.edit([_img(2), _img(3), _img(4)], "a", "b", steps=3)
    assert res.images.shape == (3, 3, 64, 64) and torch.isfinite(res.images).all()
