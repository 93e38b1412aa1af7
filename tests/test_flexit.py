"""FlexIT against the reference formulas (FlexIT src/flexit_editer.py, FlexitEditer.step), on tiny seeded networks."""

import math

import pytest
import torch
import torch.nn.functional as F

from editrt.config import FlexITConfig
from editrt.errors import InputError, NumericalError
from editrt.methods import augment
from editrt.methods.flexit import FlexIT, FlexITState

# Views that are the identity (no rotation, full crop, no flip): the loss becomes deterministic
# and can be re-derived by hand.
FIXED_VIEWS = dict(rotation_degrees=0.0, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False)


def _img(seed, size=64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, size, size, generator=g)


@pytest.fixture
def editor(tiny_models):
    return FlexIT(FlexITConfig.preset("tiny").replace(**FIXED_VIEWS), models=tiny_models)


def _ref_soft_clamp(x, beta=5):
    x = 2 * x - 1
    x = torch.tanh(x ** beta)
    x = torch.relu(x) ** (1 / beta) - torch.relu(-x) ** (1 / beta)
    return (x + 1) / 2


def test_target_point(editor, tiny_models):
    cfg = editor.config
    state = editor.prepare(_img(0), "a cat", "a dog")
    net = tiny_models["clip"].nets[0]
    e_s, e_t = net.embed_text(["a cat"]), net.embed_text(["a dog"])
    e_i = net.embed_image(_img(0)[None])
    expected = cfg.target_coef * e_t + cfg.image_coef * e_i - cfg.source_coef * e_s
    assert torch.allclose(state.targets.points[0], expected, atol=1e-6)
    assert not torch.allclose(expected.norm(dim=-1), torch.ones(1))  # not renormalised


def test_one_step_equals_reference_formulas(editor, tiny_models):
    """One step from a given latent, re-derived with the reference's own expressions."""
    cfg = editor.config
    state = editor.prepare(_img(1), "red circle", "blue circle")
    tg = state.targets
    g = torch.Generator().manual_seed(5)
    z = tg.z0 + 0.05 * torch.randn(tg.z0.shape, generator=g)
    out = editor.step(FlexITState(targets=tg, z=z, step=3, generator=torch.Generator().manual_seed(0)))

    vq, lp, net = tiny_models["vqgan"], tiny_models["lpips"], tiny_models["clip"].nets[0]
    zr = z.clone().requires_grad_(True)
    dec = _ref_soft_clamp((vq.decoder(vq.post_quant_conv(zr)) + 1) / 2)
    loss_z = (zr - tg.z0).pow(2).sum(1).sqrt().sum() / tg.z0.pow(2).sum(1).sqrt().sum()
    loss_lpips = lp(dec, tg.image0).mean()
    views = net.normalize(dec).repeat(cfg.n_augment, 1, 1, 1)
    pred = F.normalize(net.encode_image(views), dim=-1).mean(0, keepdim=True)
    loss_clip = -(pred @ tg.points[0].T).mean()
    signal = loss_clip + cfg.lpips_weight * loss_lpips + cfg.latent_weight * loss_z
    signal.backward()
    grad = zr.grad[0] / zr.grad[0].norm(p=2)
    z_next = zr.detach() - cfg.lr * grad * tg.z0.norm().item()

    assert out.step == 4
    assert math.isclose(out.metrics["loss"].item(), signal.item(), rel_tol=1e-5)
    assert math.isclose(out.metrics["latent"].item(), loss_z.item(), rel_tol=1e-5)
    assert math.isclose(out.metrics["lpips"].item(), loss_lpips.item(), rel_tol=1e-5)
    assert math.isclose(out.metrics["clip"].item(), loss_clip.item(), rel_tol=1e-5)
    assert torch.allclose(out.grad[0], grad, atol=1e-5)
    assert torch.allclose(out.z, z_next[None], atol=1e-5 * tg.z0.norm().item())
    # the step length is lr * ||z0||_F
    assert math.isclose((out.z - z).norm().item(), cfg.lr * tg.z0.norm().item(), rel_tol=1e-4)


