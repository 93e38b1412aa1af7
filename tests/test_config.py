import dataclasses
import json

import pytest

from editrt.config import FlexITConfig
from editrt.errors import InputError


def test_paper_defaults():
    c = FlexITConfig()
    assert c.clip_models == ("RN50x4", "ViT-B-32", "RN50")
    assert (c.n_augment, c.steps, c.image_size, c.lr) == (8, 160, 288, 0.05)
    assert (c.lpips_weight, c.latent_weight, c.source_coef, c.image_coef) == (0.15, 0.05, 0.4, 0.2)
    assert (c.rotation_degrees, c.crop_scale, c.crop_ratio, c.hflip) == (10.0, (0.8, 1.0), (0.9, 1.1), True)
    assert c.reference_noise is False


def test_reference_presets():
    final = FlexITConfig.preset("reference_final")
    assert final.clip_models == ("ViT-B-32", "RN50x4", "RN50", "ViT-B-16", "RN50x16")
    assert final.n_augment == 1 and final.image_coef == 0.2
    cls = FlexITConfig.preset("reference_class_defaults")
    assert (cls.lpips_weight, cls.image_coef, cls.steps, cls.n_augment) == (0.2, 0.0, 256, 8)
    with pytest.raises(InputError, match="unknown preset"):
        FlexITConfig.preset("nope")


def test_frozen_hashable_and_roundtrip(tmp_path):
    c = FlexITConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0
    assert hash(c) == hash(FlexITConfig())
    assert FlexITConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.fingerprint() == FlexITConfig().fingerprint() != c.replace(lr=0.1).fingerprint()
    p = tmp_path / "c.yaml"
    p.write_text("preset: tiny\nsteps: 3\ncrop_scale: [0.5, 1.0]\n")
    got = FlexITConfig.from_file(p)
    assert got.steps == 3 and got.crop_scale == (0.5, 1.0) and got.clip_models == ("tiny",)


@pytest.mark.parametrize("bad", [{"steps": -1}, {"lr": 0}, {"n_augment": -1}, {"image_size": 100},
                                 {"crop_scale": (0.9, 0.5)}, {"autocast": "fp8"}, {"clip_models": ()}])
def test_invalid_values(bad):
    with pytest.raises(InputError):
        FlexITConfig().replace(**bad)


def test_unknown_option_and_bad_file(tmp_path):
    with pytest.raises(InputError, match="unknown option"):
        FlexITConfig.from_dict({"learning_rate": 1})
    p = tmp_path / "c.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not valid"):
        FlexITConfig.from_file(p)
    with pytest.raises(InputError, match="cannot read"):
        FlexITConfig.from_file(tmp_path / "missing.json")
