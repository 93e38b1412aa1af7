"""FlexIT's evaluation protocol (paper §4.1, Table 1): queries, metrics, baselines, runs.

    from editrt.eval import evaluate, ToyWorld, CopyRunner, EncodeRunner, RetrieveRunner, FlexITRunner
    report = evaluate(ToyWorld(), [CopyRunner(), ...], "runs/toy", split="test")

The CLI is ``editrt evaluate`` (:mod:`editrt.eval.cli`).
"""

from __future__ import annotations

from .._lazy import lazy_getattr

# Submodules load on first use, so `editrt --help` does not import torch through this package.
_LAZY = {
    "FeatureStats": "metrics", "ReferenceStats": "metrics", "sfid": "metrics", "csfid": "metrics",
    "evaluate": "protocol", "format_table": "protocol", "summarize": "protocol",
    "Query": "queries", "load_queries": "queries", "read_queries": "queries", "target_class_ids": "queries",
    "CopyRunner": "runners", "EncodeRunner": "runners", "FlexITRunner": "runners", "FunctionRunner": "runners",
    "RetrieveRunner": "runners", "Runner": "runners",
    "ImageNetWorld": "worlds", "ToyWorld": "worlds", "World": "worlds",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = sorted(_LAZY)
