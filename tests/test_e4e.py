"""e4e encoder: checkpoint format, architecture bookkeeping, preprocessing, registry."""

from __future__ import annotations

import pytest
import torch

from editrt.errors import InputError, WeightsError
from editrt.models.e4e import E4E_CONFIGS, Encoder4Editing, parameter_count, preprocess
from editrt.models.registry import get_spec
from editrt.models.stylegan2 import STYLEGAN2_CONFIGS

torch.set_num_threads(2)


def _randomised_tiny(seed: int = 0) -> Encoder4Editing:
    enc = Encoder4Editing.load("tiny", random_init=True, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # BatchNorm statistics away from identity so they matter
        for name, b in enc.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return enc


def test_checkpoint_round_trip_in_e4e_format(tmp_path):
    enc = _randomised_tiny()
    latent_avg = torch.randn(8, 64)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd["decoder.style.1.weight"] = torch.zeros(64, 64)  # e4e files also hold the generator
    torch.save({"state_dict": sd, "latent_avg": latent_avg, "opts": {"stylegan_size": 32}}, tmp_path / "e4e.pt")
    loaded = Encoder4Editing.load("tiny", weights=tmp_path / "e4e.pt")
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        deltas = enc.deltas(x)
        out = loaded(x)
    assert out.shape == (2, 8, 64)
    torch.testing.assert_close(out, deltas + latent_avg)
    assert not torch.allclose(deltas[:, 0], deltas[:, 5])  # per-layer deltas are added


def test_latent_avg_of_one_row_is_broadcast(tmp_path):
    enc = _randomised_tiny(1)
    avg = torch.randn(64)
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in enc.state_dict().items()}, "latent_avg": avg},
               tmp_path / "e4e.pt")
    assert torch.equal(Encoder4Editing.load("tiny", weights=tmp_path / "e4e.pt").latent_avg, avg.expand(8, -1))


def test_wrong_checkpoint_is_refused(tmp_path):
    ffhq_like = {"state_dict": {"encoder.styles.0.linear.weight": torch.zeros(512, 512)}}
    torch.save(ffhq_like, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="e4e encoder"):
        Encoder4Editing.load("tiny", weights=tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="random_init"):
        Encoder4Editing.load("ffhq", weights=tmp_path / "no_store_here")


def test_architecture_bookkeeping():
    ffhq = E4E_CONFIGS["ffhq"]
    assert ffhq.feature_indices == (6, 20, 23)  # the reference's hard-coded c1, c2, c3
    assert ffhq.n_styles == STYLEGAN2_CONFIGS["ffhq-1024"].n_latent == 18
    assert E4E_CONFIGS["tiny"].n_styles == STYLEGAN2_CONFIGS["tiny"].n_latent
    n = parameter_count("ffhq")
    print(f"e4e ir_se50 (FFHQ) parameters: {n:,}")
    # 267,136,704 = the reference Encoder4Editing(50, 'ir_se', stylegan_size=1024), counted by
    # instantiating omertov/encoder4editing's module; 621 state-dict entries
    assert n == 267_136_704
    with torch.device("meta"):
        assert len(Encoder4Editing("ffhq").state_dict()) == 621


def test_preprocess():
    imgs = torch.randint(0, 256, (2, 3, 96, 96), dtype=torch.uint8)
    x = preprocess(imgs, size=64)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    same = preprocess(imgs.float() / 255.0, size=96)
    torch.testing.assert_close(same, imgs.float() / 127.5 - 1.0)
    with pytest.raises(InputError, match="square"):
        preprocess(torch.zeros(1, 3, 64, 80))
    from PIL import Image

    pil = Image.fromarray(imgs[0].permute(1, 2, 0).numpy())
    y = preprocess([pil], size=64)
    assert y.shape == (1, 3, 64, 64)
    assert (y - x[:1]).abs().mean() < 0.05  # PIL and tensor antialiased resizes are close


def test_registry_spec_builds_and_runs():
    spec = get_spec("e4e/tiny/encoder")
    model = spec.build(random_init=True, seed=0)
    (x,) = spec.sample_inputs(B=2).values()
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 8, 64) and spec.outputs[0].shape == ("B", 8, 64)
    assert get_spec("e4e/ffhq/encoder").inputs[0].shape == ("B", 3, 256, 256)
    with pytest.raises(InputError):
        model(torch.zeros(1, 3, 32, 32))