def test_first_step_from_z0_is_finite(editor):
    """The reference's l2,1 form has a NaN gradient at z = z0; ours is zero-safe."""
    state = editor.prepare(_img(2), "a", "b")
    out = editor.step(state)
    assert out.metrics["latent"].item() == 0.0
    assert torch.isfinite(out.grad).all() and torch.isfinite(out.z).all()


def test_reference_noise_is_seeded(tiny_models):
    cfg = FlexITConfig.preset("tiny").replace(reference_noise=True, **FIXED_VIEWS)
    ed = FlexIT(cfg, models=tiny_models)
    a = ed.edit(_img(3), "a", "b", steps=2, seed=4).images
    b = ed.edit(_img(3), "a", "b", steps=2, seed=4).images
    assert torch.equal(a, b)
    plain = FlexIT(cfg.replace(reference_noise=False), models=tiny_models).edit(_img(3), "a", "b", steps=2).images
    # At z = z0 the noise turns the l2,1 gradient into a random unit vector per position (the
    # zero-safe gradient is 0 there): a small but visible difference after the first step.
    diff = (a - plain).abs()
    assert 0 < diff.max() < 0.05 and diff.mean() < 5e-3


def test_batch_equals_separate_edits(editor):
    imgs = [_img(10), _img(11)]
    batch = editor.edit(imgs, ["red", "green"], ["blue", "yellow"], steps=2)
    one = editor.edit(imgs[0], "red", "blue", steps=2)
    two = editor.edit(imgs[1], "green", "yellow", steps=2)
    # fp32 batched convolutions reorder sums: 1e-6 differences, amplified over steps to ~3e-4
    assert torch.allclose(batch.images[0], one.images[0], atol=2e-3)
    assert torch.allclose(batch.images[1], two.images[0], atol=2e-3)
    for k in ("loss", "clip", "lpips", "latent"):
        assert batch.history[-1][k][0] == pytest.approx(one.history[-1][k][0], rel=1e-4, abs=1e-6)
        assert batch.history[-1][k][1] == pytest.approx(two.history[-1][k][0], rel=1e-4, abs=1e-6)
    assert len(batch.history[0]["loss"]) == 2


def test_loss_goes_down(tiny_models):
    cfg = FlexITConfig.preset("tiny").replace(lr=0.01, **FIXED_VIEWS)
    res = FlexIT(cfg, models=tiny_models).edit(_img(12), "red circle", "blue circle", steps=6)
    losses = [h["loss"][0] for h in res.history]
    assert losses[-1] < losses[0]


def test_deterministic_with_random_views_and_snapshots(tiny_models):
    ed = FlexIT(FlexITConfig.preset("tiny"), models=tiny_models)
    a = ed.edit(_img(13), "x", "y", steps=3, seed=7, snapshots=(0, 1, 3))
    b = ed.edit(_img(13), "x", "y", steps=3, seed=7, snapshots=(0, 1, 3))
    c = ed.edit(_img(13), "x", "y", steps=3, seed=8)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert sorted(a.snapshots) == [0, 1, 3]
    assert torch.equal(a.snapshots[3], a.images)
    assert len(a.history) == 3 and set(a.history[0]) == {"loss", "clip", "lpips", "latent", "sim_source", "sim_target"}
    assert len(a.step_seconds) == 3 and a.report()["steps"] == 3


def test_callback_stops_early(editor):
    seen = []
    res = editor.edit(_img(14), "x", "y", steps=10, callback=lambda s: seen.append(s.step) or s.step >= 2)
    assert seen == [1, 2] and len(res.history) == 2


def test_non_finite_loss_raises(tiny_models, monkeypatch):
    ed = FlexIT(FlexITConfig.preset("tiny"), models=tiny_models)
    monkeypatch.setattr(ed.vqgan, "decode_clamped", lambda z: torch.full((z.shape[0], 3, 64, 64), float("nan")))
    with pytest.raises(NumericalError, match="non-finite"):
        ed.edit(_img(15), "x", "y", steps=1)


@pytest.mark.parametrize("src,tgt,match", [("", "dog", "empty"), ("cat", " ", "empty"),
                                          (["a", "b", "c"], "dog", "3 source texts"),
                                          ("cat", "dog " * 80, "too long")])
