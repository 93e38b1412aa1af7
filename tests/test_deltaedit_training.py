"""Text-free Delta Mapper training: shapes per S layout, the loop, resume, the CLI, the shipped toy mapper."""

import dataclasses
import types

import pytest
import torch

from editrt.errors import InputError
from editrt.methods.stylespace import deltaedit_training as DT
from editrt.models.delta_mapper import FFHQ_CONFIG
from editrt.models.stylegan2 import StyleGAN2, StyleLayout

SMALL = DT.DeltaTrainConfig(steps=4, batch=8, samples=48, val_samples=16, val_pairs=32, checkpoint_every=2,
                            sample_batch=16)


@pytest.fixture(scope="module")
def nets():
    from editrt.models.clip import load_clip

    return StyleGAN2.load("tiny", random_init=True, seed=1), load_clip("tiny", random_init=True, seed=1)


def _layout_only(name):
    return types.SimpleNamespace(layout=StyleLayout.from_config(name))


def test_mapper_shape_follows_the_layout():
    assert DT.mapper_config_for(_layout_only("ffhq-1024"), 512) == FFHQ_CONFIG  # net_face.pth's shape
    c256 = DT.mapper_config_for(_layout_only("church-256"), 512)
    assert c256.s_dim == StyleLayout.from_config("church-256").conv_total and c256.medium_layers == 4
    toy = DT.mapper_config_for(_layout_only("toy"), 64)
    assert (toy.coarse_layers, toy.medium_layers, toy.fine_dim, toy.s_dim) == (3, 2, 96, 416)
    tiny = DT.mapper_config_for(_layout_only("tiny"), 64)  # 16 px block: 64 then 32 channels
    assert tiny.medium_layers == 1 and tiny.s_dim == StyleLayout.from_config("tiny").conv_total


def test_pairs_follow_the_reference_dataset():
    codes, embeds = torch.randn(5, 7), torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    s, cond, target = DT.pair_batch(codes, embeds, torch.tensor([0, 3]), torch.tensor([2, 1]))
    assert torch.equal(s, codes[[0, 3]]) and torch.equal(target, codes[[2, 1]] - codes[[0, 3]])
    assert torch.equal(cond[:, :4], embeds[[0, 3]])
    assert torch.allclose(cond[:, 4:].norm(dim=1), torch.ones(2))
    total, mse, cos = DT.delta_loss(target, target)
    assert mse.item() == 0 and abs(cos.item()) < 1e-6


def test_local_pairs_join_each_sample_to_its_neighbour(tmp_path, nets):
    i, j = DT._pairs(10, 64, torch.Generator().manual_seed(0), "local")  # rows 5..9: neighbours of 0..4
    assert torch.equal((i - j).abs(), torch.full((64,), 5)) and {0, 1} == set((i >= 5).long().tolist())
    G, clip = nets
    a, _ = DT.sample_codes(G, clip, 4, seed=3)
    b, _ = DT.sample_codes(G, clip, 4, seed=3, neighbour_sigma=0.5)
    far, _ = DT.sample_codes(G, clip, 4, seed=4)
    assert 0 < (b - a).norm() < (far - a).norm()
    cfg = dataclasses.replace(SMALL, pairs="local", pair_sigma=0.5)
    rep = DT.train_delta_mapper(G, clip, tmp_path / "m.safetensors", cfg, progress=False)
    assert rep["settings"]["pairs"] == "local" and rep["settings"]["pair_sigma"] == 0.5
    with pytest.raises(InputError, match="pairs"):
        DT.DeltaTrainConfig(pairs="nearest")


def test_training_loop_writes_a_loadable_mapper(tmp_path, nets):
    G, clip = nets
    out = tmp_path / "m.safetensors"
    rep = DT.train_delta_mapper(G, clip, out, SMALL, progress=False)
    v = rep["validation"]
    assert all(torch.isfinite(torch.tensor(x)) for x in v.values())
    assert [h["step"] for h in rep["history"]] == [2, 4]
    assert not (tmp_path / "m.partial.safetensors").exists()
    mapper, meta = DT.load_trained_mapper(out)
    assert mapper.config.s_dim == G.layout.conv_total and meta["validation"] == v
    from editrt.config import DeltaEditConfig
    from editrt.methods.stylespace import DeltaEdit

    fs3 = torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(0))
    de = DeltaEdit(generator=G, clip=clip, config=DeltaEditConfig.preset("tiny"), mapper=mapper, fs3=fs3,
                   random_init=True)
    res = de.edit(de.codes_from_seeds([0]), "a red circle", "a circle", threshold=0.0)
    assert res.images.shape == (1, 1, 3, 32, 32)


