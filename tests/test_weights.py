import pytest
import torch

from editrt import known_files, weights as W
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
    monkeypatch.setattr(known_files, "_download", lambda *a: called.append(a))
    with pytest.raises(WeightsError) as err:
        W.resolve("test/model")
    msg = str(err.value)
    assert str(tmp_path / "test" / "model.pt") in msg and "https://example.invalid/m.pt" in msg
    assert "--random-weights" in msg and not called
    with pytest.raises(WeightsError, match="not found"):
        W.resolve("test/model", path=tmp_path / "nope.pt")


class _Custom:
    pass


def test_load_checkpoint_refuses_pickled_code_and_names_the_global(tmp_path):
    p = tmp_path / "bad.pt"
    torch.save({"obj": _Custom(), "w": torch.ones(1)}, p)
    with pytest.raises(WeightsError, match="allow_pickle") as err:
        W.load_checkpoint(p)
    assert f"{_Custom.__module__}._Custom" in str(err.value)
    assert isinstance(W.load_checkpoint(p, allow_pickle=True)["obj"], _Custom)
    legacy = tmp_path / "legacy.pt"
    torch.save({"obj": _Custom(), "w": torch.ones(1)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match="_Custom"):
        W.load_checkpoint(legacy)


@pytest.mark.parametrize("content,phrase", [
    (bytes(range(256)) * 8, "not a checkpoint: neither a zip"),  # random bytes
    (b"", "an empty file"),
])
def test_random_bytes_are_not_reported_as_pickles(tmp_path, content, phrase):
    for name in ("model.pt", "last.ckpt", "net.pth", "fs3.npy"):
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(WeightsError, match=phrase) as err:
            W.load_checkpoint(p)
        assert "allow_pickle" not in str(err.value) and "--allow-pickle" not in str(err.value)


def test_truncated_legacy_pickle(tmp_path):
    p = tmp_path / "legacy.pt"
    torch.save({"w": torch.randn(50), "ns": {"a": 1}}, p, _use_new_zipfile_serialization=False)
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(WeightsError, match="truncated") as err:
        W.load_checkpoint(p)
    assert "allow_pickle" not in str(err.value)


def test_npy_arrays(tmp_path):
    import numpy as np

    np.save(tmp_path / "ok.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    assert W.load_array(tmp_path / "ok.npy").shape == (2, 3)
    assert torch.equal(W.load_checkpoint(tmp_path / "ok.npy"), torch.arange(6.0).reshape(2, 3))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(WeightsError, match="Python objects"):
        W.load_array(tmp_path / "obj.npy")
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 8])
    with pytest.raises(WeightsError, match="truncated"):
        W.load_array(tmp_path / "cut.npy")
    (tmp_path / "rand.npy").write_bytes(bytes(range(200)))
    with pytest.raises(WeightsError, match="not an .npy array: it is not a checkpoint") as err:
        W.load_array(tmp_path / "rand.npy")
    assert "pickle" not in str(err.value).split("it is")[0]
    torch.save({"w": torch.ones(2)}, tmp_path / "model.npy")  # a torch file under an .npy name
    with pytest.raises(WeightsError, match="not an .npy array: it is a torch.save zip archive"):
        W.load_array(tmp_path / "model.npy")


def test_lightning_training_state_read_as_inert_placeholders(tmp_path, monkeypatch):
    """taming's last.ckpt pickles Lightning callback classes; weights-only loading can read the
    weights when those globals are stubbed, without importing Lightning."""
    import sys
    import types

    mod = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        pass

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = mod.__name__, "ModelCheckpoint"
    mod.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        monkeypatch.setitem(sys.modules, name, mod if name == mod.__name__ else types.ModuleType(name))
    p = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "callbacks": {ModelCheckpoint: {"best": 1.0}}}, p)
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", mod.__name__):
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(WeightsError, match="pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"):
        W.load_checkpoint(p)
    state = W.load_checkpoint(p, stub_globals=("pytorch_lightning.",))
    assert torch.equal(state["state_dict"]["w"], torch.ones(2))
    assert "pytorch_lightning" not in sys.modules


def test_load_checkpoint_truncated_and_safetensors(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.randn(100, 100)}, p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="truncated or damaged zip") as err:
        W.load_checkpoint(p)
    assert "allow_pickle" not in str(err.value)
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