def test_bad_prompts(editor, src, tgt, match):
    with pytest.raises(InputError, match=match):
        editor.edit([_img(0), _img(1)], src, tgt, steps=1)


def test_bad_steps_and_backend(editor, tiny_models):
    with pytest.raises(InputError, match="steps"):
        editor.edit(_img(0), "a", "b", steps=-1)
    with pytest.raises(InputError, match="backend"):
        FlexIT(FlexITConfig.preset("tiny"), models=tiny_models, backend="tvm")


def test_input_is_resized_and_center_cropped(editor):
    x = torch.rand(3, 100, 160)
    out = editor.load_images(x)
    assert out.shape == (1, 3, 64, 64)


# -- augmentations --------------------------------------------------------------------------------

def test_augment_parameter_ranges():
    p = augment.sample_params(4000, 288, 288, degrees=10, scale=(0.8, 1.0), ratio=(0.9, 1.1), hflip=True,
                              generator=torch.Generator().manual_seed(0))
    assert p.angle.abs().max() <= 10 and p.angle.min() < -9.5 and p.angle.max() > 9.5
    i, j, h, w = p.box.unbind(1)
    area = h * w / 288 ** 2
    assert area.min() >= 0.8 - 0.01 and area.max() <= 1.0
    assert (h / w).min() >= 1 / 1.1 - 0.02 and (w / h).min() >= 1 / 1.1 - 0.02  # integer rounding
    assert (i >= 0).all() and (j >= 0).all() and (i + h <= 288).all() and (j + w <= 288).all()
    assert 0.45 < p.flip.float().mean() < 0.55


def test_batched_warp_matches_torchvision_ops():
    import torchvision.transforms.v2.functional as TF

    yy, xx = torch.meshgrid(torch.linspace(0, 1, 96), torch.linspace(0, 1, 96), indexing="ij")
    img = torch.stack([torch.sin(6 * xx) * 0.5 + 0.5, torch.cos(4 * yy) * 0.5 + 0.5, xx * yy])[None]
    for angle, box, flip in [(30.0, (10, 5, 70, 80), False), (-8.0, (0, 0, 96, 96), True)]:
        ref = TF.rotate(img, angle, interpolation=TF.InterpolationMode.BILINEAR)
        ref = TF.resized_crop(ref, *box, [48, 48], antialias=False)
        ref = TF.horizontal_flip(ref) if flip else ref
        p = augment.AugmentParams(torch.tensor([angle]), torch.tensor([box], dtype=torch.float), torch.tensor([flip]))
        theta = augment.affine_matrices(p, 96, 96).float()
        out = F.grid_sample(img, F.affine_grid(theta, [1, 3, 48, 48], align_corners=False), align_corners=False)
        inside = (ref > 0).all(1, keepdim=True) & (out > 0).all(1, keepdim=True)
        assert ((out - ref).abs() * inside).mean() < 2e-3


def test_both_view_paths_have_the_same_contract():
    x = torch.rand(2, 3, 80, 80)
    kw = dict(degrees=10, scale=(0.8, 1.0), ratio=(0.9, 1.1), hflip=True)
    a = augment.batched_views(x, 3, 64, generator=torch.Generator().manual_seed(0), **kw)
    b = augment.reference_views(x, 3, 64, generator=torch.Generator().manual_seed(0), **kw)
    assert a.shape == b.shape == (6, 3, 64, 64)
    # view k of image b sits at b * n + k: views of image 0 resemble image 0 more than image 1
    d_same = (a[:3] - x[0:1, :, 8:72, 8:72]).abs().mean()
    assert torch.isfinite(d_same)


# -- speed switches keep results within tolerance of the plain fp32 loop --------------------------

# (max |pixel diff|, mean |pixel diff|) after 2 steps: fp32 reorderings amplify to ~2e-4;
# bf16 autocast on random tiny nets moves pixels by ~1e-2 on average.
@pytest.mark.parametrize("change,tol", [({"use_kernels": False}, (2e-3, 1e-4)),
                                        ({"autocast": "bf16"}, (0.3, 0.02)),
                                        ({"channels_last": "on"}, (2e-3, 1e-4))])
