import torch

from editrt.methods import stylespace as sc
from editrt.models.clip import load_clip


def test_template_embeddings_are_cached_per_model():
    clip = load_clip("tiny", random_init=True, seed=0)
    calls = []
    original = clip.encode_text
    clip.encode_text = lambda tokens: calls.append(tokens.shape[0]) or original(tokens)
    a = sc.template_embeddings(clip, ["smiling face", "face"])
    assert calls == [2 * len(sc.IMAGENET_TEMPLATES)]
    b = sc.template_embeddings(clip, ["face", "face with glasses"])  # only the new class is encoded
    assert calls[1:] == [len(sc.IMAGENET_TEMPLATES)]
    assert torch.equal(a[1], b[0])
    other = load_clip("tiny", random_init=True, seed=1)  # another model never reuses these
    assert not torch.allclose(sc.template_embeddings(other, ["face"])[0], a[1])
    b[0].zero_()  # callers get copies
    assert torch.equal(sc.template_embeddings(clip, ["face"])[0], a[1])
