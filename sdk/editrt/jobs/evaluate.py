"""``editrt evaluate --ray``: the protocol's query batches on Ray actors.

Every actor builds the world and the runners from the same command line (models loaded once per
actor) and returns each batch's records and 8-bit outputs; the driver writes the PNGs, appends
``results.jsonl`` (the single writer), and computes the reference statistics, the summary and the
grid as in the single-process run. Batches are cut exactly as there and each FlexIT batch is
seeded by its first query, so the results do not depend on which actor ran which batch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..errors import EngineError
from .cli_args import gpus_per_worker, ray_address
from .cluster import ray_session
from .pool import ActorPool, default_workers

log = logging.getLogger(__name__)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round().to(torch.uint8)  # exact: outputs are already k/255


class _EvalWorker:
    def __init__(self, args):
        from ..eval.assembly import build_evaluation

        self.world, runners, _ = build_evaluation(args)
        self.runners = {r.name: r for r in runners}
        self.queries = {q.query_id: q for q in self.world.queries(args.split, args.limit)}

    def __call__(self, task: tuple[str, list[int]]):
        from ..eval.protocol import compute_batch

        name, ids = task
        records, outputs = compute_batch(self.world, self.runners[name], [self.queries[i] for i in ids])
        return records, [_to_uint8(o) for o in outputs]


class RayBatches:
    """A :data:`~editrt.eval.protocol.BatchExecutor` over an :class:`ActorPool` of ``_EvalWorker``."""

    def __init__(self, pool: ActorPool):
        self.pool = pool

    def __call__(self, runner, batches: Sequence[list]) -> Iterator[tuple[list, list[dict], list[torch.Tensor]]]:
        tasks = [(runner.name, [q.query_id for q in b]) for b in batches]
        for i, (records, outputs) in self.pool.map_unordered(tasks):
            if any(r["fingerprint"] != runner.fingerprint for r in records):
                raise EngineError(f"{runner.name}: a Ray worker ran other settings or weights than this process "
                                  "(fingerprints differ); give every node the same checkpoints")
            yield batches[i], records, [o.float() / 255 for o in outputs]


def evaluate_on_ray(args, world, runners, out_dir: Path, **kwargs):
    """:func:`editrt.eval.protocol.evaluate` with the batches on Ray (``args``: the command line)."""
    from ..eval.protocol import evaluate

    num_gpus = gpus_per_worker(args.device)
    with ray_session(ray_address(args)) as ray:
        workers = args.workers or default_workers(ray, num_gpus=num_gpus)
        with ActorPool(ray, _EvalWorker, (args,), workers=workers, num_gpus=num_gpus) as pool:
            return evaluate(world, runners, out_dir, executor=RayBatches(pool), **kwargs)


__all__ = ["evaluate_on_ray", "RayBatches"]
