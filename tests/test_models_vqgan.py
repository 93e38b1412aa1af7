import pytest
import torch

from editrt.errors import InputError, WeightsError
from editrt.models import vqgan as V


def _ref_soft_clamp(x, beta=5):  # FlexIT src/vqc_core.py soft_clamp, verbatim formula
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


# The public taming model.yaml (vqgan_imagenet_f16_16384/configs/model.yaml), with the tiny
# architecture's numbers: its lossconfig names VQLPIPSWithDiscriminator, which is not built.
PUBLIC_MODEL_YAML = """model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 32
    n_embed: 256
    monitor: val/rec_loss
    ddconfig:
      double_z: false
      z_channels: 32
      resolution: 64
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult:
      - 1
      - 2
      - 2
      - 4
      num_res_blocks: {blocks}
      attn_resolutions:
      - 8
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_conditional: false
        disc_in_channels: 3
        disc_start: 0
        disc_weight: 0.75
        disc_num_layers: 2
        codebook_weight: 1.0
data:
  target: main.DataModuleFromConfig
  params:
    batch_size: 3
    num_workers: 8
"""


def _lightning_ckpt(model, path, monkeypatch):
    """A taming-style Lightning checkpoint: loss.* weights and a pickled callback class."""
    import sys
    import types

    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = mod.__name__, "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    names = ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__)
    for name in names:
        monkeypatch.setitem(sys.modules, name, mod if name == mod.__name__ else types.ModuleType(name))
    sd = {**model.state_dict(), "loss.discriminator.main.0.weight": torch.zeros(2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "global_step": 1, "callbacks": {ModelCheckpoint: {"best_model_score": 0.1}}}, path)
    for name in names:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize("ckpt_rel,yaml_rel", [
    ("last.ckpt", "model.yaml"),  # <dir>/last.ckpt + <dir>/model.yaml
    ("checkpoints/last.ckpt", "configs/model.yaml"),  # as the issue tracker's users have it
    ("ckpts/last.ckpt", "configs/model.yaml"),  # the heibox release folders
    ("checkpoints/last.ckpt", "configs/2021-01-01T00-00-00-project.yaml"),  # a taming log folder
])
def test_release_folder_layouts_load(tmp_path, monkeypatch, ckpt_rel, yaml_rel):
    a = V.load_vqgan("tiny", random_init=True, seed=7)
    folder = tmp_path / "vqgan_download"
    _lightning_ckpt(a, folder / ckpt_rel, monkeypatch)
    (folder / yaml_rel).parent.mkdir(parents=True, exist_ok=True)
    (folder / yaml_rel).write_text(PUBLIC_MODEL_YAML.format(blocks=1))
    x = torch.rand(1, 3, 64, 64)
    for kw in ({"weights": folder}, {"path": folder}, {"path": folder / ckpt_rel}):
        b = V.load_vqgan("tiny", **kw)
        assert torch.equal(a.encode(x), b.encode(x))
    # the yaml is the one read: an architecture that disagrees with the weights is reported
    (folder / yaml_rel).write_text(PUBLIC_MODEL_YAML.format(blocks=2))
    with pytest.raises(WeightsError, match="does not match VQGAN"):
        V.load_vqgan("tiny", weights=folder)


def test_public_model_yaml_reads_without_the_loss(tmp_path):
    (tmp_path / "model.yaml").write_text(PUBLIC_MODEL_YAML.format(blocks=1))
    cfg = V.read_model_yaml(tmp_path / "model.yaml", image_size=64)
    assert cfg == V.VQGAN_CONFIGS["tiny"]


def test_folder_without_checkpoint_names_the_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="checkpoints/last.ckpt"):
        V.load_vqgan("vqgan_imagenet_f16_1024", path=tmp_path / "empty")


def test_shipped_tiny_vqgan_loads_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITRT_HOME", str(tmp_path))  # an empty store: the package's copy is used
    vq = V.load_vqgan("tiny")
    from editrt.toy import models as toy

    ref = V.load_vqgan("tiny", path=toy.toy_dir() / toy.VQGAN_FILE)
    x = torch.rand(1, 3, 64, 64)
    assert torch.equal(vq.encode(x), ref.encode(x))
    assert not torch.equal(vq.encode(x), V.load_vqgan("tiny", random_init=True).encode(x))
