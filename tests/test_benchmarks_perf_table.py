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
