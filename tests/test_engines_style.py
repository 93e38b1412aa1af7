"""Direction edits through the engine seam: onnxruntime gives the torch images, every stage is
named and counted, and each output image is synthesised once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from editrt.config import DeltaEditConfig, FEUConfig, GlobalDirectionConfig
from editrt.engines.stages import EngineSet
from editrt.errors import InputError
from editrt.methods.stylespace.deltaedit import DeltaEdit
from editrt.methods.stylespace.feu import FEU
from editrt.methods.stylespace.global_direction import GlobalDirection
from editrt.models.clip import load_clip
from editrt.models.stylegan2 import StyleGAN2

# End-to-end drift against torch fp32, tiny random networks, in the generator's [-1, 1] units
# (benchmarks/engine_drift.py; engines/README.md halves them to [0, 1] units): onnxruntime fp32
# measured <= 3.2e-6, fp16 <= 5.5e-3 (DeltaEdit). The bounds leave >= 5x headroom.
FP32_IMAGE_TOL = 1e-4
FP16_IMAGE_TOL = 3e-2


@pytest.fixture(scope="module")
def fs3():
    G = StyleGAN2.load("tiny", random_init=True, seed=0)
    clip = load_clip("tiny", random_init=True, seed=0)
    return F.normalize(torch.randn(G.layout.conv_total, clip.embed_dim, generator=torch.Generator().manual_seed(3)),
                       dim=1)


@pytest.fixture()
def engines_dir(tmp_path_factory, monkeypatch):
    # the editors load their networks by name with random_init and seed 0, so the store shared with
    # test_engines_export.py (same weights identity) already holds their graphs when run together
    path = tmp_path_factory.getbasetemp() / "engines_shared"
    monkeypatch.setenv("EDITRT_ENGINES", str(path))
    return path


def test_deltaedit_onnxruntime_matches_torch(fs3, engines_dir):
    cfg = DeltaEditConfig.preset("tiny")
    ref_editor = DeltaEdit(config=cfg, random_init=True, fs3=fs3)
    eng_editor = DeltaEdit(config=cfg, random_init=True, fs3=fs3, backend="onnxruntime", stats=ref_editor.stats)
    code = ref_editor.codes_from_seeds([1, 2])
    ref = ref_editor.edit(code, "smiling face", strength=[1.0])
    got = eng_editor.edit(code, "smiling face", strength=[1.0])
    assert set(eng_editor.engines._engines) == set(DeltaEdit.specs(cfg))
    assert all(e.backend == "onnxruntime" for e in eng_editor.engines._engines.values())
    assert (ref.images - got.images).abs().max() < FP32_IMAGE_TOL
    assert (ref.source - got.source).abs().max() < FP32_IMAGE_TOL


def test_global_direction_onnxruntime_matches_torch(fs3, engines_dir):
    cfg = GlobalDirectionConfig.preset("tiny")
    ref_editor = GlobalDirection(config=cfg, fs3=fs3, random_init=True)
    eng_editor = GlobalDirection(config=cfg, fs3=fs3, random_init=True, backend="onnxruntime",
                                 stats=ref_editor.stats)
    code = ref_editor.codes_from_seeds([3])
    ref = ref_editor.edit(code, "a smiling face", alpha=[2.0], beta=0.05)
    got = eng_editor.edit(code, "a smiling face", alpha=[2.0], beta=0.05)
    assert set(eng_editor.engines._engines) == set(GlobalDirection.specs(cfg))
    assert (ref.images - got.images).abs().max() < FP32_IMAGE_TOL


def test_template_embeddings_onnxruntime_match_torch_on_trimmed_rows(engines_dir):
    from editrt.methods.stylespace.text import template_embeddings

    clip = load_clip("tiny", random_init=True, seed=0)
    engines = EngineSet("onnxruntime")
    engines.register(clip, random_init=True, seed=0)
    widths = []
    run = engines.run
    engines.run = lambda tower, tokens: widths.append(tokens.shape[1]) or run(tower, tokens)
    names = ["smiling face", "face with a very long beard and round glasses"]
    got = template_embeddings(clip, names, engines=engines)
    assert len(widths) == 2 and max(widths) < clip.context_length  # trimmed rows reach the graph
    torch.testing.assert_close(got, template_embeddings(clip, names), rtol=0, atol=1e-5)


# -- one synthesis per image ----------------------------------------------------------------

def _synth(editor) -> int:
    return editor.engines.count("/synthesis").items


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_global_direction_synthesises_each_image_once(fs3, engines_dir, backend):
    gd = GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True, backend=backend)
    code = gd.codes_from_seeds([1, 2])
    gd.stats  # noqa: B018 - statistics are a torch precomputation, not a stage
    gd.engines.reset_counters()
    first = gd.edit(code, "a smiling face", alpha=[1.0, 2.0], beta=0.05)
    assert _synth(gd) == 2 * (2 + 1)  # B x (K edits + the source), one batch
    assert gd.engines.counters["stylegan2/tiny/synthesis"].calls == 1
    assert gd.engines.count("/text").items == 79 * 2  # target and neutral, 79 templates each
    gd.engines.reset_counters()
    again = gd.edit(code, "an angry face", alpha=[1.0, 2.0], beta=0.05)  # same code: source reused
    assert _synth(gd) == 2 * 2
    assert gd.engines.count("/text").items == 79  # the neutral text's embedding is cached
    assert torch.equal(again.source, first.source)
    gd.engines.reset_counters()
    other = gd.codes_from_seeds([1, 2])  # equal values, new tensors: the caller passes the source
    gd.edit(other, "a smiling face", alpha=[1.0], beta=0.05, source_image=first.source)
    assert _synth(gd) == 2
    assert gd.engines.count("/text").items == 0


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_deltaedit_synthesises_each_image_once(fs3, engines_dir, backend):
    de = DeltaEdit(config=DeltaEditConfig.preset("tiny"), random_init=True, fs3=fs3, backend=backend)
    code = de.codes_from_seeds([4, 5])
    de.engines.reset_counters()
    res = de.edit(code, "smiling face", strength=[1.0])
    assert _synth(de) == 2 * (1 + 1)  # the source once (CLIP condition and result), the edit once
    assert de.engines.counters["clip/tiny/image"].items == 2
    assert de.engines.counters["deltaedit/tiny/mapper"].items == 2
    de.engines.reset_counters()
    de.edit(code, "angry face", strength=[1.0])
    assert _synth(de) == 2  # the source of this code is known
    assert res.images.shape[:2] == (2, 1)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_feu_synthesises_each_image_once(fs3, engines_dir, backend):
    feu = FEU(config=FEUConfig.preset("tiny"), random_init=True, fs3=fs3, backend=backend)
    code = feu.codes_from_seeds([6])
    feu.engines.reset_counters()
    feu.edit(code, "a smiling face", alpha=[1.0, 3.0])
    assert _synth(feu) == 1 * (2 + 1)
    assert feu.engines.count("/text").items == 79


def test_source_image_of_the_wrong_shape_is_refused(fs3):
    gd = GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True)
    code = gd.codes_from_seeds([1])
    with pytest.raises(InputError, match="source_image"):
        gd.edit(code, "a smiling face", beta=0.05, source_image=torch.zeros(1, 3, 8, 8))


def test_an_edited_code_tensor_is_not_served_a_stale_source(fs3):
    gd = GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True)
    code = gd.codes_from_seeds([1])
    gd.edit(code, "a smiling face", beta=0.05)
    code.styles[0].add_(0.5)  # in place: the remembered source no longer belongs to it
    gd.engines.reset_counters()
    gd.edit(code, "a smiling face", beta=0.05)
    assert _synth(gd) == 2


def test_engine_set_and_precision_arguments(fs3):
    engines = EngineSet("torch", precision="bf16")
    gd = GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True, backend=engines)
    assert gd.engines is engines and gd.backend == "torch"
    with pytest.raises(InputError, match="contradicts"):
        GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True, backend=engines,
                        precision="fp16")
    with pytest.raises(InputError, match="precision"):
        GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True, precision="fp8")


def test_a_custom_network_runs_in_torch_and_is_refused_by_engines(fs3):
    from editrt.models.stylegan2 import STYLEGAN2_CONFIGS, SynthesisExport

    G = StyleGAN2(STYLEGAN2_CONFIGS["tiny"])  # built from a config object: no registry name
    assert SynthesisExport(G).spec_name is None
    with pytest.raises(InputError, match="no registered spec"):
        EngineSet("onnxruntime").engine(SynthesisExport(G))


@pytest.mark.parametrize("cls, cfg, call", [
    (GlobalDirection, GlobalDirectionConfig.preset("tiny"), lambda ed, c: ed.edit(c, "a smiling face", beta=0.05)),
    (FEU, FEUConfig.preset("tiny"), lambda ed, c: ed.edit(c, "a smiling face")),
    (DeltaEdit, DeltaEditConfig.preset("tiny"), lambda ed, c: ed.edit(c, "smiling face")),
])
def test_direction_edits_run_fp16_artifacts(fs3, engines_dir, cls, cfg, call):
    ref_editor = cls(config=cfg, random_init=True, fs3=fs3)
    editor = cls(config=cfg, random_init=True, fs3=fs3, backend="onnxruntime", precision="fp16",
                 stats=ref_editor.stats)
    code = ref_editor.codes_from_seeds([1])
    got, ref = call(editor, code), call(ref_editor, code)
    opened = editor.engines._engines
    assert set(opened) == set(cls.specs(cfg)) and all(e.precision == "fp16" for e in opened.values())
    assert all("fp16-onnx" in str(e.path) for e in opened.values())
    d = float((got.images - ref.images).abs().max())
    assert 0 < d < FP16_IMAGE_TOL  # fp16 really ran (not the fp32 graph), within the measured drift


def test_torch_backend_precision_is_autocast(fs3):
    ref = GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True)
    low = GlobalDirection(config=GlobalDirectionConfig.preset("tiny"), fs3=fs3, random_init=True,
                          precision="bf16", stats=ref.stats)
    code = ref.codes_from_seeds([2])
    a, b = ref.edit(code, "a smiling face", beta=0.05), low.edit(code, "a smiling face", beta=0.05)
    assert b.images.dtype == torch.float32
    assert 0 < float((a.images - b.images).abs().max()) < 0.15  # measured 4.8e-2 ([-1, 1] units)


def test_synthesis_batch_defaults_follow_the_measurements():
    """CPU: one image per call from 128 px up (batches were slower per image at 256 px), batches
    for the overhead-bound small generators; CUDA: the memory-bound batches."""
    from editrt.methods.stylespace import default_batch
    from editrt.models.stylegan2 import StyleGAN2

    with torch.device("meta"):
        big = StyleGAN2("ffhq-256")
    tiny = StyleGAN2.load("tiny", random_init=True)
    assert default_batch(big, "cpu") == 1 and default_batch(tiny) == default_batch(tiny, "cpu") == 256
    assert default_batch(big, "cuda") == 8 and default_batch(tiny, "cuda") == 256
