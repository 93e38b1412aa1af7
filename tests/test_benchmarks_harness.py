"""benchmarks/harness.py and benchmarks/run.py: statistics, timing protocol, result files, compare."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402


class FakeClock:
    """perf_counter stand-in: each call to the timed function advances time by the next step."""

    def __init__(self, durations):
        self.t = 0.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self):
        return self.t

    def work(self):
        self.t += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1
        return self.calls


# -- statistics -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 7, 100])
def test_percentiles_match_numpy(n):
    vals = sorted(np.random.default_rng(n).exponential(3.0, size=n).tolist())
    for q in (0, 50, 90, 95, 99, 100):
        assert harness.percentile(vals, q) == pytest.approx(float(np.percentile(vals, q)), rel=1e-12)


def test_summarize_known_values():
    s = harness.summarize([4.0, 1.0, 3.0, 2.0])
    assert s["n"] == 4 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["mean"] == 2.5 and s["p50"] == 2.5
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))
    assert s["cv"] == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert s["p90"] == pytest.approx(3.7)
    one = harness.summarize([5.0])
    assert one["std"] == 0.0 and one["cv"] == 0.0 and one["p99"] == 5.0


def test_summarize_rejects_bad_input():
    with pytest.raises(ValueError):
        harness.summarize([])
    with pytest.raises(ValueError):
        harness.summarize([1.0, float("nan")])
    with pytest.raises(ValueError):
        harness.percentile([1.0], 101)


# -- timing protocol ------------------------------------------------------------------------------

def test_measure_warmup_and_reps_with_fake_clock():
    # 3 warm-up calls of 1 s satisfy warmup=3 and warmup_s=0.5; timed calls then take 1/64 s
    # (binary-exact durations, so the stopping rule is not at the mercy of rounding)
    clock = FakeClock([1.0, 1.0, 1.0] + [0.015625] * 100)
    budget = harness.Budget(warmup=3, warmup_s=0.5, min_reps=5, max_reps=1000, min_time_s=0.15625)
    t = harness.measure(clock.work, budget=budget, clock=clock)
    assert t.warmup_calls == 3
    assert t.inner == 1
    assert len(t.wall_ms) == 10  # 10 x 1/64 s reaches min_time_s
    assert all(v == pytest.approx(15.625) for v in t.wall_ms)
    assert t.device_ms is None and t.peak_cuda_bytes is None


def test_measure_warmup_lasts_warmup_s():
    clock = FakeClock([0.05] * 1000)
    budget = harness.Budget(warmup=1, warmup_s=0.2, min_reps=2, max_reps=2, min_time_s=0.0)
    t = harness.measure(clock.work, budget=budget, clock=clock)
    assert t.warmup_calls == 4  # 4 x 50 ms reach the 200 ms warm-up
    assert len(t.wall_ms) == 2


def test_measure_averages_fast_calls():
    clock = FakeClock([0.0001] * 100000)  # 0.1 ms per call -> runs of 10 calls per sample
    budget = harness.Budget(warmup=1, warmup_s=0.0, min_reps=4, max_reps=4, min_time_s=0.0, min_sample_s=1e-3)
    t = harness.measure(clock.work, budget=budget, clock=clock)
    assert t.inner == 10
    assert clock.calls == 1 + 4 * 10
    assert all(v == pytest.approx(0.1) for v in t.wall_ms)


def test_measure_real_function_and_rss():
    t = harness.measure(lambda: sum(range(20000)), budget=harness.Budget(warmup=1, warmup_s=0, min_reps=3,
                                                                           max_reps=3, min_time_s=0))
    assert len(t.wall_ms) == 3 and all(v > 0 for v in t.wall_ms)
    assert t.peak_rss_bytes and t.peak_rss_bytes > 10 * 2**20


def test_measure_stages_splits_calls():
    clock = FakeClock([0.0])

    def edit(mark):
        clock.t += 0.010
        mark("text")
        clock.t += 0.030
        mark("synthesis")
        clock.t += 0.002
        mark("synthesis")  # a stage marked twice is summed
        return None

    budget = harness.Budget(warmup=2, warmup_s=0.0, min_reps=3, max_reps=3, min_time_s=0.0)
    st = harness.measure_stages(edit, budget=budget, clock=clock)
    assert len(st.total.wall_ms) == 3
    assert st.stages["text"] == pytest.approx([10.0] * 3)
    assert st.stages["synthesis"] == pytest.approx([32.0] * 3)
    assert st.total.wall_ms == pytest.approx([42.0] * 3)


# -- rows, ratios, documents ----------------------------------------------------------------------

def _timing(values, inner=1):
    return harness.Timing(wall_ms=list(values), device_ms=None, warmup_calls=1, peak_cuda_bytes=None,
                          peak_rss_bytes=100 * 2**20, inner=inner)


def _doc(rows):
    env = {"created": "2025-01-01T00:00:00+00:00", "cpu_model": "test cpu", "git": {"commit": "abc"},
           "gpus": [], "versions": {"torch": "x"}}
    return harness.make_document(rows, environment=env, settings={"preset": "tiny", "device": "cpu"})


def test_rows_ratio_and_variance_flag():
    base = harness.row_from_timing(_timing([10, 10, 10]), suite="s", group="g", name="base", items=1)
    fast = harness.row_from_timing(_timing([5, 5, 5]), suite="s", group="g", name="fast", items=1, baseline="base")
    batched = harness.row_from_timing(_timing([8, 8, 8]), suite="s", group="g", name="b4", items=4, baseline="base")
    noisy = harness.row_from_timing(_timing([1, 10, 1, 10]), suite="s", group="g", name="noisy", baseline="base")
    other = harness.row_from_timing(_timing([1]), suite="s", group="other", name="x", baseline="base")
    skipped = harness.skipped_row(suite="s", group="g", name="gone", reason="no GPU", baseline="base")
    doc = _doc([base, fast, batched, noisy, other, skipped])
    assert base["ratio"] is None
    assert fast["ratio"] == pytest.approx(2.0)
    assert batched["ratio"] == pytest.approx(10 / 2)  # per item: 8 ms / 4 images
    assert batched["items_per_s"] == pytest.approx(500.0)
    assert other["ratio"] is None  # baselines are looked up within the group only
    assert skipped["ratio"] is None
    assert noisy["high_variance"] and not fast["high_variance"]
    assert harness.validate_document(doc) == []


def test_validate_document_finds_problems():
    good = harness.row_from_timing(_timing([1, 2, 3]), suite="s", group="g", name="a")
    doc = _doc([good, dict(good)])
    assert any("duplicate" in p for p in harness.validate_document(doc))
    bad = dict(good, name="b", wall_ms={"p50": 1.0})
    assert any("statistics" in p for p in harness.validate_document(_doc([bad])))
    nores = harness.skipped_row(suite="s", group="g", name="c", reason="")
    assert any("without a reason" in p for p in harness.validate_document(_doc([nores])))
    assert harness.validate_document({"schema": "other"})
    assert harness.validate_document([1, 2]) == ["document is not a JSON object"]


def test_json_roundtrip_and_csv(tmp_path):
    rows = [harness.row_from_timing(_timing([10, 11, 12]), suite="networks", group="net", name="torch-eager fp32 B=1",
                                    backend="torch-eager", precision="fp32", batch=1),
            harness.skipped_row(suite="networks", group="net", name="ort-cuda fp32 B=1", reason="needs CUDA",
                                baseline="torch-eager fp32 B=1", backend="ort-cuda", precision="fp32", batch=1)]
    doc = _doc(rows)
    path = harness.write_json(doc, tmp_path / "r.json")
    assert harness.load_json(path) == json.loads(json.dumps(doc, default=str))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file
    (tmp_path / "bad.json").write_text('{"schema": "nope"}')
    with pytest.raises(ValueError, match="not an editrt benchmark result"):
        harness.load_json(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not JSON"):
        (tmp_path / "junk.json").write_text("{")
        harness.load_json(tmp_path / "junk.json")
    cpath = harness.write_csv(doc, tmp_path / "r.csv")
    with open(cpath) as fh:
        lines = list(csv.DictReader(fh))
    assert [line["name"] for line in lines] == ["torch-eager fp32 B=1", "ort-cuda fp32 B=1"]
    assert float(lines[0]["p50_ms"]) == pytest.approx(11.0)
    assert lines[0]["cpu_model"] == "test cpu" and lines[0]["git_commit"] == "abc"
    assert lines[1]["status"] == "skipped" and lines[1]["reason"] == "needs CUDA"
    assert set(lines[0]) == set(harness.CSV_COLUMNS)


def test_compare_reports_changes():
    old = _doc([harness.row_from_timing(_timing([10] * 3), suite="s", group="g", name="a"),
                harness.row_from_timing(_timing([10] * 3), suite="s", group="g", name="gone")])
    new = _doc([harness.row_from_timing(_timing([5] * 3), suite="s", group="g", name="a"),
                harness.row_from_timing(_timing([7] * 3), suite="s", group="g", name="new")])
    changes = {c["key"]: c for c in harness.compare(old, new)}
    assert changes["s/g/a"]["change"] == pytest.approx(-0.5) and changes["s/g/a"]["significant"]
    assert changes["s/g/new"]["only_in"] == "new" and changes["s/g/gone"]["only_in"] == "old"
    text = harness.format_compare(list(changes.values()), old["environment"], new["environment"])
    assert "-50.0%" in text and "(only in old)" in text


def test_table_and_plots(tmp_path):
    rows = []
    for b, ms in ((1, 2.0), (2, 3.0), (4, 5.0)):
        rows.append(harness.row_from_timing(_timing([ms] * 3), suite="networks", group="net", items=b,
                                            name=f"torch-eager fp32 B={b}", backend="torch-eager",
                                            precision="fp32", batch=b))
        rows.append(harness.row_from_timing(_timing([ms / 2] * 3), suite="networks", group="net", items=b,
                                            name=f"ort-cpu fp32 B={b}", backend="ort-cpu", precision="fp32",
                                            batch=b, baseline=f"torch-eager fp32 B={b}"))
    for stage, ms in (("text encoding", 3.0), ("synthesis", 9.0)):
        rows.append(harness.row_from_timing(_timing([ms] * 3), suite="edits", group="global", stage=stage,
                                            variant="editrt", name=f"editrt | {stage}"))
    rows.append(harness.skipped_row(suite="networks", group="net", name="tensorrt fp16 B=1", reason="no tensorrt"))
    doc = _doc(rows)
    text = harness.format_table(doc)
    assert "ort-cpu fp32 B=4" in text and "2.00x" in text and "no tensorrt" in text
    assert harness.plot_batch_scaling(doc, tmp_path / "batch.png").stat().st_size > 1000
    assert harness.plot_breakdown(doc, tmp_path / "breakdown.png").stat().st_size > 1000
    assert harness.plot_ratios(doc, tmp_path / "ratios.png", suite="networks").stat().st_size > 1000
    assert harness.plot_breakdown(_doc(rows[:2]), tmp_path / "none.png") is None


def test_environment_has_the_essentials():
    env = harness.collect_environment("unit test")
    assert env["note"] == "unit test" and env["cpu_model"]
    assert env["versions"]["torch"] and "onnxruntime" in env["versions"]
    assert isinstance(env["gpus"], list) and "git" in env and "editrt_kernels" in env


# -- the CLI end to end on one tiny network -------------------------------------------------------

def test_run_cli_networks_json_csv_compare(tmp_path, capsys):
    import run

    argv = ["--preset", "tiny", "--quick", "--suites", "networks", "--specs", "stylegan2/tiny/mapping",
            "--backends", "torch-eager", "ort-cpu", "torch-cudagraph", "--batches", "1", "2",
            "--min-reps", "3", "--min-time", "0", "--out", str(tmp_path), "--tag", "t", "--threads", "1"]
    assert run.main(argv) == 0
    doc = harness.load_json(tmp_path / "t.json")
    rows = {r["name"]: r for r in doc["results"]}
    assert rows["torch-eager fp32 B=2"]["status"] == "ok"
    assert rows["ort-cpu fp32 B=1"]["status"] == "ok" and rows["ort-cpu fp32 B=1"]["ratio"] > 0
    assert rows["torch-cudagraph fp32 B=1"]["status"] == "skipped"
    assert "CUDA" in rows["torch-cudagraph fp32 B=1"]["reason"]
    assert (tmp_path / "t.csv").exists() and (tmp_path / "t-batch.png").exists()
    assert doc["settings"]["batches"] == [1, 2] and doc["environment"]["versions"]["torch"]
    out = capsys.readouterr().out
    assert "stylegan2/tiny/mapping" in out
    assert run.main(argv[:-6] + ["--compare", str(tmp_path / "t.json"), "--threads", "1"]) == 0
    assert "compare: old" in capsys.readouterr().out
    assert run.main(["--compare", str(tmp_path / "missing.json")]) == 2
