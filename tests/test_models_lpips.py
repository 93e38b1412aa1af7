import warnings

import pytest
import torch

from editrt.models import lpips as L


@pytest.mark.parametrize("net,tv_name", [("vgg", "vgg16"), ("alex", "alexnet")])
def test_trunk_file_roundtrip_and_value_parity(tmp_path, net, tv_name):
    import lpips
    import torchvision

    torch.manual_seed(0)
    trunk = getattr(torchvision.models, tv_name)(weights=None)
    torch.save(trunk.state_dict(), tmp_path / "trunk.pth")
    ours = L.load_lpips(net, path=tmp_path / "trunk.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    ref.net.load_state_dict({k[4:]: v for k, v in L.trunk_state_dict_to_lpips(trunk.state_dict(), net).items()})
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    expected = ref(x, y, normalize=True).flatten()
    got = ours(x, y).flatten()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours(x, x).flatten(), torch.zeros(2), atol=1e-7)


def test_target_features_reused():
    d = L.load_lpips("vgg", random_init=True)
    y = torch.rand(1, 3, 48, 48)
    tgt = d.prepare_target(y)
    x = torch.rand(3, 3, 48, 48)
    assert torch.allclose(d.distance(x, tgt).flatten(), d(x, y.expand(3, -1, -1, -1)).flatten(), atol=1e-6)


def test_lin_heads_are_the_shipped_ones():
    import os

    import lpips

    d = L.load_lpips("vgg", random_init=True)
    shipped = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/vgg.pth"), weights_only=True,
                         map_location="cpu")
    assert torch.equal(d.lin_weights()[0], shipped["lin0.model.1.weight"])
