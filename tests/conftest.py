"""Shared fixtures: CPU only, few threads, an isolated EDITRT_HOME, tiny seeded models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real checkpoint store (nor torch hub's download cache)."""
    monkeypatch.setenv("EDITRT_HOME", str(tmp_path_factory.mktemp("editrt_home")))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


@pytest.fixture(scope="session")
def tiny_models():
    """Seeded random tiny CLIP ensemble, tiny VQGAN and LPIPS-vgg (shared, read-only)."""
    from editrt.models.clip import load_ensemble
    from editrt.models.lpips import load_lpips
    from editrt.models.vqgan import load_vqgan

    return {"clip": load_ensemble(["tiny"], random_init=True, seed=0),
            "vqgan": load_vqgan("tiny", random_init=True, seed=0),
            "lpips": load_lpips("vgg", random_init=True, seed=0)}


@pytest.fixture
def small_resnet_clip_config(tmp_path) -> str:
    """Path of an open_clip model-config JSON for a ModifiedResNet CLIP of a few channels (64 px)."""
    import json

    path = tmp_path / "rn-small.json"
    path.write_text(json.dumps({"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
                                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                                             "layers": 1}}))
    return str(path)


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    has_cuda = torch.cuda.is_available()
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)