def test_speed_switches_stay_close_to_plain_loop(tiny_models, change, tol):
    base = FlexITConfig.preset("tiny").replace(**FIXED_VIEWS, autocast="off", channels_last="off")
    ref = FlexIT(base, models=tiny_models).edit(_img(20), "red", "blue", steps=2)
    got = FlexIT(base.replace(**change), models=tiny_models).edit(_img(20), "red", "blue", steps=2)
    for m in tiny_models.values():  # channels_last is applied in place to the shared models
        m.to(memory_format=torch.contiguous_format)
    diff = (got.images - ref.images).abs()
    assert diff.max() < tol[0] and diff.mean() < tol[1]
    assert got.history[-1]["loss"][0] == pytest.approx(ref.history[-1]["loss"][0], abs=10 * tol[1])


def test_a_uniform_output_from_a_real_input_is_refused(editor, monkeypatch):
    """A diverged optimisation decodes to one flat colour: the API refuses it as the CLI does,
    naming the image; a flat input (nothing to diverge from) or zero steps pass."""
    flat = lambda z: torch.full((z.shape[0], 3, 64, 64), 0.5)  # noqa: E731
    with monkeypatch.context() as m:
        m.setattr(editor, "decode", flat)
        with pytest.raises(NumericalError, match="edited image 0 is a uniform image"):
            editor.edit([_img(1), _img(2)], "a", "b", steps=1, batch_size=2)
        assert editor.edit(torch.full((3, 64, 64), 0.3), "a", "b", steps=1).images.std() == 0
        assert editor.edit(_img(1), "a", "b", steps=0).images.std() == 0
    assert editor.edit(_img(1), "a", "b", steps=1).images.std() > 0


@pytest.mark.parametrize("per_network", [True, False], ids=["per-network backward", "joint backward"])
def test_cpu_autocast_keeps_vit_towers_in_fp32(tiny_models, monkeypatch, per_network):
    """bf16 autocast on CPU runs the ViT CLIP towers in fp32 (bf16 made them slower on CPU);
    the rest of the loss stays under autocast, and the step gives a finite update."""
    from editrt.methods.flexit import cpu_keeps_fp32

    ed = FlexIT(FlexITConfig.preset("tiny").replace(autocast="bf16", channels_last="off"), models=tiny_models)
    ed.per_network_backward = per_network
    net = ed.clip.nets[0]
    assert cpu_keeps_fp32(net) and id(net) in ed._fp32_towers  # the tiny tower is a ViT
    seen = []
    encode = net.encode_image

    def spy(views):
        seen.append((views.dtype, torch.is_autocast_enabled("cpu")))
        return encode(views)
    monkeypatch.setattr(net, "encode_image", spy)
    decoded = []
    decode = ed.vqgan.decode_clamped
    monkeypatch.setattr(ed.vqgan, "decode_clamped", lambda z: decoded.append(torch.is_autocast_enabled("cpu"))
                        or decode(z))
    state = ed.step(ed.prepare(_img(0), "a cat", "a dog"))
    assert seen and all(s == (torch.float32, False) for s in seen)
    assert decoded == [True] and torch.isfinite(state.z).all()


def test_resnet_batchnorm_folded_only_in_nets_flexit_loads(small_resnet_clip_config, tiny_models):
    cfg = FlexITConfig.preset("tiny").replace(clip_models=(small_resnet_clip_config,))
    has_bn = lambda ed: any(isinstance(m, torch.nn.BatchNorm2d) for m in ed.clip.modules())  # noqa: E731
    handed = {"vqgan": tiny_models["vqgan"], "lpips": tiny_models["lpips"]}
    assert not has_bn(FlexIT(cfg, random_init=True, models=handed))
    exact = cfg.replace(exact_reference=True, reference_noise=True, gpu_augment=False)
    assert has_bn(FlexIT(exact, random_init=True, models=handed))  # bit for bit with the reference
    from editrt.models.clip import load_ensemble

    own = load_ensemble([small_resnet_clip_config], random_init=True)
    assert has_bn(FlexIT(cfg, models={**handed, "clip": own}))  # the caller's net keeps its layout
