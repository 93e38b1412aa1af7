"""editrt.files: whole files or nothing, published with the umask's permissions (not 0600)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from editrt.files import atomic_open, atomic_path, atomic_write_bytes, atomic_write_json, current_umask, publish_mode


@pytest.fixture()
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_umask_is_read_without_changing_it(umask_027):
    assert current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # unchanged by the read


def test_published_files_follow_the_umask(tmp_path, umask_027):
    p = atomic_write_bytes(tmp_path / "a.bin", b"xyz")
    assert p.read_bytes() == b"xyz" and _mode(p) == 0o640
    atomic_write_json(tmp_path / "b.json", {"k": 1})
    assert json.loads((tmp_path / "b.json").read_text()) == {"k": 1} and _mode(tmp_path / "b.json") == 0o640
    assert publish_mode(directory=True) == 0o750


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_for_writers_that_want_a_file_name(tmp_path):
    import torch

    target = tmp_path / "t.pt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".t.pt.")
        torch.save({"x": torch.arange(3)}, tmp)
    assert torch.equal(torch.load(target)["x"], torch.arange(3))
    assert _mode(target) == publish_mode()


def test_store_artifacts_and_manifest_are_not_private(tmp_path, umask_027):
    from editrt.engines.store import ArtifactKey, ArtifactStore
    from editrt.models.registry import get_spec

    store = ArtifactStore(tmp_path / "engines")
    key = ArtifactKey.create(get_spec("clip/tiny/text"), "onnx", "fp32", "random-init:seed=0", opset=18)
    with store.staging() as stage:
        f = os.path.join(stage, "model.onnx")
        with open(f, "wb") as fh:
            fh.write(b"graph")
        art = store.put(key, {"model.onnx": f})
    assert _mode(store.manifest_path) == 0o640
    assert _mode(art.folder) == 0o750


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="whole files"):
        with atomic_open(tmp_path / "x", "a"):
            pass
