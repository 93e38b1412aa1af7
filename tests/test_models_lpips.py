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


def _alex_trunk(seed=0):
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.alexnet(weights=None).state_dict()


def test_trunk_found_where_users_have_it(tmp_path, monkeypatch):
    """torchvision's file name in a flat folder, in torch hub's cache, or any .pth of features.* keys."""
    monkeypatch.setenv("EDITRT_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    sd = _alex_trunk(1)
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    flat = tmp_path / "downloads"
    flat.mkdir()
    torch.save(sd, flat / "alexnet-owt-7be5be79.pth")
    ref = L.load_lpips("alex", weights=flat)(x, y)
    hub = L.torch_hub_checkpoints()
    hub.mkdir(parents=True)
    torch.save(sd, hub / "alexnet-owt-7be5be79.pth")
    assert torch.equal(L.load_lpips("alex")(x, y), ref)
    features_only = {k: v for k, v in sd.items() if k.startswith("features.")}
    torch.save({"state_dict": {f"module.{k}": v for k, v in features_only.items()}}, tmp_path / "mine.pth")
    assert torch.equal(L.load_lpips("alex", path=tmp_path / "mine.pth")(x, y), ref)
    lp = L.load_lpips("alex", path=tmp_path / "mine.pth").lp.state_dict()
    torch.save({k: v for k, v in lp.items() if k.startswith("net.")}, tmp_path / "lpips_trunk.pth")
    assert torch.equal(L.load_lpips("alex", path=tmp_path / "lpips_trunk.pth")(x, y), ref)


def test_wrong_trunk_files_are_named(tmp_path, monkeypatch):
    from editrt.errors import WeightsError

    monkeypatch.setenv("EDITRT_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.save({"classifier.1.weight": torch.zeros(2)}, tmp_path / "head.pth")
    with pytest.raises(WeightsError, match="no torchvision 'features"):
        L.load_lpips("alex", path=tmp_path / "head.pth")
    with pytest.raises(WeightsError, match="missing checkpoint for lpips/vgg"):
        L.load_lpips("vgg")
    with pytest.raises(WeightsError, match="shape mismatch"):
        torch.save(_alex_trunk(), tmp_path / "alex.pth")
        L.load_lpips("vgg", path=tmp_path / "alex.pth")


def test_toy_lpips_is_the_seeded_alex_trunk():
    a, b = L.load_lpips("toy"), L.load_lpips("alex", random_init=True, seed=L.TOY_TRUNK_SEED)
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    assert a.net_name == "alex" and torch.equal(a(x, y), b(x, y))
