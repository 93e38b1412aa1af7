"""One catalog of model families, one loader signature, pre-processing on the specs."""

import pytest
import torch

from editrt import weights as W
from editrt.errors import BackendUnavailable, InputError, WeightsError
from editrt.models import catalog, registry


@pytest.mark.parametrize("family", [f.name for f in catalog.FAMILIES])
def test_every_family_has_the_one_loader_signature(family):
    assert catalog.signature_problems(catalog.loader(family)) == []


def test_signature_check_can_fail():
    def odd(name, *, weights=None, seed=0):
        return name

    assert catalog.signature_problems(odd)


TINY = {"clip": "tiny", "vqgan": "tiny", "lpips": "alex", "stylegan2": "tiny", "e4e": "tiny", "deltaedit": "tiny"}


def test_every_family_loads_by_name_through_the_catalog():
    assert set(TINY) == {f.name for f in catalog.FAMILIES}
    for family, name in TINY.items():
        a = catalog.load(family, name, random_init=True, seed=3)
        b = catalog.load(family, name, random_init=True, seed=3)
        assert isinstance(a, torch.nn.Module) and not a.training
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), family
    with pytest.raises(InputError, match="unknown loader option"):
        catalog.load("clip", "tiny", random_init=True, config_path="x")
    with pytest.raises(InputError, match="unknown model family"):
        catalog.load("biggan", "tiny")


def test_specs_and_checkpoint_list_cover_every_family():
    prefixes = {n.split("/")[0] for n in registry.list_specs()}
    assert prefixes == {f.name for f in catalog.FAMILIES if f.exportable}
    keys = W.known_files()
    assert {k.split("/")[0] for k in keys} >= {f.name for f in catalog.FAMILIES} | {"eval", "styleclip"}


def test_a_missing_dependency_is_an_error_naming_it(monkeypatch):
    fake = catalog.Family("fake", "editrt_missing_dep_for_test.models", "load",
                          (("editrt_missing_dep_for_test", "editrt-missing-dep"),))
    monkeypatch.setattr(catalog, "FAMILIES", (*catalog.FAMILIES, fake))
    with pytest.raises(BackendUnavailable, match="pip install editrt-missing-dep"):
        catalog.import_family("fake")
    with pytest.raises(BackendUnavailable, match="editrt-missing-dep"):
        registry.list_specs()


def test_the_checkpoint_table_agrees_with_the_model_modules_and_libraries():
    """The table is data (``editrt weights`` imports no model code): it must list what the loaders
    resolve, with the URLs the libraries give."""
    from open_clip.pretrained import get_pretrained_url

    from editrt.known_files import OPENAI_CLIP_URLS
    from editrt.models import clip, delta_mapper, e4e, lpips, stylegan2, vqgan

    known = W.known_files()
    assert set(OPENAI_CLIP_URLS) == set(clip.OPENAI_RELEASES)
    for name in clip.OPENAI_RELEASES:
        assert known[clip.store_key(name)].url == get_pretrained_url(name, "openai"), name
    assert {f"vqgan/{n}" for n in vqgan.VQGAN_CONFIGS} <= set(known)
    assert all(known[f"vqgan/{n}"].folder_layouts == vqgan.CHECKPOINT_LAYOUTS[1:] for n in vqgan.VQGAN_CONFIGS)
    assert {f"lpips/{n}" for n in lpips._SLICES} <= set(known)
    for name in ("ffhq-1024", "church-256", "afhqdog-512", "toy"):
        assert f"stylegan2/{name}" in known and name in stylegan2.STYLEGAN2_CONFIGS
    assert {f"e4e/{n}" for n in e4e.E4E_CONFIGS if n != "tiny"} <= set(known)
    assert {f"deltaedit/{n}/mapper" for n in delta_mapper.CONFIGS} <= set(known)


def test_image_specs_carry_their_preprocessing():
    from editrt.models.clip import OPENAI_MEAN

    clip = registry.get_spec("clip/ViT-B-32/image").preprocess
    assert (clip.size, clip.mean, clip.resize) == (224, OPENAI_MEAN, "shorter_side_center_crop")
    assert registry.get_spec("vqgan/tiny/encoder").preprocess.size == 64
    e4e = registry.get_spec("e4e/ffhq/encoder").preprocess
    assert (e4e.size, e4e.mean, e4e.resize) == (256, (0.5, 0.5, 0.5), "shorter_side")
    assert registry.get_spec("clip/tiny/text").preprocess is None


