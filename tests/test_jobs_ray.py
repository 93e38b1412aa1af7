"""The Ray jobs on a local cluster (2 CPUs, no dashboard, loopback): relevance shards, evaluate,
bulk edits, and a worker killed mid-job. One cluster for the whole file, shut down at the end."""

import json
import os
import signal
import threading
import time

import pytest
import torch

ray = pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from editrt import batch  # noqa: E402
from editrt.jobs.relevance import Networks, RelevanceSettings, relevance_on_ray, shard_dir  # noqa: E402


def _ray_children():
    alive = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:  # exited meanwhile
            pass
    return alive


@pytest.fixture(scope="session")
def ray_cluster():
    """A local cluster started once; everything it started is stopped afterwards."""
    if ray.is_initialized():
        pytest.skip("a Ray session is already running in this process")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()
    _, alive = psutil.wait_procs(_ray_children(), timeout=20)
    for p in alive:
        p.kill()


@pytest.fixture
def one_thread():
    """Ray gives each 1-CPU actor one torch thread; CPU results are bit-identical only at equal
    thread counts (reductions split differently), so this process uses one too."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_relevance_shards_merge_and_resume(ray_cluster, tmp_path, one_thread):
    from editrt.methods.stylespace import compute_channel_stats, compute_relevance

    nets = Networks("tiny", "tiny", random_init=True)
    G, clip = nets.load()
    stats = compute_channel_stats(G, n=64)
    settings = RelevanceSettings(n_images=1, batch_size=64)
    single = compute_relevance(G, clip, stats, n_images=1, batch_size=64, progress=False)
    out = tmp_path / "fs3.safetensors"
    merged = relevance_on_ray(nets, G, clip, stats, settings, out, workers=2, shard_rows=100, progress=False,
                              keep_shards=True)
    assert torch.equal(merged, single)
    from editrt.methods.stylespace import load_fs3

    assert torch.equal(load_fs3(out, G.layout.conv_total, clip.embed_dim), single)
    shards = sorted(shard_dir(out).glob("rows-*.safetensors"))
    assert len(shards) == 4  # 336 rows in shards of 100
    # resume: finished shards are kept as they are, a missing one is recomputed
    shards[1].unlink()
    kept = {p: p.stat().st_mtime_ns for p in (shards[0], shards[2], shards[3])}
    again = relevance_on_ray(nets, G, clip, stats, settings, out, workers=1, shard_rows=100, progress=False,
                             keep_shards=True)
    assert torch.equal(again, single) and shards[1].is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    # the command line with all shards on disk: merged without any Ray task, shard folder removed
    from editrt.cli import main

    out.unlink()
    assert main(["relevance", "--random-weights", "-o", str(out), "--stats-samples", "64", "--images", "1",
                 "--batch-size", "64", "--ray", "--shard-rows", "100", "--no-progress"]) == 0
    assert torch.equal(load_fs3(out, G.layout.conv_total, clip.embed_dim), single)
    assert not shard_dir(out).exists()


def _strip(summary):
    for row in summary["rows"]:
        row.pop("seconds_per_query")  # wall time, differs between any two runs
    return summary


def _records(path):
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in recs),
                  key=lambda r: json.dumps(r, sort_keys=True))


def test_evaluate_on_ray_matches_single_process(ray_cluster, tmp_path, one_thread):
    from editrt.cli import main

    argv = ["evaluate", "--toy", "--limit", "3", "--batch-size", "1", "--steps", "1", "--baselines", "COPY",
            "--stats-per-class", "2", "--grid-rows", "2", "--no-progress"]
    assert main(argv + ["-o", str(tmp_path / "one")]) == 0
    assert main(argv + ["-o", str(tmp_path / "ray"), "--ray", "--workers", "2"]) == 0
    one, on_ray = tmp_path / "one", tmp_path / "ray"
    assert _strip(json.loads((one / "summary.json").read_text())) == \
        _strip(json.loads((on_ray / "summary.json").read_text()))
    assert _records(one / "results.jsonl") == _records(on_ray / "results.jsonl")
    for png in (one / "images").rglob("*.png"):
        assert png.read_bytes() == (on_ray / png.relative_to(one)).read_bytes()
    # resumable: nothing is recomputed
    assert main(argv + ["-o", str(on_ray), "--ray", "--workers", "1"]) == 0
    assert len((on_ray / "results.jsonl").read_text().splitlines()) == 6


def _title(proc) -> str:
    """A process's command line (Ray names a busy actor process ``ray::_Worker.run``)."""
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:  # exited meanwhile
        return ""


def _kill_a_busy_worker(results: "os.PathLike", killed: list, stop: threading.Event):
    """Once the first result is written, SIGKILL one actor process that is running a task."""
    while not stop.is_set():
        if os.path.exists(results) and os.path.getsize(results) > 0:
            busy = [p for p in _ray_children() if "_Worker.run" in _title(p)]
            if busy:
                killed.append((busy[0].pid, len(open(results).read().splitlines())))
                os.kill(busy[0].pid, signal.SIGKILL)
                return
        time.sleep(0.05)


def test_batch_on_ray_survives_a_killed_worker(ray_cluster, tmp_path, one_thread):
    from importlib.resources import files

    sample = str(files("editrt") / "data" / "sample.png")
    rows = [{"id": f"r{i}", "image": sample, "source": "cat", "target": t, "seed": i, "settings": {"steps": 3}}
            for i, t in enumerate(["dog", "tiger", "fox", "owl", "horse", "bear"])]
    rows.append({"id": "bad", "image": sample, "source": "cat", "target": ""})
    opts = batch.BatchOptions(random_init=True)
    ref = batch.run(rows, tmp_path / "here", options=opts)
    killed, stop = [], threading.Event()
    watcher = threading.Thread(target=_kill_a_busy_worker, args=(tmp_path / "ray" / batch.RESULTS_FILE, killed, stop))
    watcher.start()
    try:
        rep = batch.run(rows, tmp_path / "ray", options=opts, ray=True, workers=2)
    finally:
        stop.set()
        watcher.join()
    assert killed and killed[0][1] < len(rows), "no worker was killed mid-job"
    assert (rep.edited, rep.failed) == (ref.edited, ref.failed) == (6, 1)
    lines = (tmp_path / "ray" / batch.RESULTS_FILE).read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(r["id"] for r in rows)  # none lost or doubled
    assert _records(tmp_path / "here" / batch.RESULTS_FILE) == _records(tmp_path / "ray" / batch.RESULTS_FILE)
    for r in rows[:-1]:
        assert (tmp_path / "here" / f"{r['id']}.png").read_bytes() == (tmp_path / "ray" / f"{r['id']}.png").read_bytes()


def test_shutdown_leaves_nothing_running(ray_cluster):
    ray_cluster.shutdown()
    _, alive = psutil.wait_procs(_ray_children(), timeout=20)
    assert not alive, f"processes left running: {[p.cmdline() for p in alive]}"
