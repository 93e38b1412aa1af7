"""StyleGAN2 (rosinality layout) with S-space: checkpoints, layout, synthesis parity, export."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from editrt.errors import InputError, WeightsError
from editrt.models.registry import get_spec
from editrt.models.stylegan2 import (
    STYLEGAN2_CONFIGS, StyleCode, StyleGAN2, StyleGAN2Config, StyleLayout, SynthesisExport)
from editrt.models.stylegan2_ops import ModulatedConv2d

torch.set_num_threads(2)


def _perturbed_tiny(seed: int = 0) -> StyleGAN2:
    """Tiny generator with every parameter random (rosinality inits noise strengths and biases
    at zero, which would hide bugs in those paths)."""
    G = StyleGAN2.random("tiny", seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise.weight") or name.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen) + (1.0 if "modulation" in name else 0.0))
    return G


# ---------------------------------------------------------------------------------------------
# layout


def test_layout_ffhq_1024_from_config_alone():
    layout = StyleLayout.from_config(STYLEGAN2_CONFIGS["ffhq-1024"])
    assert len(layout.layers) == 26 and layout.total_channels == 9088 and layout.conv_total == 6048
    assert layout.conv_indices == (0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24)
    assert layout.names[:5] == ("conv1_4", "torgb_4", "conv0_8", "conv1_8", "torgb_8")
    assert layout.names[-1] == "torgb_1024" and layout.layers[-1].channels == 32
    # StyleCLIP global_torch/manipulate.py: the w+ index of each style layer
    assert [ly.w_index for ly in layout.layers] == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9, 10, 11, 11,
                                                    12, 13, 13, 14, 15, 15, 16, 17]
    # DeltaEdit split_stylespace: 10 x 512, then 256, 256, 128, 128, 64, 64, 32
    assert layout.conv_channels == (512,) * 10 + (256, 256, 128, 128, 64, 64, 32)
    assert sum(layout.conv_channels[:3]) == 1536 and sum(layout.conv_channels[7:]) == 2464  # DeltaMapper groups


def _styleclip_s_names(size: int) -> list[str]:
    """StyleCLIP global_torch/manipulate.py ``Manipulator.GetSName`` for block resolutions 4..size."""
    names = []
    for res in [2 ** k for k in range(2, size.bit_length())]:
        if res == 4:
            names += [f"conv1_resolution_{res}", f"toRGB_resolution_{res}"]
        else:
            names += [f"conv0_resolution_{res}", f"conv1_resolution_{res}", f"toRGB_resolution_{res}"]
    return names


@pytest.mark.parametrize("config,size", [("ffhq-1024", 1024), ("ffhq-256", 256)])
def test_reference_names_are_styleclips(config, size):
    layout = StyleLayout.from_config(config)
    assert list(layout.reference_names) == _styleclip_s_names(size)
    assert layout.layers[1].reference_name == "toRGB_resolution_4"
    assert layout.layers[2].reference_name == "conv0_resolution_8"
    # StyleCLIP's example channel "6_501" (manipulate.py __main__: lindex, bname = 6, 501)
    assert layout.index("conv1_resolution_16") == layout.index("conv1_16") == 6


def test_style_code_accepts_reference_names():
    G = StyleGAN2.random("tiny")
    code = G.styles_from_w(torch.randn(1, G.n_latent, 64, generator=torch.Generator().manual_seed(0)))
    for layer in G.layout.layers:
        assert code[layer.reference_name] is code[layer.name]
    with pytest.raises(InputError, match="unknown style layer"):
        code["toRGB_4"]


def test_layout_depends_on_size():
    l256 = StyleLayout.from_config("ffhq-256")
    assert len(l256.layers) == 20 and len(l256.conv_indices) == 13
    assert l256.names[-1] == "torgb_256" and STYLEGAN2_CONFIGS["ffhq-256"].n_latent == 14
    tiny = StyleLayout.from_config("tiny")
    G = StyleGAN2.random("tiny")
    assert tiny == G.layout and len(tiny.layers) == 11 and G.n_latent == 8


# ---------------------------------------------------------------------------------------------
# checkpoints


def test_checkpoint_round_trip_strict(tmp_path):
    G = _perturbed_tiny(1)
    path = G.save(tmp_path / "g.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"g_ema", "latent_avg"} and "noises.noise_0" in raw["g_ema"]
    assert "convs.0.conv.blur.kernel" in raw["g_ema"] and "to_rgbs.0.upsample.kernel" in raw["g_ema"]
    for H in (StyleGAN2.load("tiny", weights=path), StyleGAN2.load(str(path))):
        assert H.config == G.config
        for k, v in G.state_dict().items():
            assert torch.equal(H.state_dict()[k], v), k
        assert torch.equal(H.latent_avg, G.latent_avg)
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(G.generate(z, psi=0.7), H.generate(z, psi=0.7))


def test_checkpoint_of_other_resolution_is_refused(tmp_path):
    other = StyleGAN2(STYLEGAN2_CONFIGS["tiny"].replace(size=64))
    path = other.save(tmp_path / "g64.pt")
    with pytest.raises(WeightsError, match="64x64 generator but StyleGAN2 tiny is 32x32"):
        StyleGAN2.load("tiny", weights=path)


def test_checkpoint_with_wrong_keys_is_refused(tmp_path):
    G = StyleGAN2.random("tiny")
    ckpt = G.checkpoint_dict()
    del ckpt["g_ema"]["convs.1.activate.bias"]
    torch.save(ckpt, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match="convs.1.activate.bias"):
        StyleGAN2.load("tiny", weights=tmp_path / "broken.pt")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a StyleGAN2 generator checkpoint"):
        StyleGAN2.load("tiny", weights=tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="random_init"):
        StyleGAN2.load("tiny", weights=tmp_path / "empty_store")


def test_random_init_is_seeded():
    a, b, c = StyleGAN2.random("tiny", seed=3), StyleGAN2.random("tiny", seed=3), StyleGAN2.random("tiny", seed=4)
    assert torch.equal(a.conv1.conv.weight, b.conv1.conv.weight) and torch.equal(a.latent_avg, b.latent_avg)
    assert not torch.equal(a.conv1.conv.weight, c.conv1.conv.weight)
    w = a.style(torch.randn(4096, 64, generator=torch.Generator().manual_seed(9))).mean(0)
    assert torch.allclose(a.latent_avg, w, atol=0.1)  # a mean of mapped w, as documented


def test_pse_decoder_keys_load(tmp_path):
    """pSp/e4e checkpoints carry the generator as decoder.* keys."""
    G = _perturbed_tiny(2)
    sd = {f"decoder.{k}": v for k, v in G.state_dict().items()}
    sd["encoder.x"] = torch.zeros(1)
    torch.save({"state_dict": sd, "latent_avg": G.latent_avg.expand(8, -1).clone()}, tmp_path / "psp.pt")
    H = StyleGAN2.load("tiny", weights=tmp_path / "psp.pt")
    assert torch.equal(H.latent_avg, G.latent_avg) and torch.equal(H.input.input, G.input.input)


# ---------------------------------------------------------------------------------------------
# modulated conv and synthesis parity


def _reference_modconv(conv: ModulatedConv2d, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """rosinality's per-sample formula, one sample at a time (no grouping)."""
    outs = []
    for b in range(x.shape[0]):
        w = conv.scale * conv.weight[0] * s[b].view(1, -1, 1, 1)
        if conv.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum([1, 2, 3]) + 1e-8).view(-1, 1, 1, 1)
        if conv.upsample:
            o = conv.blur(F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2))
        else:
            o = F.conv2d(x[b:b + 1], w, padding=conv.padding)
        outs.append(o)
    return torch.cat(outs)


