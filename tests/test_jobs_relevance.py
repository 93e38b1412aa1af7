"""Relevance shards without Ray: row ranges of compute_relevance merge into the full matrix."""

import pytest
import torch

from editrt.errors import InputError
from editrt.jobs.relevance import _finished_shard, _shard_path, shard_ranges
from editrt.methods.stylespace import compute_channel_stats, compute_relevance
from editrt.methods.stylespace.provenance import save_tensors
from editrt.methods.stylespace.relevance_matrix import _relevance_meta, check_row_range


@pytest.fixture(scope="module")
def nets():
    from editrt.models.clip import load_clip
    from editrt.models.stylegan2 import StyleGAN2

    G, clip = StyleGAN2.load("tiny", random_init=True), load_clip("tiny", random_init=True)
    return G, clip, compute_channel_stats(G, n=64)


def test_row_ranges_merge_into_the_full_matrix(nets):
    G, clip, stats = nets
    full = compute_relevance(G, clip, stats, n_images=1, batch_size=40, progress=False)
    ranges = shard_ranges(G.layout.conv_total, 50)
    assert ranges[0] == (0, 50) and ranges[-1][1] == G.layout.conv_total
    parts = [compute_relevance(G, clip, stats, n_images=1, batch_size=40, progress=False, rows=r) for r in ranges]
    assert [p.shape[0] for p in parts] == [b - a for a, b in ranges]
    assert torch.equal(torch.cat(parts), full)  # batches cut elsewhere, same rows


def test_bad_row_ranges():
    assert check_row_range(None, 10) == (0, 10) and check_row_range((2, 5), 10) == (2, 5)
    for bad in [(5, 5), (-1, 3), (0, 11), (3, 2), "ab", (1,)]:
        with pytest.raises(InputError):
            check_row_range(bad, 10)
    with pytest.raises(InputError, match="shard-rows"):
        shard_ranges(10, 0)


def test_shards_with_other_settings_are_redone(nets, tmp_path):
    G, clip, stats = nets
    meta = _relevance_meta(G, clip, stats, 1, 5.0, 5, 0.7, 8)
    rows, dim = (0, 4), clip.embed_dim
    path = _shard_path(tmp_path, rows)
    save_tensors({"fs3": torch.ones(4, dim)}, {**meta, "shard": list(rows), "created": "x"}, path)
    assert torch.equal(_finished_shard(path, meta, rows, dim), torch.ones(4, dim))
    assert _finished_shard(path, {**meta, "sigma": 3.0}, rows, dim) is None
    assert _finished_shard(path, meta, (0, 5), dim) is None
    path.write_bytes(b"garbage")
    assert _finished_shard(path, meta, rows, dim) is None
    assert _finished_shard(tmp_path / "missing.safetensors", meta, rows, dim) is None
