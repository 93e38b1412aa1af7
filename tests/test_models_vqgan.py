import pytest
import torch

from editrt.errors import InputError, WeightsError
from editrt.models import vqgan as V


def _ref_soft_clamp(x, beta=5):  # REFERENCES.md §1.3 step 3, verbatim formula
    x = 2 * x - 1
    x = torch.tanh(x ** beta)
    x = torch.relu(x) ** (1 / beta) - torch.relu(-x) ** (1 / beta)
    return (x + 1) / 2


def test_soft_clamp_matches_reference_and_is_nan_free():
    x = torch.linspace(-0.5, 1.5, 1001, dtype=torch.float64)
    assert torch.allclose(V.soft_clamp(x), _ref_soft_clamp(x), atol=1e-12)
    assert V.soft_clamp(x).min() >= 0 and V.soft_clamp(x).max() <= 1
    z = torch.tensor([0.5, 0.3, 0.9], dtype=torch.float64, requires_grad=True)
    V.soft_clamp(z).sum().backward()
    assert torch.isfinite(z.grad).all()  # the reference gives NaN at exactly 0.5
    z2 = torch.tensor([0.3, 0.9], dtype=torch.float64, requires_grad=True)
    _ref_soft_clamp(z2).sum().backward()
    assert torch.allclose(z.grad[1:], z2.grad)


def test_taming_key_layout():
    vq = V.load_vqgan("tiny", random_init=True)
    prefixes = {k.split(".")[0] for k in vq.state_dict()}
    assert prefixes == {"encoder", "decoder", "quantize", "quant_conv", "post_quant_conv"}
    assert "quantize.embedding.weight" in vq.state_dict()


def test_ckpt_yaml_roundtrip_ignores_loss_keys(tmp_path):
    a = V.load_vqgan("tiny", random_init=True, seed=1)
    V.save_taming_checkpoint(a, tmp_path / "m")
    ckpt = torch.load(tmp_path / "m" / "last.ckpt", weights_only=True)
    ckpt["state_dict"]["loss.discriminator.main.0.weight"] = torch.zeros(2)  # training-only entries
    torch.save(ckpt, tmp_path / "m" / "last.ckpt")
    b = V.load_vqgan("tiny", path=tmp_path / "m" / "last.ckpt")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(a.encode(x), b.encode(x))
    z = a.encode(x)
    assert z.shape == (2, 32, 8, 8)
    assert torch.equal(a.decode_clamped(z), b.decode_clamped(z))


def test_model_yaml_overrides_registry_config(tmp_path):
    import yaml

    a = V.load_vqgan("tiny", random_init=True)
    V.save_taming_checkpoint(a, tmp_path)
    cfg = yaml.safe_load((tmp_path / "model.yaml").read_text())
    cfg["model"]["params"]["ddconfig"]["num_res_blocks"] = 2  # a yaml that disagrees with the weights
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(WeightsError, match="does not match VQGAN"):
        V.load_vqgan("tiny", path=tmp_path / "last.ckpt")
    (tmp_path / "model.yaml").write_text("model: {}\n")
    with pytest.raises(WeightsError, match="model.yaml"):
        V.load_vqgan("tiny", path=tmp_path / "last.ckpt")


def test_f16_latent_shape_at_288():
    vq = V.VQGAN(V.VQGAN_CONFIGS["vqgan_imagenet_f16_1024"])
    assert vq.latent_shape(288) == (256, 18, 18)
    assert sum(p.numel() for p in vq.parameters()) > 70e6
    with pytest.raises(InputError):
        vq.latent_shape(300)


def test_unknown_name():
    with pytest.raises(InputError, match="unknown VQGAN"):
        V.load_vqgan("vqgan_f8", random_init=True)
