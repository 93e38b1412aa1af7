"""StyleCLIP-FEU: corpus index, retrieval, SVM direction (synthetic corpus with a known
direction), the edit, and its bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from editrt.config import FEUConfig
from editrt.errors import InputError
from editrt.methods import stylespace as sc
from editrt.methods.stylespace.feu import FEU, svm_direction
from editrt.models.clip import load_clip
from editrt.models.stylegan2 import StyleGAN2


def synthetic_corpus(direction: torch.Tensor, n: int = 400, seed: int = 0, strength: float = 2.0) -> torch.Tensor:
    """Unit embeddings = normalise(noise + a_i * direction), a_i ~ U(-strength, strength)."""
    gen = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, 1, generator=gen) * 2 - 1) * strength
    return F.normalize(torch.randn(n, direction.shape[0], generator=gen) / np.sqrt(direction.shape[0]) * 2
                       + a * direction, dim=1)


@pytest.fixture(scope="module")
def tiny():
    G = StyleGAN2.load("tiny", random_init=True, seed=0)
    clip = load_clip("tiny", random_init=True, seed=0)
    stats = sc.compute_channel_stats(G, n=256)
    fs3 = F.normalize(torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(2)), dim=1)
    return G, clip, stats, fs3


@pytest.mark.parametrize("kind", ["svc", "linear_svc"])
def test_retrieval_and_svm_recover_the_true_direction(kind):
    u = F.normalize(torch.randn(32, generator=torch.Generator().manual_seed(7)), dim=0)
    emb = synthetic_corpus(u)
    index = sc.CorpusIndex(emb, "fake", [str(i) for i in range(len(emb))], {})
    pos, neg = index.retrieve(u, 50)
    sims = emb @ u
    assert set(pos.tolist()) == set(torch.topk(sims, 50).indices.tolist())
    assert set(neg.tolist()) == set(torch.topk(-sims, 50).indices.tolist())
    normal, acc = svm_direction(emb[pos], emb[neg], C=1.0, kind=kind)
    assert acc == 1.0
    assert abs(float(normal.norm()) - 1) < 1e-5
    assert float(normal @ u) > 0.9  # points to the positives, close to the true direction


def test_svm_orientation_follows_positives():
    pos = torch.tensor([[1.0, 0.1], [1.0, -0.1], [0.9, 0.0]])
    neg = torch.tensor([[-1.0, 0.1], [-1.0, -0.1], [-0.9, 0.0]])
    n, _ = svm_direction(pos, neg)
    torch.testing.assert_close(n, torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)
    n, _ = svm_direction(neg, pos)
    torch.testing.assert_close(n, torch.tensor([-1.0, 0.0]), atol=1e-4, rtol=0)


def test_feu_direction_follows_the_instruction(tiny):
    G, clip, stats, fs3 = tiny
    query = sc.template_embeddings(clip, ["a smiling face"])[0]
    emb = synthetic_corpus(query, n=300, seed=3)
    index = sc.CorpusIndex(emb, clip.name, [f"img{i}" for i in range(300)], {"source": "synthetic"})
    feu = FEU(G, clip, FEUConfig.preset("tiny").replace(k=40), corpus=index, fs3=fs3, stats=stats)
    dt, info = feu.direction("a smiling face")
    assert float(dt @ query) > 0.9 and info["svm_train_accuracy"] == 1.0
    assert len(info["positives"]) == 40 and not set(info["positives"]) & set(info["negatives"])

    code = feu.codes_from_seeds([1, 2])
    res = feu.edit(code, "a smiling face", alpha=[1.0, 2.0], beta=0.05)
    assert res.images.shape == (2, 2, 3, 32, 32) and res.channels_changed > 0
    r, _ = sc.boundary(fs3, dt, 0.05)
    ds = sc.split_delta(r, stats.std)
    torch.testing.assert_close(res.codes[1].flat(), code.flat() + 2.0 * ds.flat())
    torch.testing.assert_close(res.direction, dt)


def test_corpus_index_round_trip_and_clip_mismatch(tmp_path):
    emb = F.normalize(torch.randn(10, 8), dim=1)
    index = sc.CorpusIndex(emb, "ViT-B-32", [f"{i}.png" for i in range(10)], {"source": "folder"},
                           s_codes=torch.randn(10, 5))
    path = index.save(tmp_path / "corpus.safetensors")
    back = sc.CorpusIndex.load(path, clip_model="ViT-B-32")
    torch.testing.assert_close(back.embeddings, emb)
    torch.testing.assert_close(back.s_codes, index.s_codes)
    assert back.items == index.items and back.provenance["source"] == "folder"
    with pytest.raises(InputError, match="built with CLIP 'ViT-B-32'"):
        sc.CorpusIndex.load(path, clip_model="RN50")


def test_empty_corpus_and_k_too_large(tiny, tmp_path):
    G, clip, stats, fs3 = tiny
    empty = sc.CorpusIndex(torch.zeros(0, clip.embed_dim), clip.name, [], {})
    with pytest.raises(InputError, match="empty"):
        FEU(G, clip, FEUConfig.preset("tiny"), corpus=empty, fs3=fs3, stats=stats)
    with pytest.raises(InputError, match="empty"):
        empty.retrieve(torch.ones(clip.embed_dim), 1)
    small = sc.CorpusIndex(F.normalize(torch.randn(10, clip.embed_dim), dim=1), clip.name,
                           [str(i) for i in range(10)], {})
    feu = FEU(G, clip, FEUConfig.preset("tiny"), corpus=small, fs3=fs3, stats=stats)
    with pytest.raises(InputError, match="k=8 needs at least 16"):
        feu.edit(feu.codes_from_seeds([0]), "smiling face")
    with pytest.raises(InputError, match="positive integer"):
        feu.edit(feu.codes_from_seeds([0]), "smiling face", k=0)
    other = sc.CorpusIndex(small.embeddings, "ViT-B-32", small.items, {})
    with pytest.raises(InputError, match="rebuild"):
        FEU(G, clip, FEUConfig.preset("tiny"), corpus=other, fs3=fs3, stats=stats)
    with pytest.raises(InputError, match="corpus"):
        FEU(G, clip, FEUConfig.preset("tiny"), fs3=fs3, stats=stats)  # real weights need a corpus
    with pytest.raises(InputError):
        FEUConfig(k=0)
    with pytest.raises(InputError):
        FEUConfig(alpha=float("nan"))


def test_build_corpus_from_folder_and_generator(tiny, tmp_path):
    from PIL import Image

    G, clip, _, _ = tiny
    rng = np.random.RandomState(0)
    (tmp_path / "sub").mkdir()
    for i, size in enumerate([(40, 40), (64, 48), (50, 80)]):
        Image.fromarray(rng.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            tmp_path / ("sub" if i == 2 else ".") / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    index = sc.build_corpus_from_folder(clip, tmp_path, progress=False)
    assert len(index) == 3 and index.items == ["im0.png", "im1.png", "sub/im2.png"]
    torch.testing.assert_close(index.embeddings.norm(dim=1), torch.ones(3))
    with pytest.raises(InputError, match="no images"):
        sc.build_corpus_from_folder(clip, _empty_dir(tmp_path), progress=False)

    gen_index = sc.build_corpus_from_generator(clip, G, 6, seed=1, batch_size=4, progress=False)
    assert gen_index.s_codes.shape == (6, G.layout.conv_total)
    assert gen_index.provenance["generator"] == "tiny" and gen_index.clip_model == "tiny"
    z = torch.from_numpy(np.random.RandomState(1).randn(4, G.style_dim)).float()
    code = G.styles_from_w(G.mapping(z, psi=0.7, cutoff=8))
    torch.testing.assert_close(gen_index.s_codes[:4], code.conv_view())


def _empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d
