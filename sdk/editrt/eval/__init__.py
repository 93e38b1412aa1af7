"""FlexIT's evaluation protocol (paper §4.1, Table 1): queries, metrics, baselines, runs.

    from editrt.eval import evaluate, ToyWorld, CopyRunner, EncodeRunner, RetrieveRunner, FlexITRunner
    report = evaluate(ToyWorld(), [CopyRunner(), ...], "runs/toy", split="test")

The CLI is ``editrt evaluate`` (:mod:`editrt.eval.cli`).
"""

from .metrics import FeatureStats, ReferenceStats, csfid, sfid
from .protocol import evaluate, format_table, summarize
from .queries import Query, load_queries, read_queries, target_class_ids
from .runners import CopyRunner, EncodeRunner, FlexITRunner, FunctionRunner, RetrieveRunner, Runner
from .worlds import ImageNetWorld, ToyWorld, World

__all__ = ["evaluate", "format_table", "summarize", "Query", "load_queries", "read_queries", "target_class_ids",
           "FeatureStats", "ReferenceStats", "sfid", "csfid", "Runner", "CopyRunner", "EncodeRunner",
           "RetrieveRunner", "FlexITRunner", "FunctionRunner", "World", "ImageNetWorld", "ToyWorld"]
