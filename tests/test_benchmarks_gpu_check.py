"""scripts/gpu_check.sh and benchmarks/gpu_goals.py on a machine without CUDA: the plan parses,
the no-GPU path exits cleanly and writes nothing, the goal checks read result documents."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import cpu_paper  # noqa: E402
import gpu_goals  # noqa: E402
import harness  # noqa: E402
import run as bench_run  # noqa: E402


def _script(*args, python=sys.executable, timeout=120):
    env = {**os.environ, "PYTHON": python}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def test_dry_run_plan_parses_with_the_benchmark_clis(tmp_path):
    res = _script("--dry-run", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    steps = [line.split(" (limit")[0] for line in res.stdout.splitlines() if "(limit" in line]
    assert steps[:3] == ["build", "kernels", "tests"] and "flexit" in steps and "edits" in steps
    parsed = 0
    for line in res.stdout.splitlines():
        words = shlex.split(line.split(": ", 1)[1]) if ": " in line else []
        for script, parse in (("benchmarks/run.py", bench_run.parse_args), ("benchmarks/cpu_paper.py", cpu_paper.parse_args)):
            if script in words:
                args = parse(words[words.index(script) + 1:])  # argparse exits on an unknown option
                parsed += 1
                if script.endswith("run.py") and "cuda" in words:
                    assert args.device == "cuda"
    assert parsed >= 6
    assert "gpu_goals.py" in res.stdout and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path taken without a GPU")
def test_without_cuda_it_exits_cleanly_and_writes_nothing(tmp_path):
    res = _script("--out", str(tmp_path / "results"))
    assert res.returncode == 0, res.stderr
    assert "no GPU here, nothing run" in res.stdout and "sees no CUDA device" in res.stdout
    assert not (tmp_path / "results").exists()
    strict = _script("--require-gpu", "--out", str(tmp_path / "results"))
    assert strict.returncode == 1 and "no GPU here" in strict.stdout


def test_python_without_torch_is_named(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    res = _script(python=str(fake))
    assert res.returncode == 2 and "cannot import torch" in res.stderr


def test_unknown_option_is_refused():
    res = _script("--fast")
    assert res.returncode == 2 and "unknown option --fast" in res.stderr


def _row(suite, group, name, ms, *, items=1, baseline=None, **fields):
    t = harness.Timing(wall_ms=[ms, ms * 1.01], device_ms=None, warmup_calls=0, peak_cuda_bytes=None,
                       peak_rss_bytes=None)
    return harness.row_from_timing(t, suite=suite, group=group, name=name, items=items, baseline=baseline, **fields)


def _doc(rows):
    return harness.make_document(rows, environment={}, settings={})


def test_goals_pass_fail_and_not_measured(tmp_path):
    group = "flexit paper edit (160 steps)"
    rows = [_row("flexit", group, "reference", 30_000.0),
            _row("flexit", group, "editrt (+torch.compile (CUDA graph))", 900.0, baseline="reference"),
            _row("flexit", group, "editrt (+torch.compile (CUDA graph)) | 160 steps", 850.0, stage="160 steps"),
            _row("edits", "global paper edit (B=1, 1 alpha)", "editrt torch, cached prompt", 7.0, batch=1),
            _row("edits", "global paper edit (B=32, 1 alpha)", "editrt torch, cached prompt", 50.0, items=32,
                 batch=32)]
    verdicts = {v["goal"]: v for v in gpu_goals.check_goals(_doc(rows))}
    assert verdicts["flexit_edit_s"]["status"] == "pass" and verdicts["flexit_edit_s"]["value"] == pytest.approx(0.9045)
    assert verdicts["flexit_vs_reference"]["status"] == "pass"  # 30 s / 0.9 s = 33x
    assert verdicts["edit_p50_ms_b1"]["status"] == "fail"  # 7 ms > 5 ms
    assert verdicts["edits_per_s_batched"]["status"] == "pass"  # 32 / 50.25 ms = 637/s
    empty = {v["goal"]: v["status"] for v in gpu_goals.check_goals(_doc([]))}
    assert set(empty.values()) == {"not measured"}
    path = harness.write_json(_doc(rows), tmp_path / "r.json")
    assert gpu_goals.main([str(path)]) == 0
    stored = harness.load_json(path)["findings"]["goals"]
    assert [v["goal"] for v in stored] == [g[0] for g in gpu_goals.GOALS]


def test_merge_keeps_rows_and_findings(tmp_path):
    a = _doc([_row("flexit", "g", "reference", 10.0)])
    a["findings"] = {"drift": [{"name": "bf16 vs fp32", "steps": 3}, {"name": "shared start only", "steps": 1}]}
    b = _doc([_row("edits", "h", "reference", 5.0)])
    b["findings"] = {"drift": [{"name": "folded vs unfolded", "steps": 4}]}  # a second FlexIT part
    pa, pb = harness.write_json(a, tmp_path / "a.json"), harness.write_json(b, tmp_path / "b.json")
    out = harness.load_json(cpu_paper.merge([pa, pb], tmp_path / "m.json", note="one pinned thread"))
    assert [r["suite"] for r in out["results"]] == ["flexit", "edits"]
    assert out["environment"]["note"] == "one pinned thread"
    # both parts' trajectories; a 1-step drift says nothing
    assert [f["name"] for f in out["findings"]["drift"]] == ["bf16 vs fp32", "folded vs unfolded"]
    assert not harness.validate_document(out)


def test_merge_of_a_merged_document_keeps_its_parts(tmp_path):
    a, b = _doc([_row("flexit", "g", "reference", 10.0)]), _doc([_row("edits", "h", "reference", 5.0)])
    pa, pb = harness.write_json(a, tmp_path / "a.json"), harness.write_json(b, tmp_path / "b.json")
    first = cpu_paper.merge([pa, pb], tmp_path / "m.json")
    c = harness.write_json(_doc([_row("flexit", "k", "reference", 7.0)]), tmp_path / "c.json")
    out = harness.load_json(cpu_paper.merge([first, c], tmp_path / "m2.json"))
    assert [p["file"] for p in out["settings"]["parts"]] == ["a.json", "b.json", "c.json"]
    assert [r["group"] for r in out["results"]] == ["g", "h", "k"]


def test_drift_of_saved_trajectories_matches_the_in_process_drift(tmp_path):
    """Trajectories run in separate processes (one per core) and compared afterwards give the
    finding that one process running both variants gives."""
    import flexit_loop
    from editrt.config import FlexITConfig

    cfg = FlexITConfig.preset("tiny")
    models = flexit_loop.load_models(cfg, torch.device("cpu"))
    names = ("editrt fp32", "editrt fp32 channels_last")
    variants = {k: cpu_paper.FLEXIT_VARIANTS[k] for k in names}
    idle = "editrt bf16 channels_last, ViT in bf16"  # not continued: with no rounds it runs no step
    rows, together = cpu_paper.run_flexit_steps(models, cfg, 0, "2 views",
                                                {**variants, idle: cpu_paper.FLEXIT_VARIANTS[idle]}, drift_steps=3)
    assert rows == [] and [f["name"] for f in together] == ["editrt fp32 channels_last vs editrt fp32"]
    files = []
    for name in names:
        files.append(tmp_path / f"{len(files)}.pt")
        cpu_paper.run_flexit_steps(models, cfg, 0, "2 views", {name: variants[name]}, drift_steps=3,
                                   save_trajectories=files[-1])
    args = cpu_paper.parse_args(["drift", *map(str, files), "--out", str(tmp_path / "d.json"), "--score-views", "2"])
    rows, findings = cpu_paper.drift_section(args)
    assert rows == [] and findings["drift"] == together
    scores = findings["final_scores_fp32"]
    assert set(scores) == set(names) and "auto_bf16" not in findings  # no bf16 trajectory to judge
    for s in scores.values():
        assert s["loss"] == pytest.approx(s["clip"] + cfg.lpips_weight * s["lpips"] + cfg.latent_weight * s["latent"])
        assert -1 <= s["clip"] <= 1 and s["lpips"] > 0
    assert together[0]["steps"] == 3 and together[0]["final_image_mean_abs"] > 0
    assert set(findings["trajectory_seconds"]) == set(names)
    files.append(tmp_path / "again.pt")  # the same variant twice cannot be told apart
    cpu_paper.run_flexit_steps(models, cfg, 0, "2 views", {names[0]: variants[names[0]]}, drift_steps=2,
                               save_trajectories=files[-1])
    with pytest.raises(SystemExit, match="more than one trajectory file"):
        cpu_paper.drift_section(cpu_paper.parse_args(["drift", *map(str, files), "--out", str(tmp_path / "e.json")]))


def test_bf16_verdict_reads_bf16_against_fp32s_own_spread():
    def pair(a, b, mean_abs, gain=0.01, gain_ref=0.01):
        return {"name": f"{a} vs {b}", "steps": 160, "final_image_mean_abs": mean_abs,
                "sim_target_gain": gain, "sim_target_gain_reference": gain_ref}

    def scores(bf16_loss):
        return {cpu_paper.FP32: {"loss": -0.1844}, cpu_paper.FP32_CL: {"loss": -0.1846},
                cpu_paper.BF16: {"loss": bf16_loss}}
    spread = pair(cpu_paper.FP32_CL, cpu_paper.FP32, 0.035)
    ok = cpu_paper.bf16_verdict([pair(cpu_paper.BF16, cpu_paper.FP32, 0.039), spread], scores(-0.1843))
    assert ok["within_bound"] and abs(ok["image_ratio"] - 0.039 / 0.035) < 1e-12
    far = cpu_paper.bf16_verdict([pair(cpu_paper.BF16, cpu_paper.FP32, 0.06), spread], scores(-0.1843))
    assert far["checks"] == {"image": False, "loss": True, "target_gain": True} and not far["within_bound"]
    worse = cpu_paper.bf16_verdict([pair(cpu_paper.BF16, cpu_paper.FP32, 0.039), spread], scores(-0.1838))
    assert worse["checks"]["loss"] is False  # 6e-4 above fp32, 1.5 x the 2e-4 spread allows 3e-4
    weak = cpu_paper.bf16_verdict([pair(cpu_paper.BF16, cpu_paper.FP32, 0.039, gain=0.009), spread],
                                  scores(-0.1843))
    assert weak["checks"]["target_gain"] is False
    assert cpu_paper.bf16_verdict([spread], scores(-0.1843)) is None  # no bf16 trajectory


def test_compile_section_reports_a_compile_that_does_not_finish(tmp_path):
    """The compile child runs in its own process under a time limit: past it, a skipped row and
    a finding say so (the real compile of even the tiny preset takes minutes on a small CPU)."""
    args = cpu_paper.parse_args(["compile", "--out", str(tmp_path / "c.json"), "--preset", "tiny",
                                 "--threads", "1", "--rounds", "1", "--compile-timeout", "1"])
    rows, findings = cpu_paper.compile_section(args, progress=lambda msg: None)
    assert [r["status"] for r in rows] == ["skipped"] and "within 1 s" in rows[0]["reason"]
    assert findings["compile"] == [{"preset": "tiny", "cache": "cold", "first_step_s": None, "timeout_s": 1,
                                    "note": "the compile did not finish within 1 s"}]
