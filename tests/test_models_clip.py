import pytest
import torch
import torch.nn.functional as F

from editrt.errors import InputError, WeightsError
from editrt.models import clip as C


def test_names_and_configs():
    assert C.canonical_name("ViT-B/32") == "ViT-B-32"
    assert C.canonical_name("ViT-L/14@336px") == "ViT-L-14-336"
    assert C.model_config("ViT-L/14").vision.width == 1024  # any open_clip architecture, not a fixed list
    with pytest.raises(InputError, match="unknown CLIP"):
        C.model_config("ViT-Q-99")
    sizes = {n: C.model_config(n).vision.image_size for n in C.CLIP_NAMES}
    assert sizes == {"RN50": 224, "RN101": 224, "RN50x4": 288, "RN50x16": 384, "ViT-B-32": 224,
                     "ViT-B-16": 224, "tiny": 64}
    # open_clip's rule: plain names are GELU (LAION/DataComp weights), -quickgelu names QuickGELU
    assert not C.model_config("ViT-B-32").quick_gelu and C.model_config("ViT-B-32-quickgelu").quick_gelu
    assert C.store_key("ViT-B-32-quickgelu") == C.store_key("ViT-B/32") == "clip/ViT-B-32"  # OpenAI's file
    assert C.model_config("RN50x4").preprocess.size == 288 and C.model_config("tiny").preprocess.mean == C.OPENAI_MEAN


def _act(net):
    return type(net.model.text.transformer.resblocks[0].mlp.gelu if hasattr(net.model, "text")
                else net.model.transformer.resblocks[0].mlp.gelu).__name__


# A small open_clip architecture whose heads follow OpenAI's width // 64 rule (so that
# build_model-style inference recovers it exactly).
MINI = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2}}


def test_activation_follows_the_weights(tmp_path, monkeypatch):
    """OpenAI releases (TorchScript .pt, random stand-ins) are QuickGELU; an open_clip state
    dict under the plain name gets the config's GELU, as LAION/DataComp weights need."""
    mini = C.ClipConfig.from_open_clip(MINI)
    real = C.model_config
    monkeypatch.setattr(C, "model_config", lambda n: mini if n == "mini" else real(n))
    monkeypatch.setattr(C, "OPENAI_RELEASES", (*C.OPENAI_RELEASES, "mini"))
    rand = C.load_clip("mini", random_init=True, seed=5)
    assert _act(rand) == "QuickGELU"
    torch.save(rand.model.state_dict(), tmp_path / "laion_style.pt")
    gelu = C.load_clip("mini", path=tmp_path / "laion_style.pt")
    assert _act(gelu) == "GELU"
    x, t = torch.rand(1, 3, 32, 32), rand.tokenize(["a red square"])
    assert not torch.allclose(rand.encode_text(t), gelu.encode_text(t))  # the activation matters
    traced = torch.jit.trace(rand.model, (torch.rand(1, 3, 32, 32), t), strict=False)
    torch.jit.save(traced, str(tmp_path / "openai.pt"))
    openai = C.load_clip("mini", path=tmp_path / "openai.pt")
    assert _act(openai) == "QuickGELU"
    assert torch.equal(openai.encode_text(t), rand.encode_text(t))
    assert torch.equal(openai.embed_image(x), rand.embed_image(x))


def test_model_config_json_and_hf_layout(tmp_path):
    import json

    (tmp_path / "mini-gelu.json").write_text(json.dumps(MINI))
    net = C.load_clip(str(tmp_path / "mini-gelu.json"), random_init=True)
    assert net.name == "mini-gelu" and _act(net) == "GELU" and net.image_size == 32
    hf = {"model_cfg": {**MINI, "quick_gelu": True}, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}
    (tmp_path / "open_clip_config.json").write_text(json.dumps(hf))
    net = C.load_clip(str(tmp_path / "open_clip_config.json"), random_init=True)
    assert _act(net) == "QuickGELU" and torch.allclose(net.std.flatten(), torch.full((3,), 0.25))
    (tmp_path / "bad.json").write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(InputError, match="not an open_clip model config"):
        C.load_clip(str(tmp_path / "bad.json"), random_init=True)


@pytest.mark.parametrize("vision", [
    {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8},  # ViT
    {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},  # ModifiedResNet
])
def test_auto_infers_architecture_from_openai_layout(tmp_path, vision):
    cfg = C.ClipConfig.from_open_clip({**MINI, "vision_cfg": vision, "quick_gelu": True})
    with W_seeded(3):
        model = C.build_clip(cfg)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    inferred = C.config_from_state_dict(model.state_dict())
    assert inferred == cfg
    net = C.load_clip("auto", path=tmp_path / "weights.pt")
    assert net.config == cfg and net.name == "weights"
    ref = C.ClipNet("ref", model, cfg).eval().requires_grad_(False)
    x = torch.rand(1, 3, vision["image_size"], vision["image_size"])
    assert torch.equal(net.embed_image(x), ref.embed_image(x))
    with pytest.raises(InputError, match="random_init"):
        C.load_clip("auto", random_init=True)
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="cannot infer a CLIP architecture"):
        C.load_clip("auto", path=tmp_path / "other.pt")


def W_seeded(seed):
    from editrt import weights as W

    return W.seeded(seed)


