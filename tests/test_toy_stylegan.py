"""The toy StyleGAN2: its training loop (a few steps), the encoder, and the shipped generator files."""

import pytest
import torch

from editrt.models.stylegan2 import STYLEGAN2_CONFIGS, StyleGAN2
from editrt.toy import models as TM
from editrt.toy import stylegan as S


def test_training_loop_runs_and_is_seeded(tmp_path):
    ckpt = tmp_path / "ckpt.safetensors"
    G, E, rep = S.train_toy_stylegan2(steps=4, batch=4, seed=3, progress=False, checkpoint=ckpt,
                                      checkpoint_every=2, stop_at=3)
    assert G.config == STYLEGAN2_CONFIGS["toy"] and rep["steps_run"] == 3 and rep["steps"] == 4
    assert ckpt.is_file() and not G.training and not E.training
    for key in ("train_loss_ema", "heldout_reconstruction_l1", "heldout_kl_nats"):
        assert torch.isfinite(torch.tensor(rep[key]))
    G2, _, rep2 = S.train_toy_stylegan2(steps=4, batch=4, seed=3, progress=False, stop_at=3)
    assert rep2["train_loss_ema"] == rep["train_loss_ema"]
    assert torch.equal(G.conv1.conv.weight, G2.conv1.conv.weight)


def test_encoder_inverts_into_w():
    G = StyleGAN2.random("toy", seed=0)
    E = S.ToyStyleEncoder(G.style_dim).eval()
    x = torch.rand(2, 3, 64, 64)  # world images are 64 px; the encoder resizes to 32
    mu, logvar = E(x)
    assert mu.shape == logvar.shape == (2, 64)
    w = E.invert(G, x)
    assert w.shape == (2, 64) and torch.allclose(w, G.mapping(mu))


def test_sample_recognition_counts():
    from editrt.toy.world import CLASSES

    G = StyleGAN2.random("toy", seed=0)
    always_red = lambda x: torch.nn.functional.one_hot(torch.zeros(x.shape[0], dtype=torch.long), 24).float() * 20  # noqa: E731
    rep = S.sample_recognition(G, always_red, n=10, batch=4)
    assert rep["share_confident"] == 1.0 and rep["per_class"][CLASSES[0]] == 10 and rep["classes_covered"] == 1


@pytest.fixture(scope="module")
def toy_style():
    assert TM.style_available(), "the toy StyleGAN2 world must ship in editrt/data/toy (scripts/train_toy.py)"
    return TM.load_toy_style()


def test_shipped_generator_matches_its_manifest(toy_style):
    man = TM.manifest()["models"]
    for name in ("stylegan2", "stylegan2_encoder", "stylegan2_stats", "stylegan2_fs3", "stylegan2_corpus",
                 "deltaedit_mapper"):
        assert name in man, name
    assert (TM.toy_dir() / TM.STYLEGAN2_FILE).stat().st_size < 4_000_000
    rep = man["stylegan2"]["samples"]["psi_1.0"]
    again = S.sample_recognition(toy_style.generator, toy_style.classifier, n=rep["n"], psi=1.0, seed=0)
    assert abs(again["share_confident"] - rep["share_confident"]) < 0.01
    assert again["share_confident"] > 0.2  # most classes are recognisable (see the manifest for the share)


def test_shipped_encoder_inverts_toy_images(toy_style):
    from editrt.toy import world

    cls = [world.class_index(c) for c in ("red circle", "blue square", "green cross", "yellow circle")]
    x = world.make_images(cls, world.STREAM_QUERY, [0] * 4)
    with torch.no_grad():
        rec = ((toy_style.generator.synthesize(toy_style.invert(x)) + 1) / 2).clamp(0, 1)
        pred = toy_style.classifier(rec).argmax(1)
    colour = [world.colour_of(int(p)) for p in pred]
    assert sum(c == world.colour_of(k) for c, k in zip(colour, cls)) >= 3  # the colour survives inversion
