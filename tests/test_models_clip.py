import pytest
import torch
import torch.nn.functional as F

from editrt.errors import InputError, WeightsError
from editrt.models import clip as C


def test_names_and_configs():
    assert C.canonical_name("ViT-B/32") == "ViT-B-32"
    with pytest.raises(InputError, match="unknown CLIP"):
        C.canonical_name("ViT-L/14")
    sizes = {n: C.model_config(n)["vision_cfg"]["image_size"] for n in C.CLIP_NAMES}
    assert sizes == {"RN50": 224, "RN101": 224, "RN50x4": 288, "RN50x16": 384, "ViT-B-32": 224,
                     "ViT-B-16": 224, "tiny": 64}


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
