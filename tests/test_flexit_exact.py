"""FlexIT's exact-comparison modes: the reference's noise on z - z0, its global-RNG views, its
ncuts=0 path, and trajectories equal bit for bit to the reference loop of
scripts/make_goldens_flexit.py (stored in tests/golden/flexit_reference_tiny.pt)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torchvision.transforms as T

from editrt import ops
from editrt.config import FlexITConfig
from editrt.errors import InputError
from editrt.methods.flexit import FlexIT

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_goldens_flexit", ROOT / "scripts" / "make_goldens_flexit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MG = _script()


@pytest.fixture(scope="module")
def models():
    return MG.tiny_models()


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(MG.THREADS)
    yield
    torch.set_num_threads(n)


def _exact_config(n_augment: int, **kw) -> FlexITConfig:
    c = MG.COEFS
    fields = dict(clip_models=("tiny", "tiny"), image_size=MG.IMAGE_SIZE, n_augment=n_augment, steps=MG.STEPS,
                  lr=c["lr"], lpips_weight=c["lpips_weight"], latent_weight=c["znorm_weight"],
                  image_coef=c["im0_coef"], source_coef=c["source_coef"], target_coef=c["target_coef"],
                  reference_noise=True, exact_reference=True, gpu_augment=False)
    return FlexITConfig.preset("tiny").replace(**{**fields, **kw})


def _trajectory(editor: FlexIT, steps: int, seed) -> dict:
    state = editor.prepare(MG.source_image(), MG.TEXTS[0], MG.TEXTS[1], seed=seed)
    zs, logs = [state.z.clone()], []
    for _ in range(steps):
        state = editor.step(state)
        zs.append(state.z.clone())
        logs.append(state.metrics)
    names = {"loss": "loss", "loss_z": "latent", "loss_clip": "clip", "loss_lpips": "lpips",
             "sim_source": "sim_source", "sim_target": "sim_target"}
    return {"z": torch.stack(zs),
            **{ref: torch.tensor([m[ours].item() for m in logs], dtype=torch.float64) for ref, ours in names.items()}}


@pytest.mark.parametrize("case", sorted(MG.CASES))
def test_exact_mode_reproduces_the_reference_trajectory_bit_for_bit(case, models, one_thread):
    got = _trajectory(FlexIT(_exact_config(MG.CASES[case]), models=models), MG.STEPS, MG.SEED)
    golden = torch.load(MG.GOLDEN, weights_only=True)
    if golden["environment"] == MG.environment():
        expected = golden[case]
    else:  # other CPU kernels round differently: re-record the reference loop here, compare exactly
        expected = MG.record(models, MG.CASES[case])
        # the stored run is still the same trajectory (last-bit differences grow over the steps)
        torch.testing.assert_close(expected["z"], golden[case]["z"], atol=1e-3, rtol=1e-3)
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(got[key], expected[key]), (key, (got[key] - expected[key]).abs().max())
    assert not torch.equal(got["z"][-1], got["z"][0])  # the trajectory moved


def test_reference_noise_is_added_to_the_difference(models, one_thread):
    """At z = z0 the reference's latent term is l1l2(noise) / l1l2(z0); adding the noise to z
    instead rounds it to z's ulp (the old behaviour, a visibly different value)."""
    cfg = FlexITConfig.preset("tiny").replace(clip_models=("tiny", "tiny"), reference_noise=True, n_augment=1)
    editor = FlexIT(cfg, models=models)
    state = editor.prepare(MG.source_image().resize((64, 64)), "a", "b", seed=5)
    z0 = state.targets.z0
    noise = 1e-6 * torch.randn(tuple(z0.shape), generator=torch.Generator().manual_seed(5))
    out = editor.step(state)

    def l1l2(x):
        return x.pow(2).sum(1).sqrt().sum()

    assert out.metrics["latent"].item() == (l1l2(noise) / l1l2(z0)).item()
    rounded = (ops.l21_norm(z0 + noise, z0) / ops.l21_norm(z0, torch.zeros_like(z0))).item()
    assert rounded != out.metrics["latent"].item()


def _replay_reference_draws(seed: int, z_shape, n_nets: int, n_views: int, image: torch.Tensor, size: int):
    """The global-RNG draws of one FlexitEditer.step, in its order, made directly."""
    torch.manual_seed(seed)
    torch.randn(z_shape)  # the noise
    rot = T.RandomRotation(10)
    for _ in range(n_nets):
        for _ in range(n_views):
            T.RandomRotation.get_params(rot.degrees)
            T.RandomResizedCrop.get_params(image, scale=(0.8, 1.0), ratio=(0.9, 1.1))
            torch.rand(1)  # flip
    return torch.rand(4)


def test_exact_mode_consumes_the_global_rng_in_the_reference_order(models, one_thread):
    editor = FlexIT(_exact_config(2, steps=1), models=models)
    res = editor.edit(MG.source_image(), MG.TEXTS[0], MG.TEXTS[1], seed=11)
    after = torch.rand(4)
    z_shape = (1, 32, MG.IMAGE_SIZE // 8, MG.IMAGE_SIZE // 8)
    expected = _replay_reference_draws(11, z_shape, 2, 2, torch.zeros(3, MG.IMAGE_SIZE, MG.IMAGE_SIZE), 64)
    assert torch.equal(after, expected)
    # seed=None continues from the caller's global state: the same as seeding through edit()
    torch.manual_seed(11)
    again = editor.edit(MG.source_image(), MG.TEXTS[0], MG.TEXTS[1], seed=None)
    assert torch.equal(again.images, res.images)


def test_no_augmentation_is_resize_and_centre_crop(models, one_thread):
    """n_augment=0 is the reference's ncuts=0: each net sees test_prep of the decode, nothing random."""
    cfg = FlexITConfig.preset("tiny").replace(clip_models=("tiny", "tiny"), image_size=MG.IMAGE_SIZE, n_augment=0)
    editor = FlexIT(cfg, models=models)
    state = editor.prepare(MG.source_image(), "a red circle", "a blue square", seed=0)
    out = editor.step(state)
    image = models["vqgan"].decode_clamped(state.z)
    terms = [(net.embed_image(image) * p).sum(-1) for net, p in zip(models["clip"], state.targets.points)]
    torch.testing.assert_close(out.metrics["clip"], -torch.stack(terms).mean(0), atol=1e-6, rtol=1e-6)
    a = editor.edit(MG.source_image(), "a", "b", steps=2, seed=1).images
    b = editor.edit(MG.source_image(), "a", "b", steps=2, seed=2).images
    assert torch.equal(a, b)  # no noise, no views: the seed does not matter


def test_exact_mode_bad_settings_are_named(models):
    with pytest.raises(InputError, match="reference_noise=True"):
        FlexITConfig(exact_reference=True, gpu_augment=False)
    with pytest.raises(InputError, match="gpu_augment=False"):
        FlexITConfig(exact_reference=True, reference_noise=True)
    with pytest.raises(InputError, match="n_augment"):
        FlexITConfig(n_augment=-1)
    editor = FlexIT(_exact_config(0), models=models)
    with pytest.raises(InputError, match="one at a time"):
        editor.prepare([MG.source_image(), MG.source_image()], "a", "b")
    with pytest.raises(InputError, match="backend='torch'"):
        FlexIT(_exact_config(0), models=models, backend="onnxruntime")
