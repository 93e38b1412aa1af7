"""The procedural toy world: classes, clusters, queries, determinism."""

import collections

import numpy as np
import torch

from editrt.toy import world as W


def test_classes_and_clusters():
    assert len(W.CLASSES) == 24 and W.CLASSES[W.class_index("red circle")] == "red circle"
    for c in range(len(W.CLASSES)):
        rel = W.related_classes(c)
        assert len(rel) == 8
        assert collections.Counter(k for _, k in rel) == {"colour": 5, "shape": 3}
    assert len(W.clusters()) == 10


def test_queries_split():
    qs = W.toy_queries()
    assert len(qs) == 192 and sum(q.is_test for q in qs) == 96
    per_target = collections.Counter((q.target_id, q.is_test) for q in qs)
    assert set(per_target.values()) == {4}
    assert all(q.source_id != q.target_id for q in qs)


def test_images_deterministic_and_distinct():
    a = W.make_image(3, W.STREAM_QUERY, 5)
    assert a.shape == (3, 64, 64) and a.dtype == torch.float32 and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, W.make_image(3, W.STREAM_QUERY, 5))
    assert not torch.equal(a, W.make_image(3, W.STREAM_RETRIEVE, 5))
    q = W.toy_queries()[0]
    assert not torch.equal(W.query_image(q), W.retrieve_image(q))


def test_object_has_its_colour():
    # the most saturated pixels of a "blue" image are blue-dominant, of a "red" image red-dominant
    for name, channel in (("blue square", 2), ("red circle", 0), ("green cross", 1)):
        x = W.make_image(W.class_index(name), W.STREAM_TRAIN, 0)
        sat = x.amax(0) - x.amin(0)
        obj = x[:, sat > 0.5]
        assert obj.shape[1] > 30
        assert int(obj.mean(1).argmax()) == channel


def test_captions_mention_class():
    rng = np.random.default_rng(0)
    for c in range(len(W.CLASSES)):
        cap = W.caption(c, rng)
        assert W.colour_of(c) in cap and W.shape_of(c) in cap