@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3), (False, False, 1)])
def test_modulated_conv_forms_agree(upsample, demodulate, k):
    torch.manual_seed(0)
    conv = ModulatedConv2d(6, 5, k, 8, demodulate=demodulate, upsample=upsample)
    x, s = torch.randn(3, 6, 8, 8), torch.randn(3, 6) + 1.0
    ref = _reference_modconv(conv, x, s)
    with torch.no_grad():
        act, grp = conv(x, s, "activation"), conv(x, s, "grouped")
    assert act.shape == ref.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    torch.testing.assert_close(act, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grp, ref, atol=1e-5, rtol=1e-5)


def _reference_forward(G: StyleGAN2, w_plus: torch.Tensor) -> torch.Tensor:
    """rosinality ``Generator.forward(input_is_latent=True, randomize_noise=False)`` written
    out from its definition: modulation computed inline from w, per-sample convs."""
    noise = [getattr(G.noises, f"noise_{i}") for i in range(G.config.num_noise_layers)]

    def styled(layer, x, w, n):
        x = _reference_modconv(layer.conv, x, layer.conv.modulation(w)) + layer.noise.weight * n
        return F.leaky_relu(x + layer.activate.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def rgb(layer, x, w, skip):
        out = _reference_modconv(layer.conv, x, layer.conv.modulation(w)) + layer.bias
        return out if skip is None else out + layer.upsample(skip)

    x = G.input.input.repeat(w_plus.shape[0], 1, 1, 1)
    x = styled(G.conv1, x, w_plus[:, 0], noise[0])
    skip = rgb(G.to_rgb1, x, w_plus[:, 1], None)
    for k in range(len(G.to_rgbs)):
        x = styled(G.convs[2 * k], x, w_plus[:, 1 + 2 * k], noise[1 + 2 * k])
        x = styled(G.convs[2 * k + 1], x, w_plus[:, 2 + 2 * k], noise[2 + 2 * k])
        skip = rgb(G.to_rgbs[k], x, w_plus[:, 3 + 2 * k], skip)
    return skip


def test_w_to_s_to_image_equals_forward_from_w():
    G = _perturbed_tiny(3)
    gen = torch.Generator().manual_seed(1)
    w_plus = G.style(torch.randn(6, 64, generator=gen)).reshape(3, 2, 64)[:, torch.tensor([0, 1] * 4)]
    with torch.no_grad():
        ref = _reference_forward(G, w_plus)
        code = G.styles_from_w(w_plus)
        img = G.synthesize(code)
        img_grouped = G.synthesize(code, modconv="grouped")
        img_gen = G.generate(w=w_plus)
    assert img.shape == (3, 3, 32, 32) and ref.abs().max() > 0.5
    torch.testing.assert_close(img, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(img_grouped, ref, atol=1e-4, rtol=1e-4)
    assert torch.equal(img_gen, img)
    with torch.no_grad():
        assert not torch.allclose(G.synthesize(code, noise="none"), img, atol=1e-3)  # noise path is live


def test_activation_form_defers_the_gain_and_keeps_the_clamp():
    """The activation form moves each layer's sqrt(2) onto its readers' styles; with an active
    conv_clamp the clamp still bounds the true activation, as the grouped (rosinality) form does."""
    import dataclasses

    G0 = _perturbed_tiny(5)
    G = StyleGAN2(dataclasses.replace(G0.config, conv_clamp=0.4))
    G.load_state_dict(G0.state_dict())
    G.latent_avg.copy_(G0.latent_avg)
    code = G.styles_from_w(G.style(torch.randn(2, 64, generator=torch.Generator().manual_seed(3))))
    with torch.no_grad():
        act, grp = G.synthesize(code), G.synthesize(code, modconv="grouped")
        unclamped = G0.synthesize(code)
    assert (act - unclamped).abs().max() > 0.05  # the clamp is active at 0.4
    torch.testing.assert_close(act, grp, atol=1e-5, rtol=1e-5)
    layer = G0.convs[0]
    x = torch.randn(2, layer.conv.in_channel, 4, 4)
    s = code.styles[2]
    with torch.no_grad():
        deferred = layer(x, s, None, defer_gain=True) * math.sqrt(2)
        torch.testing.assert_close(deferred, layer(x, s, None), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(layer.conv(x, s, in_gain=2.0), layer.conv(2 * x, s), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="activation form only"):
        layer.conv(x, s, "grouped", in_gain=2.0)


def test_truncation():
    G = _perturbed_tiny(4)
    z = torch.randn(3, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        w = G.style(z)
        assert torch.equal(G.mapping(z), w)
        torch.testing.assert_close(G.mapping(z, psi=0.0), G.latent_avg.expand(3, -1))
        torch.testing.assert_close(G.mapping(z, psi=0.6), G.latent_avg + 0.6 * (w - G.latent_avg))
        wp = G.mapping(z, psi=0.6, cutoff=3)
    assert wp.shape == (3, 8, 64)
    torch.testing.assert_close(wp[:, :3], (G.latent_avg + 0.6 * (w - G.latent_avg))[:, None].expand(-1, 3, -1))
    torch.testing.assert_close(wp[:, 3:], w[:, None].expand(-1, 5, -1))
    with pytest.raises(InputError):
        G.mapping(torch.randn(2, 63))


def test_style_statistics_match_direct_computation():
    import numpy as np

    G = _perturbed_tiny(5)
    mean, std = G.style_statistics(n=300, seed=5, psi=0.7, cutoff=4, batch_size=128)
    z = torch.from_numpy(np.random.RandomState(5).randn(300, 64)).float()
    with torch.no_grad():
        flat = G.styles_from_w(G.mapping(z, 0.7, 4)).flat()
    torch.testing.assert_close(mean.flat()[0], flat.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(std.flat()[0], flat.std(0, correction=0), atol=1e-4, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# StyleCode


def test_stylecode_views_and_arithmetic():
    G = _perturbed_tiny(6)
    with torch.no_grad():
        code = G.styles_from_w(G.mapping(torch.randn(4, 64)))
    layout = code.layout
    conv = code.conv_view()
    assert conv.shape == (4, layout.conv_total) and code.flat().shape == (4, layout.total_channels)
    back = code.with_conv_view(conv)
    assert all(torch.equal(a, b) for a, b in zip(back.styles, code.styles))
    edited = code.with_conv_view(conv + 1.0)
    for i, layer in enumerate(layout.layers):
        expected = code.styles[i] + (1.0 if layer.kind == "conv" else 0.0)
        assert torch.equal(edited.styles[i], expected), layer.name
    assert [t.shape[1] for t in code.split_conv(conv)] == list(layout.conv_channels)
    assert torch.equal(code.add_conv_delta(torch.ones(1, layout.conv_total), 2.0).conv_view(), conv + 2.0)
    delta = StyleCode.from_conv_delta(torch.ones(1, layout.conv_total), layout)
    assert delta.batch_size == 1 and float(delta["torgb_4"].abs().sum()) == 0.0
    moved = code + 3.0 * delta
    assert torch.equal(moved.conv_view(), conv + 3.0) and torch.equal(moved["torgb_8"], code["torgb_8"])
    assert torch.equal((code - code).flat(), torch.zeros_like(code.flat()))
    assert torch.equal((code * torch.tensor([0.0, 1.0, 2.0, 3.0]))[2].flat(), 2.0 * code[2].flat())
    # batch selection and concatenation
    assert code[1].batch_size == 1 and torch.equal(code[-1].flat(), code.flat()[3:])
    assert torch.equal(StyleCode.cat([code[0:2], code[2:]]).flat(), code.flat())
    assert torch.equal(StyleCode.from_flat(code.flat(), layout).conv_view(), conv)
    assert code.replace(conv1_4=torch.zeros(4, 64))["conv1_4"].abs().sum() == 0
    assert StyleCode(code.as_dict(), layout).names == layout.names
    assert code.to(torch.float64).dtype == torch.float64 and code.mean().batch_size == 1
    with pytest.raises(InputError, match="conv1_4"):
        StyleCode([torch.zeros(4, 3)] + list(code.styles[1:]), layout)
    with pytest.raises(InputError):
        code.with_conv_view(torch.zeros(4, layout.conv_total + 1))
    with pytest.raises(InputError):
        G.synthesize(StyleCode.zeros(StyleLayout.from_config("ffhq-256")))


# ---------------------------------------------------------------------------------------------
# NVIDIA stylegan2-ada-pytorch conversion


def _as_nvidia(G: StyleGAN2) -> dict[str, torch.Tensor]:
    """Write a rosinality generator with stylegan2-ada-pytorch G_ema key names and shapes."""
    sd, out = G.state_dict(), {}
    for i in range(G.config.n_mlp):
        out[f"mapping.fc{i}.weight"], out[f"mapping.fc{i}.bias"] = sd[f"style.{i + 1}.weight"], sd[f"style.{i + 1}.bias"]
    out["mapping.w_avg"] = G.latent_avg.clone()
    out["synthesis.b4.const"] = sd["input.input"][0]
    filt = sd["convs.0.conv.blur.kernel"] / 4  # NVIDIA setup_filter: normalised taps

    def layer(src, dst, noise_i):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.activate.bias"]
        out[f"{dst}.noise_strength"] = sd[f"{src}.noise.weight"].reshape(())
        out[f"{dst}.noise_const"] = sd[f"noises.noise_{noise_i}"][0, 0]
        out[f"{dst}.resample_filter"] = filt

    def rgb(src, dst):
        out[f"{dst}.weight"] = sd[f"{src}.conv.weight"][0]
        out[f"{dst}.affine.weight"] = sd[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = sd[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(3)

    layer("conv1", "synthesis.b4.conv1", 0)
    rgb("to_rgb1", "synthesis.b4.torgb")
    out["synthesis.b4.resample_filter"] = filt
    for k, res in enumerate(G.config.resolutions[1:]):
        layer(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 1 + 2 * k)
        layer(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 + 2 * k)
        rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        out[f"synthesis.b{res}.resample_filter"] = filt
    return out


def test_nvidia_state_dict_conversion(tmp_path):
    G = _perturbed_tiny(7)
    nv = _as_nvidia(G)
    torch.save(nv, tmp_path / "ada_state.pt")
    H = StyleGAN2.load("tiny", weights=tmp_path / "ada_state.pt")
    for k, v in G.state_dict().items():
        assert torch.equal(H.state_dict()[k], v), k
    assert torch.equal(H.latent_avg, G.latent_avg)
    nv["mapping.embed.weight"] = torch.zeros(64, 10)
    torch.save(nv, tmp_path / "cond.pt")
    with pytest.raises(WeightsError, match="conditional"):
        StyleGAN2.load("tiny", weights=tmp_path / "cond.pt")


def test_nvidia_pickle_needs_opt_in_and_runs_no_embedded_code(tmp_path, monkeypatch):
    """A pickle with the structure of torch_utils.persistence objects (module source embedded)."""
    import collections
    import pickle
    import sys
    import types

    persistence = types.ModuleType("torch_utils.persistence")
    dnnlib_util = types.ModuleType("dnnlib.util")

    def _reconstruct_persistent_obj(meta):  # stands in for NVIDIA's, only needed to pickle
        raise AssertionError("the reader must not call NVIDIA's reconstruct function")

    class EasyDict(dict):
        pass

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    dnnlib_util.EasyDict = EasyDict
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", persistence)
    monkeypatch.setitem(sys.modules, "dnnlib", types.ModuleType("dnnlib"))
    monkeypatch.setitem(sys.modules, "dnnlib.util", dnnlib_util)

    class Persistent:
        def __init__(self, name, params=None, buffers=None, modules=None, init_kwargs=None):
            self.meta = dict(type="class", version=4, module_src="raise SystemExit('embedded code ran')",
                             class_name=name, state=dict(
                                 training=False, _parameters=collections.OrderedDict(params or {}),
                                 _buffers=collections.OrderedDict(buffers or {}),
                                 _modules=collections.OrderedDict(modules or {}),
                                 _non_persistent_buffers_set=set(), _init_kwargs=init_kwargs or {}))

        def __reduce__(self):
            return _reconstruct_persistent_obj, (self.meta,)

    G = _perturbed_tiny(8)
    nv = _as_nvidia(G)
    tree: dict = {}
    for key, t in nv.items():  # nest "a.b.c" keys into Persistent modules
        *path, leaf = key.split(".")
        tree.setdefault(tuple(path), {})[leaf] = t

    def build(prefix: tuple[str, ...], name: str) -> Persistent:
        children = sorted({p[len(prefix)] for p in tree if len(p) > len(prefix) and p[:len(prefix)] == prefix})
        own = tree.get(prefix, {})
        params = {k: torch.nn.Parameter(v.clone()) for k, v in own.items()
                  if k not in ("w_avg", "noise_const", "resample_filter")}
        bufs = {k: v.clone() for k, v in own.items() if k in ("w_avg", "noise_const", "resample_filter")}
        kwargs = EasyDict(z_dim=64, synthesis_kwargs=EasyDict(conv_clamp=256)) if not prefix else None
        return Persistent(name, params, bufs, {c: build(prefix + (c,), c) for c in children}, kwargs)

    (tmp_path / "net.pkl").write_bytes(pickle.dumps({"G_ema": build((), "Generator"), "D": None}))
    with pytest.raises(WeightsError, match="allow_pickle"):
        StyleGAN2.load(tmp_path / "net.pkl")
    H = StyleGAN2.load(tmp_path / "net.pkl", allow_pickle=True)
    assert H.config.conv_clamp == 256.0 and H.config.size == 32
    for k, v in G.state_dict().items():
        assert torch.equal(H.state_dict()[k], v), k
    assert torch.equal(H.latent_avg, G.latent_avg)


# ---------------------------------------------------------------------------------------------
# registry and export


def test_registry_specs():
    spec = get_spec("stylegan2/tiny/synthesis")
    layout = StyleLayout.from_config("tiny")
    assert [t.name for t in spec.inputs] == list(layout.names)
    assert all(t.shape == ("B", c) for t, c in zip(spec.inputs, layout.channels))
    model = spec.build(random_init=True, seed=0)
    feeds = spec.sample_inputs(B=2)
    with torch.no_grad():
        img = model(*feeds.values())
    assert img.shape == (2, 3, 32, 32)
    mapping = get_spec("stylegan2/ffhq-1024/mapping")
    assert mapping.inputs[0].shape == ("B", 512) and mapping.outputs[0].name == "w"
    styles = get_spec("stylegan2/tiny/styles").build(random_init=True)
    with torch.no_grad():
        outs = styles(torch.randn(2, 8, 64))
    assert [o.shape[1] for o in outs] == list(layout.channels)


def test_tiny_synthesis_onnx_export_matches_torch(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    G = _perturbed_tiny(9)
    model = SynthesisExport(G).eval()
    layout = G.layout
    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(2, c, generator=gen) + 1.0 for c in layout.channels)
    batch = torch.export.Dim("B", min=1, max=64)
    path = tmp_path / "synthesis.onnx"
    torch.onnx.export(model, example, str(path), dynamo=True, input_names=list(layout.names),
                      output_names=["image"], dynamic_shapes=tuple({0: batch} for _ in example))
    graph = onnx.load(str(path)).graph
    inits = {i.name for i in graph.initializer}
    conv_weights = [n.input[1] for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert conv_weights and all(w in inits for w in conv_weights), "modulated conv weights must be constants"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = [torch.randn(3, c, generator=gen) + 1.0 for c in layout.channels]  # batch 3 != export batch
    (out,) = sess.run(None, {n: t.numpy() for n, t in zip(layout.names, feeds)})
    with torch.no_grad():
        ref = G.synthesize(StyleCode(feeds, layout), modconv="grouped")
    assert out.shape == (3, 3, 32, 32)
    torch.testing.assert_close(torch.from_numpy(out), ref, atol=1e-4, rtol=1e-4)


def test_config_validation():
    with pytest.raises(InputError):
        StyleGAN2Config(size=48)
    with pytest.raises(InputError, match="unknown StyleGAN2 config"):
        StyleLayout.from_config("nope")
    with pytest.raises(InputError, match="neither a known StyleGAN2 config"):
        StyleGAN2.load("does-not-exist")


def test_rosinality_training_checkpoint_with_args_loads_weights_only(tmp_path):
    """rosinality train.py saves ``args`` (an argparse.Namespace) next to g_ema."""
    import argparse

    G = StyleGAN2.load("tiny", random_init=True, seed=4)
    ckpt = {**G.checkpoint_dict(), "args": argparse.Namespace(size=32, channel_multiplier=2)}
    torch.save(ckpt, tmp_path / "050000.pt")
    H = StyleGAN2.load("tiny", path=tmp_path / "050000.pt")
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), H.state_dict().values()))
