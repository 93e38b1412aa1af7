"""DeltaEdit inference: CLIP preprocessing, channel mask with the unnormalised dt, network
condition, masked delta, tRGB from W+, strengths, photo input, bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from editrt.config import DeltaEditConfig
from editrt.errors import EmptyEditWarning, InputError, WeightsError
from editrt.methods import stylespace as sc
from editrt.methods.stylespace.deltaedit import DeltaEdit, deltaedit_clip_input
from editrt.models.clip import load_clip
from editrt.models.delta_mapper import DeltaMapper, DeltaMapperConfig, load_delta_mapper
from editrt.models.stylegan2 import StyleGAN2


@pytest.fixture(scope="module")
def editor():
    G = StyleGAN2.load("tiny", random_init=True, seed=0)
    clip = load_clip("tiny", random_init=True, seed=0)
    fs3 = F.normalize(torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(3)), dim=1)
    return DeltaEdit(G, clip, DeltaEditConfig.preset("tiny"), random_init=True, fs3=fs3)


@pytest.mark.parametrize("src,dst,pool", [(64, 14, 32), (256, 224, 8), (32, 28, 8)])
def test_clip_input_equals_nearest_x7_then_avgpool(src, dst, pool):
    x = torch.rand(2, 3, src, src) * 2 - 1
    ref = F.avg_pool2d(F.interpolate(x, scale_factor=7, mode="nearest"), pool)
    assert ref.shape[-1] == dst
    torch.testing.assert_close(deltaedit_clip_input(x, dst), ref, atol=1e-5, rtol=1e-5)


def test_mask_uses_unnormalised_dt_and_network_gets_unit_dt(editor):
    dt, keep, norm = editor.text_condition("smiling face", threshold=0.01)
    raw = sc.text_direction(editor.clip, "smiling face", "face", normalize=False)
    assert norm == pytest.approx(float(raw.norm()))
    torch.testing.assert_close(dt, raw / raw.norm())
    torch.testing.assert_close(keep, (editor.fs3 @ raw).abs() >= 0.01)
    # with a unit dt the same threshold would keep more channels (|dt| < 1 for close prompts)
    assert norm < 1 and int(((editor.fs3 @ dt).abs() >= 0.01).sum()) >= int(keep.sum())


def test_edit_masks_delta_keeps_trgb_and_scales_with_strength(editor):
    code = editor.codes_from_seeds([1, 2])
    seen = {}
    mapper = editor.mapper
    hook = mapper.register_forward_hook(lambda m, args, out: seen.update(s=args[0], c=args[1], out=out))
    try:
        res = editor.edit(code, "smiling face", strength=[1.0, 2.0, 0.0])
    finally:
        hook.remove()
    dt, keep, _ = editor.text_condition("smiling face")
    # condition = [normalised CLIP image embedding of the source, unit dt]
    img_emb = editor.clip_image_embedding(editor.generator.synthesize(code))
    torch.testing.assert_close(seen["c"], torch.cat([img_emb, dt.expand(2, -1)], 1))
    torch.testing.assert_close(seen["s"], code.conv_view())
    torch.testing.assert_close(seen["c"][:, :editor.clip.embed_dim].norm(dim=1), torch.ones(2))
    delta = (res.codes[0].conv_view() - code.conv_view())
    assert torch.count_nonzero(delta[:, ~keep]) == 0
    torch.testing.assert_close(delta[:, keep], seen["out"][:, keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.codes[1].conv_view() - code.conv_view(), 2 * delta, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.images[:, 2], res.source)  # strength 0 = unedited
    for layer in editor.generator.layout.layers:
        if layer.kind == "torgb":
            torch.testing.assert_close(res.codes[0][layer.name], code[layer.name])
    assert res.channels_changed == int(keep.sum())
    assert res.images.shape == (2, 3, 3, 32, 32)


def test_photo_input_goes_through_e4e(editor):
    photo = torch.rand(3, 48, 48)
    res = editor.edit([photo, photo], "smiling face")
    assert res.images.shape == (2, 1, 3, 32, 32)
    torch.testing.assert_close(res.source[0], res.source[1])
    with pytest.raises(InputError):
        editor.edit(torch.rand(3, 40, 48), "smiling face")  # e4e needs square aligned crops


def test_bad_inputs(editor):
    code = editor.codes_from_seeds([0])
    with pytest.raises(InputError, match="zero"):
        editor.edit(code, "face")
    for strength in (float("nan"), 1e4):
        with pytest.raises(InputError):
            editor.edit(code, "smiling face", strength=strength)
    with pytest.raises(InputError):
        editor.edit(code, "smiling face", threshold=-1)
    with pytest.raises(InputError):
        DeltaEditConfig(threshold=float("nan"))


def test_empty_mask_warns_and_returns_the_source_unchanged(editor):
    # reference scripts/inference.py: improved_ds sets every masked entry of ds to 0, so with all
    # channels masked decoder_validate renders the source; no NaN anywhere
    code = editor.codes_from_seeds([0, 1])
    with pytest.warns(EmptyEditWarning, match="lower the threshold"):
        res = editor.edit(code, "smiling face", threshold=1.9, strength=[1.0, 3.0])
    assert res.channels_changed == 0
    assert res.images.shape[:2] == (2, 2) and torch.isfinite(res.images).all()
    for k in range(2):
        assert torch.equal(res.images[:, k], res.source)
        assert torch.equal(res.codes[k].conv_view(), code.conv_view())
    with torch.no_grad():  # a different batch size: equal up to round-off
        torch.testing.assert_close(res.source, editor.generator.synthesize(code), atol=1e-5, rtol=0)


def test_masked_channels_are_zero_even_where_the_mapper_gives_nan(editor):
    # ds[select] = 0 is an assignment: a non-finite mapper output on a masked channel is dropped
    code = editor.codes_from_seeds([0])
    _, keep, _ = editor.text_condition("smiling face", threshold=0.01)
    assert keep.any() and not keep.all()
    hook = editor.mapper.register_forward_hook(
        lambda m, args, out: out.masked_fill(~keep, float("nan")))
    try:
        res = editor.edit(code, "smiling face", threshold=0.01)
    finally:
        hook.remove()
    assert torch.isfinite(res.images).all() and res.channels_changed == int(keep.sum())


def test_mapper_of_another_generator_is_rejected(editor):
    other = DeltaMapper(DeltaMapperConfig(2, 64, 2, 64, 96, 128))
    with pytest.raises(WeightsError, match="another generator"):
        DeltaEdit(editor.generator, editor.clip, DeltaEditConfig.preset("tiny"), mapper=other, fs3=editor.fs3)
    with pytest.raises(WeightsError):  # no net_face.pth in the isolated store
        load_delta_mapper("ffhq")
