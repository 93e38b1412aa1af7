"""The same bulk job in one process and on a local Ray cluster with 1 and 2 workers.

    python benchmarks/ray_batch.py --out benchmarks/results/cpu-ray-batch-tiny.json
    python benchmarks/ray_batch.py --rows 8 --steps 2 --rounds 1          # quicker

Job: ``--rows`` FlexIT edits of the bundled sample on the tiny networks (seeded random weights),
``--steps`` updates each, through ``editrt.batch.run`` (one process) or ``run(..., ray=True,
workers=N)``. Every run starts from nothing it can reuse: a new output folder and new editors,
so each one pays its model loading (the one-process run once, each Ray actor once). The Ray
cluster itself is started once (its start-up time is reported apart). Modes are interleaved
round by round and the median of the rounds is kept, since the machine may be shared.

Reported: seconds per run, rows/s, throughput ratio to the one-process run; the same rows again
once the models are loaded (one process: a loaded editor; Ray: after each actor's first row, with
the time until then as the actors' start-up), which is the rate a long job runs at; and Ray's overhead
per task, measured two ways: a no-op task round trip through the same actor pool (1 worker,
``--noop-tasks`` tasks), and (Ray 1 worker - one process) / rows for this job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def _noop_builder():
    return lambda task: task


def _rows(n: int, steps: int) -> list[dict]:
    sample = str(files("editrt") / "data" / "sample.png")
    targets = ["dog", "tiger", "fox", "owl", "horse", "bear", "lion", "wolf"]
    return [{"id": f"r{i:03d}", "image": sample, "source": "cat", "target": targets[i % len(targets)], "seed": i,
             "settings": {"steps": steps}} for i in range(n)]


def _timed_run(rows, tmp: Path, tag: str, ray, workers=None) -> float:
    from editrt import batch

    out = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=tmp))
    t0 = time.perf_counter()
    rep = batch.run(rows, out, options=batch.BatchOptions(random_init=True), ray=ray, workers=workers)
    seconds = time.perf_counter() - t0
    if rep.edited != len(rows):
        raise SystemExit(f"{tag}: only {rep.edited}/{len(rows)} rows were edited")
    return seconds


def _warm_here(rows) -> float:
    """Rows/s of one process whose editor is already loaded."""
    from editrt import batch

    editor = batch.RowEditor(batch.BatchOptions(random_init=True))
    editor(batch.rows_from(rows[:1])[0])  # model loading
    todo = batch.rows_from(rows)
    t0 = time.perf_counter()
    if any(editor(r)["status"] != "ok" for r in todo):
        raise SystemExit("a row failed")
    return len(todo) / (time.perf_counter() - t0)


def _warm_on_ray(ray, rows, workers: int) -> tuple[float, float]:
    """(seconds until every actor has loaded its editor, rows/s on the loaded actors)."""
    from editrt import batch
    from editrt.jobs.pool import ActorPool

    todo = batch.rows_from(rows)
    t0 = time.perf_counter()
    with ActorPool(ray, batch.RowEditor, (batch.BatchOptions(random_init=True),), workers=workers) as pool:
        pool.pids()
        list(pool.map_unordered(todo[:workers]))  # the first task of each actor loads its models
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        if any(res["status"] != "ok" for _, res in pool.map_unordered(todo)):
            raise SystemExit("a row failed")
        return startup, len(todo) / (time.perf_counter() - t1)


def _noop_overhead(ray, tasks: int) -> float:
    from editrt.jobs.pool import ActorPool

    with ActorPool(ray, _noop_builder, workers=1) as pool:
        pool.pids()  # actor started: time only the round trips
        t0 = time.perf_counter()
        n = sum(1 for _ in pool.map_unordered(list(range(tasks))))
        return (time.perf_counter() - t0) / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=12)
    ap.add_argument("--steps", type=int, default=4, help="FlexIT updates per row")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--noop-tasks", type=int, default=200)
    ap.add_argument("--out", type=Path, help="write the JSON document here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ray
    import torch

    torch.set_num_threads(1)  # one core per worker, and one for the one-process run
    rows = _rows(args.rows, args.steps)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    cluster_start = time.perf_counter() - t0
    modes = {"one process": dict(ray=False), "ray, 1 worker": dict(ray=True, workers=1),
             "ray, 2 workers": dict(ray=True, workers=2)}
    times: dict[str, list[float]] = {m: [] for m in modes}
    warm: dict[str, list[float]] = {m: [] for m in modes}
    startup: dict[str, list[float]] = {m: [] for m in modes if m != "one process"}
    try:
        noop = _noop_overhead(ray, args.noop_tasks)
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.rounds):
                for mode, kw in modes.items():
                    times[mode].append(_timed_run(rows, Path(tmp), f"round{r}", **kw))
                    if kw["ray"]:
                        up, rate = _warm_on_ray(ray, rows, kw["workers"])
                        startup[mode].append(up)
                    else:
                        rate = _warm_here(rows)
                    warm[mode].append(rate)
                    print(f"round {r}: {mode}: job {times[mode][-1]:.2f} s, loaded {rate:.3f} rows/s", flush=True)
    finally:
        ray.shutdown()
    base = statistics.median(times["one process"])
    warm_base = statistics.median(warm["one process"])
    results = [{"mode": m, "seconds": statistics.median(v), "runs": v, "rows_per_s": args.rows / statistics.median(v),
                "throughput_ratio": base / statistics.median(v),
                "loaded_rows_per_s": statistics.median(warm[m]), "loaded_runs": warm[m],
                "loaded_throughput_ratio": statistics.median(warm[m]) / warm_base,
                "actor_startup_s": statistics.median(startup[m]) if m in startup else None}
               for m, v in times.items()]
    overhead_job = (statistics.median(times["ray, 1 worker"]) - base) / args.rows
    doc = {"schema": "editrt-ray-bench/1",
           "environment": harness.collect_environment(
               "shared 2-core VM, other jobs running: ratios of interleaved runs are the meaningful numbers"),
           "settings": {"rows": args.rows, "steps": args.steps, "rounds": args.rounds, "method": "flexit",
                        "models": "tiny, seeded random", "ray_num_cpus": 2, "noop_tasks": args.noop_tasks,
                        # 0 turns off Ray's memory monitor, which kills workers when the whole machine
                        # (other users' processes included) nears its memory limit
                        "RAY_memory_monitor_refresh_ms": os.environ.get("RAY_memory_monitor_refresh_ms")},
           "ray_cluster_start_s": cluster_start, "results": results,
           "ray_overhead_per_task_s": {"noop_round_trip": noop, "job_minus_one_process_per_row": overhead_job}}
    for r in results:
        up = f", actors ready after {r['actor_startup_s']:.1f} s" if r["actor_startup_s"] is not None else ""
        print(f"{r['mode']:15} job {r['seconds']:7.2f} s  {r['rows_per_s']:6.3f} rows/s  x{r['throughput_ratio']:.2f}"
              f" | models loaded: {r['loaded_rows_per_s']:6.3f} rows/s  x{r['loaded_throughput_ratio']:.2f}{up}")
    print(f"ray cluster start {cluster_start:.2f} s; overhead per task: no-op round trip {noop * 1e3:.2f} ms, "
          f"job (ray 1 worker - one process) / rows {overhead_job:.2f} s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        harness.write_json(doc, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
