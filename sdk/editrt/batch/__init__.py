"""Bulk edits: a manifest of rows (image, method, source, target, strength, seed, settings) ->
one output per row plus ``results.jsonl``; resumable; on Ray with ``ray=True``.

    from editrt import batch
    report = batch.run([{"image": "a.jpg", "source": "cat", "target": "dog"}], "out/")
    report = batch.run("manifest.csv", "out/", ray=True, options=batch.BatchOptions(device="cuda"))
"""

from .editing import BatchOptions, RowEditor, check_row
from .job import RESULTS_FILE, BatchReport, read_records, run
from .manifest import COLUMNS, METHODS, Row, read_manifest, rows_from

__all__ = ["run", "BatchReport", "BatchOptions", "RowEditor", "Row", "read_manifest", "rows_from", "read_records",
           "check_row", "RESULTS_FILE", "COLUMNS", "METHODS"]
