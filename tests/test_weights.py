import pytest
import torch

from editrt import weights as W
from editrt.errors import WeightsError


@pytest.fixture
def entry():
    return W.register_known(W.KnownFile("test/model", "test/model.pt", "https://example.invalid/m.pt", "get it"))


def test_resolution_order(tmp_path, monkeypatch, entry):
    home = tmp_path / "home"
    (home / "test").mkdir(parents=True)
    (home / "test" / "model.pt").write_bytes(b"h")
    monkeypatch.setenv("EDITRT_HOME", str(home))
    folder = tmp_path / "folder"
    (folder / "test").mkdir(parents=True)
    (folder / "test" / "model.pt").write_bytes(b"f")
    explicit = tmp_path / "explicit.pt"
    explicit.write_bytes(b"e")
    assert W.resolve("test/model") == home / "test" / "model.pt"
    assert W.resolve("test/model", weights=folder) == folder / "test" / "model.pt"
    assert W.resolve("test/model", weights={"test/model": explicit}) == explicit
    assert W.resolve("test/model", path=explicit, weights=folder) == explicit


def test_missing_names_expected_file_and_never_downloads(tmp_path, monkeypatch, entry):
    monkeypatch.setenv("EDITRT_HOME", str(tmp_path))
    called = []
    monkeypatch.setattr(W, "_download", lambda *a: called.append(a))
    with pytest.raises(WeightsError) as err:
        W.resolve("test/model")
    msg = str(err.value)
    assert str(tmp_path / "test" / "model.pt") in msg and "https://example.invalid/m.pt" in msg
    assert "--random-weights" in msg and not called
    with pytest.raises(WeightsError, match="not found"):
        W.resolve("test/model", path=tmp_path / "nope.pt")


class _Custom:
    pass


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    p = tmp_path / "bad.pt"
    torch.save({"obj": _Custom(), "w": torch.ones(1)}, p)
    with pytest.raises(WeightsError, match="allow_pickle"):
        W.load_checkpoint(p)
    assert isinstance(W.load_checkpoint(p, allow_pickle=True)["obj"], _Custom)


def test_load_checkpoint_truncated_and_safetensors(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.randn(100, 100)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        W.load_checkpoint(p)
    from safetensors.torch import save_file

    s = tmp_path / "m.safetensors"
    save_file({"w": torch.ones(3)}, str(s))
    assert torch.equal(W.load_checkpoint(s)["w"], torch.ones(3))
    s.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match="safetensors"):
        W.load_checkpoint(s)


def test_load_into_reports_mismatch():
    m = torch.nn.Linear(3, 4)
    with pytest.raises(WeightsError, match="shape mismatch"):
        W.load_into(m, {"weight": torch.zeros(4, 5), "bias": torch.zeros(4)}, what="lin")
    with pytest.raises(WeightsError, match="missing key"):
        W.load_into(m, {"weight": torch.zeros(4, 3)}, what="lin")


def test_seeded_is_deterministic_and_restores_rng():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with W.seeded(7):
        a = torch.randn(3)
    assert torch.equal(torch.get_rng_state(), state)
    with W.seeded(7):
        b = torch.randn(3)
    assert torch.equal(a, b)
