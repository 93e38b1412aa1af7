"""FlexIT's speed and memory switches change the work, not the result: per-network backward,
chunked batches, the per-device defaults (methods/flexit.py)."""

import pytest
import torch

from editrt.config import FlexITConfig
from editrt.errors import InputError
from editrt.methods import flexit as fx
from editrt.methods.flexit import FlexIT


def _img(seed, size=64):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def cfg():
    # two CLIP nets so the per-network backward really accumulates over several graphs
    return FlexITConfig.preset("tiny").replace(clip_models=("tiny", "tiny"), autocast="off")


@pytest.fixture
def models(tiny_models):
    from editrt.models.clip import ClipEnsemble

    net = tiny_models["clip"].nets[0]
    return {**tiny_models, "clip": ClipEnsemble([net, net])}


def test_per_network_backward_gives_the_joint_gradient(cfg, models):
    ed = FlexIT(cfg, models=models)
    state = ed.prepare([_img(0), _img(1)], "a cat", ["a dog", "a red car"], seed=3)
    views = ed._view_inputs(2, torch.Generator().manual_seed(7))
    z = (state.z + 0.01 * torch.randn(state.z.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    loss, joint = ed._losses(z, state.targets, views, None)
    (g_joint,) = torch.autograd.grad(loss.sum(), z)
    split, g_split = ed._losses_and_grad(z, state.targets, views, None)
    torch.testing.assert_close(g_split, g_joint, rtol=1e-4, atol=1e-6)
    for k in ("loss", "clip", "lpips", "latent", "sim_source", "sim_target"):
        torch.testing.assert_close(split[k], joint[k], rtol=1e-5, atol=1e-6)
    assert g_split.abs().sum() > 0


def test_steps_agree_with_and_without_per_network_backward(cfg, models):
    a, b = FlexIT(cfg, models=models), FlexIT(cfg, models=models)
    b.per_network_backward = False
    sa, sb = a.prepare(_img(2), "x", "y", seed=5), b.prepare(_img(2), "x", "y", seed=5)
    for _ in range(2):
        sa, sb = a.step(sa), b.step(sb)
    torch.testing.assert_close(sa.z, sb.z, rtol=1e-4, atol=1e-5)


def test_chunked_batches_give_the_single_image_results(cfg, models):
    ed = FlexIT(cfg, models=models)
    both = ed.edit([_img(0), _img(1)], "a cat", ["a dog", "a car"], steps=2, seed=4, snapshots=[0, 2], batch_size=1)
    alone = [ed.edit(_img(k), "a cat", t, steps=2, seed=4, snapshots=[0, 2]) for k, t in ((0, "a dog"), (1, "a car"))]
    torch.testing.assert_close(both.images, torch.cat([r.images for r in alone]))
    assert both.targets == ["a dog", "a car"] and len(both.history) == 2 and len(both.step_seconds) == 2
    assert both.history[-1]["loss"] == [alone[0].history[-1]["loss"][0], alone[1].history[-1]["loss"][0]]
    assert sorted(both.snapshots) == [0, 2] and both.snapshots[2].shape[0] == 2
    joint = ed.edit([_img(0), _img(1)], "a cat", ["a dog", "a car"], steps=2, seed=4, batch_size=2)
    assert joint.images.shape == both.images.shape  # one joint batch when asked for


def test_batch_size_is_validated(cfg, models):
    ed = FlexIT(cfg, models=models)
    for bad in (0, -1, 1.5):
        with pytest.raises(InputError, match="batch_size"):
            ed.edit(_img(0), "a", "b", steps=1, batch_size=bad)


def test_device_defaults():
    assert fx.default_batch_size("cpu") == 1  # paper size, 288 px
    assert fx.default_batch_size("cpu", 64) is None and fx.default_batch_size("cuda") is None
    def amp(mode, device, size, **kw):
        return fx.resolve_autocast(FlexITConfig(autocast=mode, image_size=size, **kw), device)
    assert amp("auto", "cuda", 64) == "bf16"
    assert amp("off", "cuda", 288) == "off"
    assert amp("fp16", "cpu", 64) == "fp16"
    expected = fx.CPU_AUTO_AUTOCAST if fx.cpu_has_native_bf16() else "off"
    assert amp("auto", "cpu", 288) == expected
    assert amp("auto", "cpu", 64) == "off"  # no gain measured at small sizes


def test_auto_autocast_on_cpu_follows_native_bf16_and_size(monkeypatch, cfg, models):
    def amp(mode, size, **kw):
        return fx.resolve_autocast(FlexITConfig(autocast=mode, image_size=size, **kw), "cpu")
    monkeypatch.setattr(fx, "cpu_has_native_bf16", lambda: False)
    assert amp("auto", 288) == "off"
    monkeypatch.setattr(fx, "cpu_has_native_bf16", lambda: True)
    assert amp("auto", fx.CPU_AUTO_BF16_FROM_PX) == "bf16"
    assert amp("auto", fx.CPU_AUTO_BF16_FROM_PX - 16) == "off"
    assert amp("bf16", 64) == "bf16"  # an explicit choice is kept
    # exact comparisons are with the reference's fp32 loop, at any size
    assert amp("auto", 288, exact_reference=True, reference_noise=True, gpu_augment=False) == "off"
    # the editor follows it: a 64 px edit stays fp32, and so does an exact comparison at any size
    assert FlexIT(cfg, models=models)._amp_dtype is None
    exact = cfg.replace(image_size=fx.CPU_AUTO_BF16_FROM_PX, exact_reference=True, reference_noise=True,
                        gpu_augment=False)
    assert FlexIT(exact, models=models)._amp_dtype is None
