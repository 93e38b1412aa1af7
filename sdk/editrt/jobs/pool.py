"""A fixed pool of Ray actors, each holding what one ``builder`` call made (models loaded once).

The driver submits tasks, at most ``depth`` per actor, and receives ``(index, result)`` in
completion order; it alone writes outputs. Actors restart after a crash (a killed process, a
lost node) and Ray re-runs the task that was in flight on the new actor, so a result is never
lost. A task is a pure function of its input (seeds included), so a retried task returns what
the first attempt would have returned.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterator, Sequence

from ..errors import BackendUnavailable, EditrtError, InputError

log = logging.getLogger(__name__)


class _Worker:
    """The actor body: ``handler = builder(*args)`` once, then ``handler(task)`` per task."""

    def __init__(self, builder: Callable[..., Callable[[Any], Any]], args: tuple):
        self.handler = builder(*args)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Any) -> Any:
        return self.handler(task)


def _unwrap(ray, exc: Exception) -> Exception:
    """An editrt error raised inside a task, as itself; Ray's own failures as BackendUnavailable."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, EditrtError):
        return cause
    if isinstance(exc, ray.exceptions.RayActorError):
        return BackendUnavailable(f"a Ray worker died and could not be restarted: {exc}")
    if isinstance(exc, ray.exceptions.OutOfMemoryError):  # Ray's memory monitor killed the worker
        return BackendUnavailable("Ray killed a worker because the machine ran low on memory: use fewer "
                                  f"--workers or free memory ({str(exc).splitlines()[0]})")
    return exc


class ActorPool:
    """``workers`` actors built by ``builder(*args)``; use as a context manager.

    num_cpus / num_gpus: resources each actor reserves (Ray gives an actor with ``num_gpus=1``
    its own GPU through CUDA_VISIBLE_DEVICES, so ``device="cuda"`` inside it is that GPU).
    max_restarts: restarts per actor before the job fails; a task in flight is retried as often.
    """

    def __init__(self, ray, builder: Callable, args: tuple = (), *, workers: int, num_cpus: float = 1,
                 num_gpus: float = 0, max_restarts: int = 3, depth: int = 2):
        if workers < 1:
            raise InputError(f"the number of Ray workers must be >= 1, got {workers}")
        if depth < 1:
            raise InputError(f"tasks in flight per worker must be >= 1, got {depth}")
        self.ray, self.depth, self.workers = ray, depth, workers
        self._actor_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
                                     max_task_retries=max_restarts)(_Worker)
        self._builder, self._args = builder, tuple(args)
        self._actors: list | None = None  # started on first use: a job with nothing to do loads no model

    @property
    def actors(self) -> list:
        if self._actors is None:
            self._actors = [self._actor_cls.remote(self._builder, self._args) for _ in range(self.workers)]
        return self._actors

    def __enter__(self) -> "ActorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for actor in self._actors or []:
            self.ray.kill(actor, no_restart=True)
        self._actors = None

    def pids(self) -> list[int]:
        """Process id of each actor (waits until every actor is built)."""
        try:
            return self.ray.get([a.pid.remote() for a in self.actors])
        except Exception as exc:  # an actor whose builder failed
            raise _unwrap(self.ray, exc) from None

    def map_unordered(self, tasks: Sequence[Any], *, progress: bool = False, desc: str = "tasks",
                      unit: str = "task") -> Iterator[tuple[int, Any]]:
        """Run every task; yield ``(index into tasks, result)`` as each one finishes."""
        from tqdm.auto import tqdm

        ray = self.ray
        if not tasks:
            return
        pending = list(range(len(tasks)))[::-1]  # pop() from the end: submission in task order
        in_flight: dict[Any, tuple[int, int]] = {}  # ref -> (task index, actor index)

        def submit(actor_index: int) -> None:
            i = pending.pop()
            in_flight[self.actors[actor_index].run.remote(tasks[i])] = (i, actor_index)

        for _ in range(self.depth):
            for a in range(len(self.actors)):
                if pending:
                    submit(a)
        with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not progress) as bar:
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                i, a = in_flight.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:
                    raise _unwrap(ray, exc) from None
                if pending:
                    submit(a)
                bar.update(1)
                yield i, result


def default_workers(ray, *, num_cpus: float = 1, num_gpus: float = 0) -> int:
    """As many actors as the cluster has room for (GPUs when each needs one, else CPUs)."""
    res = ray.cluster_resources()
    if num_gpus:
        return max(1, int(res.get("GPU", 0) // num_gpus))
    return max(1, int(res.get("CPU", 1) // max(num_cpus, 1e-9)))


__all__ = ["ActorPool", "default_workers"]