def test_resume_gives_the_uninterrupted_result(tmp_path, nets, monkeypatch):
    G, clip = nets
    DT.train_delta_mapper(G, clip, tmp_path / "a.safetensors", SMALL, progress=False)
    calls = {"n": 0}
    real_step = torch.optim.Adam.step

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        DT.train_delta_mapper(G, clip, tmp_path / "b.safetensors", SMALL, progress=False)
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    assert (tmp_path / "b.partial.safetensors").is_file()
    DT.train_delta_mapper(G, clip, tmp_path / "b.safetensors", SMALL, progress=False)
    a, _ = DT.load_trained_mapper(tmp_path / "a.safetensors")
    b, _ = DT.load_trained_mapper(tmp_path / "b.safetensors")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), k


def test_bad_inputs_are_clear(tmp_path, nets):
    G, clip = nets
    with pytest.raises(InputError, match="safetensors"):
        DT.train_delta_mapper(G, clip, tmp_path / "m.pth", SMALL, progress=False)
    with pytest.raises(InputError, match="does not exist"):
        DT.train_delta_mapper(G, clip, tmp_path / "no" / "m.safetensors", SMALL, progress=False)
    with pytest.raises(InputError, match="steps"):
        DT.DeltaTrainConfig(steps=0)
    with pytest.raises(InputError, match="conv style layers"):
        DT.mapper_config_for(_layout_only(StyleGAN2("tiny").config.replace(size=8)), 64)


def test_cli_train_deltaedit(tmp_path, capsys):
    from editrt.cli import main

    out = tmp_path / "m.safetensors"
    argv = ["train", "deltaedit", "--generator", "tiny", "--clip", "tiny", "--random-weights", "--steps", "2",
            "--samples", "32", "--val-samples", "8", "--no-progress", "-o", str(out)]
    assert main(argv) == 0 and out.is_file()
    assert "validation loss" in capsys.readouterr().out
    assert main(argv[:-1] + [str(tmp_path / "m.pt")]) == 2


def test_shipped_toy_mapper_beats_predicting_no_change():
    from editrt.toy import models as TM

    mapper, meta = DT.load_trained_mapper(TM.toy_dir() / TM.MAPPER_FILE)
    v = meta["validation"]
    assert v["loss"] < 0.8 * v["zero_prediction_loss"]
    assert mapper.config.s_dim == StyleLayout.from_config("toy").conv_total
    assert meta["settings"]["generator"] == "toy" and meta["settings"]["clip_model"] == "tiny"


@pytest.mark.slow
def test_fresh_seed_reproduces_the_shipped_validation_loss(tmp_path):
    """`editrt train deltaedit` with another seed lands within 5% of the shipped mapper's validation
    loss (same validation pairs: they come from --val-seed). Minutes on a CPU."""
    from editrt.cli import main
    from editrt.toy import models as TM

    _, meta = DT.load_trained_mapper(TM.toy_dir() / TM.MAPPER_FILE)
    s = meta["settings"]
    out = tmp_path / "m.safetensors"
    pairs = ["--pairs", s["pairs"], "--pair-sigma", str(s["pair_sigma"])] if s.get("pairs") else []
    assert main(["train", "deltaedit", "--generator", "toy", "--clip", "tiny", "--seed", str(s["seed"] + 1),
                 "--steps", str(s["steps"]), "--samples", str(s["samples"]), *pairs, "--no-progress",
                 "-o", str(out)]) == 0
    _, fresh = DT.load_trained_mapper(out)
    assert abs(fresh["validation"]["loss"] - meta["validation"]["loss"]) <= 0.05 * meta["validation"]["loss"]