def test_tiny_state_dict_roundtrip(tmp_path):
    a = C.load_clip("tiny", random_init=True, seed=1)
    b = C.load_clip("tiny", random_init=True, seed=2)
    x = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(a.embed_image(x), b.embed_image(x))
    # open_clip checkpoints wrap the dict and may prefix "module."
    torch.save({"state_dict": {f"module.{k}": v for k, v in a.model.state_dict().items()}}, tmp_path / "c.pt")
    c = C.load_clip("tiny", path=tmp_path / "c.pt")
    assert torch.equal(a.embed_image(x), c.embed_image(x))
    assert torch.equal(a.embed_text(["a cat"]), c.embed_text(["a cat"]))
    assert not any(p.requires_grad for p in c.parameters())


def test_safetensors_via_weights_mapping(tmp_path):
    from safetensors.torch import save_file

    a = C.load_clip("tiny", random_init=True, seed=3)
    save_file({k: v.contiguous() for k, v in a.model.state_dict().items()}, str(tmp_path / "t.safetensors"))
    b = C.load_clip("tiny", weights={"clip/tiny": tmp_path / "t.safetensors"})
    t = a.tokenize(["red circle"])
    assert torch.equal(a.encode_text(t), b.encode_text(t))


def test_openai_torchscript_archive_tensors_only(tmp_path):
    """OpenAI ships TorchScript archives; only their tensors are read (same key names)."""
    a = C.load_clip("tiny", random_init=True, seed=4)
    traced = torch.jit.trace(a.model.visual,
                             torch.rand(1, 3, 64, 64))
    torch.jit.save(traced, str(tmp_path / "visual.pt"))
    sd = C.read_clip_state_dict(tmp_path / "visual.pt")
    assert set(sd) == set(a.model.visual.state_dict())
    assert all(torch.equal(sd[k], v) for k, v in a.model.visual.state_dict().items())


@pytest.mark.slow
def test_rn50_architecture_loads_and_rejects_vit_weights(tmp_path):
    vit = C.load_clip("ViT-B-32", random_init=True)
    torch.save(vit.model.state_dict(), tmp_path / "vit.pt")
    with pytest.raises(WeightsError, match="shape mismatch"):
        C.load_clip("RN50", path=tmp_path / "vit.pt")


def test_wrong_checkpoint_is_named(tmp_path):
    torch.save({"foo": torch.zeros(2)}, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="does not match CLIP tiny"):
        C.load_clip("tiny", path=tmp_path / "bad.pt")


def test_prompts_validated():
    net = C.load_clip("tiny", random_init=True)
    assert net.tokenize(["a photo of a dog"]).shape == (1, 77)
    for bad in ["", "   "]:
        with pytest.raises(InputError, match="empty prompt"):
            net.tokenize([bad])
    with pytest.raises(InputError, match="too long"):
        net.tokenize(["dog " * 76])
    net.tokenize(["dog " * 75])  # 75 + start/end tokens = 77 fits


def test_preprocess_matches_flexit_test_prep():
    import torchvision.transforms as T

    net = C.load_clip("tiny", random_init=True)
    x = torch.rand(1, 3, 80, 100)
    ref = T.Compose([T.Resize(64, antialias=True), T.CenterCrop(64),
                     T.Normalize(C.OPENAI_MEAN, C.OPENAI_STD)])(x[0])
    assert torch.allclose(net.preprocess(x)[0], ref, atol=1e-6)
    emb = net.embed_image(x)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(1))
    assert torch.allclose(emb, F.normalize(net.encode_image(ref[None]), dim=-1), atol=1e-6)


def test_ensemble_each_net_its_own_size():
    ens = C.ClipEnsemble([C.load_clip("tiny", random_init=True, seed=s) for s in (0, 1)])
    embs = ens.embed_image(torch.rand(2, 3, 90, 90))
    assert len(embs) == 2 and embs[0].shape == (2, 64)
    with pytest.raises(InputError):
        C.ClipEnsemble([])


def _small_resnet_clip(config_path: str, seed=0):
    """A seeded small ModifiedResNet CLIP, its BatchNorm statistics and affines random (fresh ones
    fold to an identity-like scale)."""
    net = C.load_clip(config_path, random_init=True, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2, generator=gen)
                m.running_var.uniform_(0.3, 3.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
    return net


def test_fold_batchnorm_keeps_the_image_tower_and_its_input_gradient(small_resnet_clip_config):
    net = _small_resnet_clip(small_resnet_clip_config)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.model.visual.modules())
    x0 = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))

    def emb_and_grad(n):
        x = x0.clone().requires_grad_(True)
        e = n.encode_image(x)
        (g,) = torch.autograd.grad((e * torch.linspace(-1, 1, e.shape[1])).sum(), x)
        return e.detach(), g

    e0, g0 = emb_and_grad(net)
    text0 = net.encode_text(net.tokenize(["a photo"]))
    assert net.fold_batchnorm() == n_bn == 3 + 4 * 3 + 4  # stem, one bottleneck per stage, 4 downsamples
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    e1, g1 = emb_and_grad(net)
    assert e0.abs().max() > 0.1 and g0.abs().max() > 0
    torch.testing.assert_close(e1, e0, rtol=1e-4, atol=1e-5)
    assert (g1 - g0).norm() / g0.norm() < 1e-5
    assert torch.equal(net.encode_text(net.tokenize(["a photo"])), text0)  # text tower untouched
    assert net.fold_batchnorm() == 0  # nothing left to fold


def test_fold_batchnorm_leaves_vits_and_refuses_training_mode(small_resnet_clip_config):
    vit = C.load_clip("tiny", random_init=True, seed=0)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    assert vit.fold_batchnorm() == 0
    assert vit.state_dict().keys() == before.keys()
    rn = _small_resnet_clip(small_resnet_clip_config)
    rn.train()
    with pytest.raises(InputError, match="eval-mode"):
        rn.fold_batchnorm()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in rn.modules())  # nothing changed
