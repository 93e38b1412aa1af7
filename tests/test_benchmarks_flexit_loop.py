"""benchmarks/flexit_loop.py: the reference loop is FlexIT's algorithm, the ladder is well formed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import flexit_loop as fl  # noqa: E402
import harness  # noqa: E402

from editrt import ops  # noqa: E402
from editrt.config import FlexITConfig  # noqa: E402


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    cfg = FlexITConfig.preset("tiny")
    dev = torch.device("cpu")
    models = fl.load_models(cfg, dev)
    return cfg, dev, models, fl.input_image(cfg, dev)


def test_reference_step_is_flexit_sgd(setup):
    cfg, dev, m, img = setup
    loop = fl.ReferenceLoop(m["clip"], m["vqgan"], m["lpips"], cfg, dev)
    with ops.use_kernels(False), fl.unfrozen(m["clip"], m["vqgan"], m["lpips"]):
        loop.prepare(img, fl.SOURCE, fl.TARGET)
        z0 = loop.z0.clone()
        loop.step()
        # weights are trainable as in the reference: backward filled parameter grads
        assert any(p.grad is not None for p in m["vqgan"].parameters())
        assert any(p.grad is not None for p in m["lpips"].lp.net.parameters())  # input trunk recomputed
        z1 = loop.z.detach().clone()
        loop.step()
    # normalised gradient step: ||z1 - z0|| = lr * ||z0||
    assert (z1 - z0).norm().item() == pytest.approx(cfg.lr * z0.norm().item(), rel=1e-4)
    assert set(loop.history) == {"loss", "loss_z", "loss_clip", "loss_lpips", "sim_source", "sim_target"}
    assert len(loop.history["loss"]) == 2
    assert loop.history["loss_z"][0] < 1e-4  # z = z0 (+1e-6 noise) at the first step
    # frozen again afterwards, grads dropped, so the next rung runs on clean networks
    assert all(not p.requires_grad and p.grad is None for p in m["vqgan"].parameters())


def test_reference_lpips_matches_sdk_lpips(setup):
    cfg, dev, m, img = setup
    x = (img + 0.05 * torch.randn_like(img)).clamp(0, 1)
    with torch.no_grad(), ops.use_kernels(False):
        ref = m["lpips"].lp(x, img, normalize=True).flatten()
        sdk = m["lpips"].distance(x, m["lpips"].prepare_target(img))
    torch.testing.assert_close(ref, sdk, rtol=1e-5, atol=1e-6)


def test_frozen_and_cached_rungs_agree_with_reference_losses(setup):
    cfg, dev, m, img = setup
    losses = []
    for frozen, cached in ((False, False), (True, False), (True, True)):
        loop = fl.ReferenceLoop(m["clip"], m["vqgan"], m["lpips"], cfg, dev, frozen=frozen, cached=cached, seed=3)
        guard = fl.unfrozen(m["clip"], m["vqgan"], m["lpips"]) if not frozen else torch.enable_grad()
        with ops.use_kernels(False), guard:
            loop.prepare(img, fl.SOURCE, fl.TARGET)
            loop.step()
        losses.append(loop.history)
    # same seed, same views and noise: the optimisations do not change the numbers
    for h in losses[1:]:
        for k in ("loss", "loss_lpips", "loss_clip", "loss_z"):
            assert h[k][0] == pytest.approx(losses[0][k][0], rel=1e-4, abs=1e-6)


def test_ladder_on_cpu():
    rungs = fl.ladder(torch.device("cpu"))
    names = [r.name for r, _ in rungs]
    assert names[0] == "reference" and names[1] == "+frozen weights" and names[2] == "+cached input features"
    assert names[-1].startswith("+torch.compile")
    assert "--flexit-compile" in rungs[-1][1]  # compile is opt-in on CPU
    if ops.kernel_available("cpu"):
        assert fl.ladder(torch.device("cpu"), cpu_compile=True)[-1][1] is None
    cfg = FlexITConfig.preset("tiny")
    defaults = [r.name for r, _ in rungs if fl.is_default(r, cfg, torch.device("cpu"))]
    expected = "+zero-safe l2,1" if ops.kernel_available("cpu") else None
    assert defaults == ([expected] if expected else [])
    cuda_rungs = fl.ladder(torch.device("cuda"))
    assert "CUDA graph" in cuda_rungs[-1][0].name and cuda_rungs[-1][0].config["compile"] == "cuda_graph"
    cuda_default = [r.name for r, _ in cuda_rungs if fl.is_default(r, cfg, torch.device("cuda"))]
    assert cuda_default == (["+autocast bf16"] if ops.kernel_available("cuda") else [])


def test_flexit_suite_rows(setup):
    cfg, dev, m, img = setup
    budget = harness.Budget(warmup=0, warmup_s=0.0, min_reps=1, max_reps=1, min_time_s=0.0)
    bench = fl.FlexITBench(config=cfg.replace(n_augment=1), device=dev, budget=budget, edit_budget=budget,
                           batches=(1, 2), edit_steps=1, label="test")
    rows = fl.run_flexit_suite(bench)
    doc = harness.make_document(rows, environment={"git": {}}, settings={"preset": "test", "device": "cpu"})
    assert harness.validate_document(doc) == []
    step = [r for r in rows if r["group"] == "flexit test step"]
    assert step[0]["name"] == "0 reference" and step[0]["status"] == "ok" and step[0]["ratio"] is None
    assert all(r["baseline"] == "0 reference" for r in step[1:] if r["status"] == "ok")
    assert all(r["ratio"] > 0 for r in step[1:] if r["status"] == "ok")
    assert any(r["name"].endswith("B=2") and r["items"] == 2 for r in step)
    edit = [r for r in rows if r["group"] == "flexit test edit (1 steps)"]
    stages = {r["stage"] for r in edit if r.get("stage")}
    assert stages == {"prepare (encode, texts)", "1 steps", "final pass (decode)"}
    totals = [r for r in edit if not r.get("stage")]
    assert [r["name"].split(" ")[0] for r in totals] == ["reference", "editrt"]
    assert totals[1]["baseline"] == "reference"
