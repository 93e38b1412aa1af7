import pytest
import torch

from editrt.errors import InputError
from editrt.methods import stylespace as sc
from editrt.models.clip import load_clip, trim_padding


def test_template_embeddings_are_cached_per_model():
    clip = load_clip("tiny", random_init=True, seed=0)
    calls = []
    original = clip.encode_text
    clip.encode_text = lambda tokens: calls.append(tokens.shape[0]) or original(tokens)
    a = sc.template_embeddings(clip, ["smiling face", "face"])
    assert calls == [len(sc.IMAGENET_TEMPLATES)] * 2  # one batch per class
    b = sc.template_embeddings(clip, ["face", "face with glasses"])  # only the new class is encoded
    assert calls[2:] == [len(sc.IMAGENET_TEMPLATES)]
    assert torch.equal(a[1], b[0])
    other = load_clip("tiny", random_init=True, seed=1)  # another model never reuses these
    assert not torch.allclose(sc.template_embeddings(other, ["face"])[0], a[1])
    b[0].zero_()  # callers get copies
    assert torch.equal(sc.template_embeddings(clip, ["face"])[0], a[1])


def test_trimmed_tokens_give_the_full_context_embeddings():
    """Under the causal mask, dropping the padding after the last end token changes nothing."""
    clip = load_clip("tiny", random_init=True, seed=0).eval()
    prompts = [t.format("smiling face") for t in sc.IMAGENET_TEMPLATES[:12]] + ["a"]
    tokens = clip.tokenize(prompts)
    trimmed = trim_padding(tokens)
    longest = max(int(r.argmax()) for r in tokens) + 1
    assert trimmed.shape == (len(prompts), longest) and longest < clip.context_length
    with torch.no_grad():
        full, short = clip.encode_text(tokens), clip.encode_text(trimmed)
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(short[0], short[1])  # distinct prompts stay distinct


def test_full_rows_are_open_clips_encode_text_bit_for_bit():
    """The one sliced path at 77 tokens is open_clip's own encoding (FlexIT's exact reference)."""
    clip = load_clip("tiny", random_init=True, seed=0).eval()
    tokens = clip.tokenize(["a photo of a dog", "a bright photo of the cat"])
    with torch.no_grad():
        assert torch.equal(clip.encode_text(tokens), clip.model.encode_text(tokens))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(clip.encode_text(tokens), clip.model.encode_text(tokens))


def test_template_embeddings_match_the_untrimmed_reference():
    """``zeroshot_classifier`` on full 77-token batches (the reference) = the trimmed per-class path."""
    clip = load_clip("tiny", random_init=True, seed=3).eval()
    names = ["smiling face", "face with a very long beard and round glasses"]
    with torch.no_grad():
        ref = []
        for c in names:
            e = torch.nn.functional.normalize(clip.encode_text(clip.tokenize(
                [t.format(c) for t in sc.IMAGENET_TEMPLATES])), dim=-1).mean(0)
            ref.append(e / e.norm())
    torch.testing.assert_close(sc.template_embeddings(clip, names), torch.stack(ref), rtol=1e-5, atol=1e-5)


def test_over_long_token_rows_are_rejected():
    clip = load_clip("tiny", random_init=True, seed=0)
    with pytest.raises(InputError, match="context length"):
        clip.encode_text(torch.zeros(1, clip.context_length + 1, dtype=torch.long))