def test_one_resize_and_centre_crop():
    import torchvision.transforms as T

    from editrt.models.preprocess import Preprocess, resize_center_crop

    x = torch.rand(2, 3, 70, 90)
    ref = T.Compose([T.Resize(64, antialias=True), T.CenterCrop(64)])(x)
    assert torch.allclose(resize_center_crop(x, 64), ref, atol=1e-6)
    same = torch.rand(3, 64, 64)
    assert resize_center_crop(same, 64) is same  # the right size passes through untouched
    pre = Preprocess(64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "shorter_side")
    assert torch.allclose(pre(torch.ones(1, 3, 64, 64)), torch.ones(1, 3, 64, 64))
    with pytest.raises(InputError, match="square"):
        pre(torch.rand(1, 3, 64, 80))
    with pytest.raises(InputError, match="resize"):
        Preprocess(64, resize="stretch")


def test_architecture_configs_are_frozen_dataclasses_of_one_kind():
    import dataclasses

    from editrt.models.arch import ArchConfig
    from editrt.models.clip import TINY_CONFIG
    from editrt.models.delta_mapper import CONFIGS
    from editrt.models.e4e import E4E_CONFIGS
    from editrt.models.stylegan2 import STYLEGAN2_CONFIGS
    from editrt.models.vqgan import VQGAN_CONFIGS

    for cfg in (TINY_CONFIG, VQGAN_CONFIGS["tiny"], STYLEGAN2_CONFIGS["tiny"], E4E_CONFIGS["tiny"], CONFIGS["tiny"]):
        assert isinstance(cfg, ArchConfig) and dataclasses.is_dataclass(cfg)
        hash(cfg)  # hashable: usable in cache keys
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.__setattr__("x", 1)
        assert cfg.replace() == cfg
    assert VQGAN_CONFIGS["tiny"].to_dict()["ddconfig"]["ch_mult"] == [1, 2, 2, 4]


def test_shipped_toy_files_resolve_by_name():
    from editrt.toy import models as toy

    known = W.known_files()
    assert known["clip/tiny"].bundled_path == toy.toy_dir() / toy.CLIP_FILE
    assert known["vqgan/tiny"].bundled_path == toy.toy_dir() / toy.VQGAN_FILE
    assert W.resolve("clip/tiny") == toy.toy_dir() / toy.CLIP_FILE  # the test store is empty


def _save(family, net, folder):
    """Write ``net`` in its family's real checkpoint format; returns the file."""
    if family == "stylegan2":
        return net.save(folder / "g.pt")
    if family == "vqgan":
        from editrt.models.vqgan import save_taming_checkpoint

        return save_taming_checkpoint(net, folder / "vq")
    sd = net.model.state_dict() if family == "clip" else net.state_dict()
    if family == "e4e":
        sd = {"state_dict": {f"encoder.{k}": v for k, v in sd.items()}, "latent_avg": torch.zeros(64)}
    torch.save(sd, folder / f"{family}.pt")
    return folder / f"{family}.pt"


@pytest.mark.parametrize("family", ["clip", "vqgan", "stylegan2", "e4e", "deltaedit"])
def test_path_loads_the_same_weights_in_every_family(tmp_path, family):
    a = catalog.load(family, TINY[family], random_init=True, seed=11)
    b = catalog.load(family, TINY[family], path=_save(family, a, tmp_path))
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), family
    with pytest.raises(WeightsError, match="not found|does not exist"):
        catalog.load(family, TINY[family], path=tmp_path / "missing.pt")


def test_any_clip_architecture_has_specs_on_demand():
    spec = registry.get_spec("clip/ViT-L-14-quickgelu/image")
    assert spec.inputs[0].shape == ("B", 3, 224, 224) and spec.outputs[0].shape == ("B", 768)
    with pytest.raises(InputError, match="unknown model spec"):
        registry.get_spec("clip/ViT-Q-99/image")
