"""scripts/update_perf_table.py: the README block is generated from result files, only between markers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness  # noqa: E402

spec = importlib.util.spec_from_file_location("update_perf_table", ROOT / "scripts" / "update_perf_table.py")
upt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(upt)


def _timing(ms):
    return harness.Timing(wall_ms=[ms] * 3, device_ms=None, warmup_calls=1, peak_cuda_bytes=None, peak_rss_bytes=None)


def _write_result(folder: Path) -> None:
    rows = [harness.row_from_timing(_timing(400.0), suite="flexit", group="flexit tiny step", name="0 reference"),
            harness.row_from_timing(_timing(100.0), suite="flexit", group="flexit tiny step", name="6 +zero-safe l2,1",
                                    baseline="0 reference", default=True),
            harness.row_from_timing(_timing(20.0), suite="networks", group="vqgan/tiny/decoder",
                                    name="torch-eager fp32 B=1", backend="torch-eager", precision="fp32", batch=1),
            harness.row_from_timing(_timing(10.0), suite="networks", group="vqgan/tiny/decoder",
                                    name="ort-cpu fp32 B=1", backend="ort-cpu", precision="fp32", batch=1,
                                    baseline="torch-eager fp32 B=1"),
            harness.row_from_timing(_timing(9.0), suite="edits", group="global tiny", name="editrt | synthesis",
                                    stage="synthesis", variant="editrt"),
            harness.row_from_timing(_timing(12.0), suite="edits", group="global tiny", name="editrt")]
    env = {"created": "2025-01-01T00:00:00+00:00", "cpu_model": "Test CPU", "torch_threads": 1,
           "git": {"commit": "0123456789abcdef"}, "gpus": [], "note": "shared machine"}
    doc = harness.make_document(rows, environment=env, settings={"preset": "tiny", "device": "cpu"})
    harness.write_json(doc, folder / "cpu-tiny.json")


def test_render_and_update_only_between_markers(tmp_path):
    results = tmp_path / "results"
    _write_result(results)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\nintro\n{upt.START}\nstale\n{upt.END}\noutro\n")
    assert upt.main(["--readme", str(readme), "--results", str(results), "--check"]) == 1
    assert upt.main(["--readme", str(readme), "--results", str(results)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\nintro\n") and text.endswith("outro\n") and "stale" not in text
    assert "4.00×" in text and "(default)" in text and "2.00×" in text and "Test CPU" in text
    assert "0123456789" in text and "shared machine" in text and "synthesis 9.00 ms" in text
    assert upt.main(["--readme", str(readme), "--results", str(results), "--check"]) == 0


def test_missing_markers_are_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="perf-table:start"):
        upt.main(["--readme", str(readme), "--results", str(tmp_path)])
    assert readme.read_text() == "# no markers\n"


def test_no_results_gives_a_hint(tmp_path):
    assert "No benchmark results yet" in upt.render(tmp_path)


def test_batch_rows_and_findings_are_rendered(tmp_path):
    rows = [harness.row_from_timing(_timing(800.0), suite="batch", group="synthesis ffhq-256 per image",
                                    name="B=1 one call", items=1, batch=1),
            harness.row_from_timing(_timing(8480.0), suite="batch", group="synthesis ffhq-256 per image",
                                    name="B=8 one call", items=8, batch=8, baseline="B=1 one call")]
    doc = harness.make_document(rows, environment={"cpu_model": "x"}, settings={"preset": "paper", "device": "cpu"})
    doc["findings"] = {"drift": [{"flexit": "paper, 8 views per net", "name": "editrt bf16 vs editrt fp32", "steps": 3,
                                  "final_image_mean_abs": 0.002, "final_image_max_abs": 0.05,
                                  "final_image_psnr_db": 45.0, "loss_abs_diff": 1e-3}],
                       "text_encoding": {"clip": "ViT-B-32", "max_abs_diff_vs_reference": 3e-7}}
    harness.write_json(doc, tmp_path / "cpu-paper.json")
    block = upt.render(tmp_path)
    assert "| synthesis ffhq-256 per image | B=8 one call | 1.06 s | 0.75× |" in block
    assert "| paper, 8 views per net | editrt bf16 vs editrt fp32 | 3 | 2.00e-03 | 5.00e-02 | 45.0 dB | 1.00e-03 |" in block
    assert "(ViT-B-32): max abs difference 3.0e-07" in block
