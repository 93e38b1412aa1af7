"""StyleCLIP global directions: GetDt, GetBoundary, SplitS, automatic beta, statistics,
relevance precompute (and resume), and the edit itself, on the tiny generator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from editrt.config import GlobalDirectionConfig
from editrt.errors import InputError, WeightsError
from editrt.methods import stylespace as sc
from editrt.methods.stylespace.global_direction import GlobalDirection
from editrt.methods.stylespace.provenance import load_tensors
from editrt.models.clip import load_clip
from editrt.models.stylegan2 import StyleGAN2, StyleGAN2Config


class FakeClip:
    """Text tower whose embedding of a prompt is fixed by the words it contains."""

    name = "fake"

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = vectors
        self.prompts: list[str] = []

    def tokenize(self, prompts):  # ids index every prompt tokenized so far
        start = len(self.prompts)
        self.prompts += list(prompts)
        return torch.arange(start, len(self.prompts))

    def encode_text(self, tokens):
        out = []
        for i in tokens.tolist():
            words = self.prompts[i].replace(".", " ").split()
            word = next(w for w in self.vectors if w in words)
            out.append(torch.tensor(self.vectors[word]))
        return torch.stack(out)


@pytest.fixture(scope="module")
def tiny():
    G = StyleGAN2.load("tiny", random_init=True, seed=0)
    clip = load_clip("tiny", random_init=True, seed=0)
    stats = sc.compute_channel_stats(G, n=256)
    return G, clip, stats


def test_templates_are_the_reference_79():
    t = sc.IMAGENET_TEMPLATES
    assert len(t) == 79 and len(set(t)) == 79
    assert "a photo of many {}." not in t
    assert t[0] == "a bad photo of a {}." and t[-1] == "a tattoo of the {}."
    assert all(x.count("{}") == 1 for x in t)


def test_get_dt_hand_checked():
    # every 'smiling' prompt embeds to (3, 0, 0), every other to (0, 2, 0) -> unit class vectors
    clip = FakeClip({"smiling": [3.0, 0.0, 0.0], "face": [0.0, 2.0, 0.0]})
    dt = sc.text_direction(clip, "smiling", "face")
    torch.testing.assert_close(dt, torch.tensor([1.0, -1.0, 0.0]) / math.sqrt(2))
    raw = sc.text_direction(clip, "smiling", "face", normalize=False)  # DeltaEdit's GetDt
    torch.testing.assert_close(raw, torch.tensor([1.0, -1.0, 0.0]))
    assert len(clip.prompts) == 2 * 79


def test_template_embeddings_match_reference_loop(tiny):
    _, clip, _ = tiny
    got = sc.template_embeddings(clip, ["smiling face", "face"])
    for i, name in enumerate(["smiling face", "face"]):
        e = clip.encode_text(clip.tokenize([t.format(name) for t in sc.IMAGENET_TEMPLATES])).float()
        e = e / e.norm(dim=-1, keepdim=True)
        m = e.mean(0)
        torch.testing.assert_close(got[i], m / m.norm(), atol=1e-5, rtol=1e-5)


def test_zero_direction_is_an_error(tiny):
    _, clip, _ = tiny
    with pytest.raises(InputError, match="equals the neutral"):
        sc.text_direction(clip, "face", " face ")
    same = FakeClip({"cat": [1.0, 0.0], "dog": [2.0, 0.0]})
    with pytest.raises(InputError, match="same CLIP embedding"):
        sc.text_direction(same, "cat", "dog")
    with pytest.raises(InputError):
        sc.text_direction(clip, "", "face")


def test_get_boundary_hand_checked():
    fs3 = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]])
    dt = torch.tensor([1.0, 0.0])
    d, n = sc.boundary(fs3, dt, 0.5)
    torch.testing.assert_close(d, torch.tensor([1.0, 0.6, 0.0, -0.8]))
    assert n == 3
    d, n = sc.boundary(fs3, torch.tensor([0.0, 0.5]), 0.35)  # r = (0, .4, .5, .3) -> /0.5
    torch.testing.assert_close(d, torch.tensor([0.0, 0.8, 1.0, 0.0]))
    assert n == 2
    with pytest.raises(InputError, match="no channel"):
        sc.boundary(fs3, dt, 1.01)
    with pytest.raises(InputError, match="another CLIP"):
        sc.boundary(fs3, torch.ones(3), 0.1)


def test_auto_beta_hand_checked():
    r = torch.tensor([0.25, 0.185, 0.125, 0.05])
    fs3 = torch.stack([r, (1 - r ** 2).sqrt()], 1)
    dt = torch.tensor([1.0, 0.0])
    # betas 0.10..0.29: > 2 channels kept up to 0.12, > 1 up to 0.18, > 0 up to 0.25
    assert sc.auto_beta(fs3, dt, min_channels=2) == pytest.approx(0.12)
    assert sc.auto_beta(fs3, dt, min_channels=1) == pytest.approx(0.18)
    assert sc.auto_beta(fs3, dt, min_channels=0) == pytest.approx(0.25)
    assert sc.auto_beta(fs3, dt, min_channels=5, fallback=0.1) == 0.1


def test_split_s_hand_checked(tiny):
    G, _, stats = tiny
    layout = G.layout
    delta = torch.arange(layout.conv_total, dtype=torch.float32) / layout.conv_total
    ds = sc.split_delta(delta, stats.std)
    assert ds.batch_size == 1
    start = 0
    for layer, t in zip(layout.layers, ds.styles):
        if layer.kind == "torgb":
            assert torch.count_nonzero(t) == 0
        else:
            chunk = delta[start:start + layer.channels]
            torch.testing.assert_close(t[0], chunk * stats.std[layer.name][0])
            start += layer.channels
    assert start == layout.conv_total


def test_channel_stats_match_direct_computation_and_round_trip(tiny, tmp_path):
    G, _, stats = tiny
    z = torch.from_numpy(np.random.RandomState(5).randn(256, G.style_dim)).float()
    s = G.styles_from_w(G.mapping(z, psi=0.7, cutoff=8)).flat().double()
    torch.testing.assert_close(stats.mean.flat()[0].double(), s.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stats.std.flat()[0].double(), s.std(0, correction=0), atol=1e-4, rtol=1e-4)
    assert stats.provenance["seed"] == 5 and stats.provenance["psi"] == 0.7

    path = stats.save(tmp_path / "stats.safetensors")
    back = sc.ChannelStats.load(path, G)
    torch.testing.assert_close(back.std.flat(), stats.std.flat())
    other = StyleGAN2.random(StyleGAN2Config(size=64, style_dim=64, n_mlp=2, channel_base=512, channel_max=64))
    with pytest.raises(WeightsError, match="another generator"):
        sc.ChannelStats.load(path, other)


def test_get_fs_hand_checked():
    # one channel, two images: (+) - (-) of unit features, normalised, averaged, normalised
    minus = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    plus = torch.tensor([[0.0, 5.0], [0.0, 1.0]])
    feats = torch.stack([minus, plus], dim=1)[None]  # [1, 2, 2, 2]
    d1 = torch.tensor([-1.0, 1.0]) / math.sqrt(2)
    d2 = torch.tensor([0.0, 0.0])  # identical unit features -> zero difference
    expect = F.normalize((d1 + d2) / 2, dim=0)
    torch.testing.assert_close(sc.get_fs(feats)[0], expect)


def _direct_row(G, clip, stats, c, n_images, sigma=5.0):
    z = torch.from_numpy(np.random.RandomState(5).randn(n_images, G.style_dim)).float()
    base = G.styles_from_w(G.mapping(z, psi=0.7, cutoff=8))
    feats = []
    for sign in (-1.0, 1.0):
        conv = base.conv_view().clone()
        conv[:, c] = stats.mean.conv_view()[0, c] + sign * sigma * stats.std.conv_view()[0, c]
        feats.append(sc.clip_features_of_generated(clip, G.synthesize(base.with_conv_view(conv))))
    return sc.get_fs(torch.stack(feats, dim=1)[None])[0]


def test_relevance_precompute_and_resume(tiny, tmp_path):
    G, clip, stats = tiny
    full = sc.compute_relevance(G, clip, stats, n_images=1, batch_size=256, progress=False)
    assert full.shape == (G.layout.conv_total, clip.embed_dim)
    torch.testing.assert_close(full.norm(dim=1), torch.ones(len(full)), atol=1e-5, rtol=0)
    with torch.no_grad():
        for c in (0, 77, G.layout.conv_total - 1):
            # batched vs one-by-one synthesis differ by float rounding, which the normalised
            # difference of two close CLIP features amplifies a little
            assert float(full[c] @ _direct_row(G, clip, stats, c, 1)) > 0.9999

    ckpt = tmp_path / "fs3.safetensors"
    with pytest.raises(InputError, match="resume"):
        sc.compute_relevance(G, clip, stats, n_images=1, batch_size=64, checkpoint=ckpt, progress=False,
                             stop_after=100, checkpoint_every_s=0)
    partial, meta = load_tensors(ckpt, "x")
    assert int(partial["done"].sum()) == 100 and meta["complete"] is False
    with pytest.raises(WeightsError, match="unfinished"):
        sc.load_fs3(ckpt, G.layout.conv_total, clip.embed_dim)
    with pytest.raises(InputError, match="other settings"):
        sc.compute_relevance(G, clip, stats, n_images=2, checkpoint=ckpt, progress=False)
    resumed = sc.compute_relevance(G, clip, stats, n_images=1, batch_size=256, checkpoint=ckpt, progress=False)
    torch.testing.assert_close(resumed, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sc.load_fs3(ckpt, G.layout.conv_total, clip.embed_dim), full)


def test_load_fs3_npy_and_shape_mismatch(tmp_path):
    good = F.normalize(torch.randn(336, 64), dim=1)
    np.save(tmp_path / "fs3.npy", good.numpy())
    torch.testing.assert_close(sc.load_fs3(tmp_path / "fs3.npy", 336, 64), good)
    np.save(tmp_path / "ffhq.npy", np.zeros((6048, 512), np.float32))
    with pytest.raises(WeightsError, match=r"\(6048, 512\).*336 conv style channels"):
        sc.load_fs3(tmp_path / "ffhq.npy", 336, 64)
    with pytest.raises(WeightsError):
        sc.load_fs3(tmp_path / "missing.npy", 336, 64)


@pytest.fixture(scope="module")
def editor(tiny):
    G, clip, stats = tiny
    fs3 = F.normalize(torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(1)), dim=1)
    return GlobalDirection(G, clip, GlobalDirectionConfig.preset("tiny"), fs3=fs3, stats=stats)


def test_edit_applies_alpha_times_delta(editor):
    code = editor.codes_from_seeds([1, 2, 3])
    res = editor.edit(code, "smiling face", "face", alpha=[0.0, 1.5, -3.0], beta=0.05)
    assert res.images.shape == (3, 3, 3, 32, 32) and res.source.shape == (3, 3, 32, 32)
    ds, num_c, beta, dt = editor.style_delta("smiling face", "face", beta=0.05)
    assert res.channels_changed == num_c > 0 and beta == 0.05
    for k, a in enumerate(res.strengths):
        torch.testing.assert_close(res.codes[k].flat(), code.flat() + a * ds.flat())
    torch.testing.assert_close(res.images[:, 0], res.source)  # alpha 0 = unedited
    torch.testing.assert_close(res.source, editor.generator.synthesize(code))
    assert (res.images[:, 1] - res.source).abs().mean() > 1e-4
    # tRGB styles are never edited
    for layer in editor.generator.layout.layers:
        if layer.kind == "torgb":
            torch.testing.assert_close(res.codes[2][layer.name], code[layer.name])
    assert res.to_uint8().shape == (3, 3, 32, 32, 3)


def test_edit_inputs_w_and_auto_beta(editor):
    w = editor.generator.mapping(torch.randn(3, editor.generator.style_dim))  # W batch of 3, not an image
    res = editor.edit(w, "smiling face", beta="auto")
    auto = sc.auto_beta(editor.fs3, editor.direction("smiling face"), min_channels=4)
    assert res.extras["beta"] == pytest.approx(auto)
    assert res.images.shape == (3, 1, 3, 32, 32)
    res_plus = editor.edit(editor.generator.to_wplus(w), "smiling face", beta="auto")
    torch.testing.assert_close(res_plus.images, res.images)


def test_bad_alpha_beta_and_prompts(editor):
    code = editor.codes_from_seeds([0])
    for alpha in (float("nan"), 1e3, [], "x"):
        with pytest.raises(InputError):
            editor.edit(code, "smiling face", alpha=alpha)
    for beta in (-0.1, 1.0, float("inf"), "sometimes"):
        with pytest.raises(InputError):
            editor.edit(code, "smiling face", beta=beta)
    with pytest.raises(InputError, match="zero"):
        editor.edit(code, "face", "face")
    with pytest.raises(InputError):
        GlobalDirectionConfig(alpha=100.0)
    with pytest.raises(InputError):
        GlobalDirectionConfig(beta=2.0)


def test_missing_fs3_for_real_weights_is_a_clear_error(tiny):
    G, clip, stats = tiny
    gd = GlobalDirection(G, clip, GlobalDirectionConfig.preset("tiny"), stats=stats)
    with pytest.raises(WeightsError, match="editrt relevance"):
        gd.fs3
    with pytest.raises(WeightsError, match="another generator"):
        GlobalDirection(G, clip, GlobalDirectionConfig.preset("tiny"), stats=stats,
                        fs3=torch.zeros(6048, 512)).fs3


def test_result_save_writes_grid_and_metadata(editor, tmp_path):
    res = editor.edit(editor.codes_from_seeds([4, 5]), "smiling face", alpha=[1.0, 2.0])
    out = res.save(tmp_path / "grid.png")
    from PIL import Image

    assert Image.open(out).size == (3 * 32, 2 * 32)
    assert (tmp_path / "grid.png.json").is_file()
    assert not list(tmp_path.glob("*.part"))
