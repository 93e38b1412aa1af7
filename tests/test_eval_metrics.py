"""FlexIT protocol metrics against hand-computed cases."""

import math

import pytest
import torch

from editrt.errors import InputError
from editrt.eval import metrics as M


def test_sfid_of_identical_sets_is_zero():
    f = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    assert M.sfid(f, f) == pytest.approx(0.0, abs=1e-12)
    assert M.sfid(f, f, covariance=False) == pytest.approx(0.0, abs=1e-12)


def test_sfid_hand_computed():
    a = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean (1, 1), unbiased std (sqrt2, sqrt2)
    b = torch.tensor([[1.0, 3.0], [1.0, 5.0]])  # mean (1, 4), std (0, sqrt2)
    mean_term = 0.0 + 9.0
    cov_term = (math.sqrt(2) - 0.0) ** 2 + 0.0
    assert M.sfid(a, b) == pytest.approx(mean_term + cov_term)
    assert M.sfid(a, b, covariance=False) == pytest.approx(mean_term)  # the reference eval.py value
    assert M.sfid(a, b) == pytest.approx(M.sfid(b, a))


def test_csfid_averages_per_class_not_per_sample():
    ref = {0: M.FeatureStats(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 10),
           7: M.FeatureStats(torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64), 10)}
    # class 0: three outputs at 2 -> mean 2, std 0 -> SFID 4; class 7: one output at 4 -> SFID 9
    feats = torch.tensor([[2.0], [2.0], [2.0], [4.0]])
    labels = [0, 0, 0, 7]
    assert M.csfid(feats, labels, ref) == pytest.approx((4.0 + 9.0) / 2)  # per-sample mean would be 5.25
    with pytest.raises(InputError):
        M.csfid(feats, [0, 0, 0, 3], ref)


def test_single_sample_class_has_zero_std():
    st = M.FeatureStats.of(torch.tensor([[1.0, 2.0]]))
    assert st.std.tolist() == [0.0, 0.0]


def test_restricted_argmax_ignores_other_classes():
    logits = torch.tensor([[9.0, 1.0, 2.0, 3.0], [0.0, 5.0, 1.0, 0.0]])
    assert M.restricted_argmax(logits, [1, 2, 3]).tolist() == [3, 1]


def test_lpips_of_image_with_itself_is_zero():
    from editrt.models.lpips import load_lpips

    net = load_lpips("alex", random_init=True, seed=0)
    x = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    d = M.lpips_to_inputs(net, x, x.clone())
    assert d.shape == (2,) and torch.all(d.abs() < 1e-6)
    y = (x + 0.2 * torch.rand_like(x)).clamp(0, 1)
    assert torch.all(M.lpips_to_inputs(net, y, x) > 1e-4)


def test_resize_center_crop_and_quantize():
    x = torch.rand(1, 3, 30, 60)
    y = M.resize_center_crop(x, 16)
    assert y.shape == (1, 3, 16, 16)
    q = M.quantize_uint8(torch.tensor([0.0, 0.5, 0.99, 1.0]))
    assert q.mul(255).tolist() == pytest.approx([0.0, 127.0, 252.0, 255.0])
    k = torch.arange(256) / 255.0  # 8-bit values pass through unchanged
    assert torch.equal(M.quantize_uint8(k).mul(255).round(), torch.arange(256).float())


def test_reference_stats_roundtrip(tmp_path):
    feats = torch.randn(12, 5, generator=torch.Generator().manual_seed(2))
    st = M.ReferenceStats.of(feats, [0] * 4 + [3] * 8)
    st.save(tmp_path / "s.safetensors")
    back = M.ReferenceStats.load(tmp_path / "s.safetensors")
    assert sorted(back.per_class) == [0, 3] and back.per_class[3].count == 8
    assert torch.allclose(back.overall.mean, st.overall.mean)
    assert M.sfid(feats[4:], back.per_class[3]) == pytest.approx(0.0, abs=1e-9)
