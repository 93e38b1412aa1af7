"""Load test of ``editrt serve``: N concurrent clients over loopback against a real Triton server.

    python benchmarks/serve_load.py --out benchmarks/results/cpu-serve-load.json

For each server (dynamic batching with fused SDK calls, and ``--no-fuse`` for comparison) and
each concurrency (default 1 and 8), rounds of a bounded request count and time are run
*interleaved* (1, 8, 1, 8, ...) so that a shared machine's load affects both alike. Reported per
row: latency p50/p90/p99 (client wall time per request), throughput (answered requests per
second of the round's wall time), error count, the sizes of the batches Triton formed (each
response's summary says how many requests its model call held; Triton's metrics
``nv_inference_count`` / ``nv_inference_exec_count`` give the mean), and the throughput ratio of
each concurrency against concurrency 1 on the same server (what dynamic batching buys).

Every response is checked against the same edit run directly through the SDK in this process:
bitwise for requests that ran alone, and within ``--tolerance`` (max |diff| of the [-1, 1]
images; PNG pixels within 1 level) for fused ones. The document uses the schema of
``benchmarks/harness.py``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk"))

import harness  # noqa: E402

from editrt.client import EditClient, png_pixels, triton_metrics  # noqa: E402
from editrt.errors import EditrtError  # noqa: E402
from editrt.serve.process import ServerProcess  # noqa: E402
from editrt.serve.protocol import encode_png  # noqa: E402

SUITE = "serve"
TARGET = "smiling face"


def reference_results(method: str, seeds: list[int]) -> dict[int, Any]:
    """The SDK's edit of each seed (the editor the server runs with --random-weights)."""
    from editrt.methods.stylespace.deltaedit import DeltaEdit
    from editrt.methods.stylespace.feu import FEU
    from editrt.methods.stylespace.global_direction import GlobalDirection

    editor = {"global": GlobalDirection, "feu": FEU, "deltaedit": DeltaEdit}[method](random_init=True)
    return {s: editor.edit(editor.codes_from_seeds([s]), TARGET) for s in seeds}


def check(result, ref, tolerance: float) -> tuple[bool, float, int]:
    """(bitwise equal, max |diff| of the images, max PNG pixel difference)."""
    diff = float((result.images - ref.images).abs().max())
    png = int(np.abs(png_pixels(result.extras["png"]).astype(int) - png_pixels(encode_png(ref.grid()))).max())
    return torch.equal(result.images, ref.images) and result.extras["png"] == encode_png(ref.grid()), diff, png


def run_round(url: str, method: str, clients: int, requests: int, seeds: list[int], timeout_s: float) -> dict:
    """``requests`` edits spread over ``clients`` threads, each stopping at the deadline."""
    per_client = [requests // clients + (1 if n < requests % clients else 0) for n in range(clients)]
    records: list[tuple[float, Any, Exception | None, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout_s
    start = threading.Barrier(clients + 1)

    def worker(n: int) -> None:
        with EditClient(url, timeout_s=timeout_s) as c:
            start.wait()
            for j in range(per_client[n]):
                if time.monotonic() > deadline:
                    return
                seed = seeds[(n * 7919 + j) % len(seeds)]
                t0 = time.perf_counter()
                try:
                    r, err = c.edit(target=TARGET, seed=seed, method=method), None
                except EditrtError as exc:
                    r, err = None, exc
                with lock:
                    records.append(((time.perf_counter() - t0) * 1e3, r, err, seed))
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=timeout_s + 30)
    return {"records": records, "wall_s": time.perf_counter() - t0, "sent": requests}


def measure_server(name: str, server_args: list[str], args, refs: dict[int, Any]) -> list[dict]:
    seeds = sorted(refs)
    with ServerProcess(server_args, env={"OMP_NUM_THREADS": str(torch.get_num_threads())}) as server:
        url = server.url(args.protocol)
        run_round(url, args.method, max(args.concurrency), args.warmup, seeds, args.round_timeout)  # warm-up
        rounds: dict[int, list[dict]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            for c in args.concurrency:  # interleaved: 1, 8, 1, 8, ...
                m0 = triton_metrics(server.metrics_url).get(args.method, {})
                rnd = run_round(url, args.method, c, args.requests, seeds, args.round_timeout)
                m1 = triton_metrics(server.metrics_url).get(args.method, {})
                rnd["triton"] = {k: m1.get(k, 0.0) - m0.get(k, 0.0)
                                 for k in ("nv_inference_count", "nv_inference_exec_count",
                                           "nv_inference_request_success", "nv_inference_request_failure")}
                rounds[c].append(rnd)
    rows = []
    for c, rs in rounds.items():
        recs = [r for rnd in rs for r in rnd["records"]]
        ok = [r for r in recs if r[2] is None]
        errors = [r for r in recs if r[2] is not None]
        checks = [check(r[1], refs[r[3]], args.tolerance) for r in ok]
        batch_sizes = collections.Counter(r[1].extras["served"]["requests"] for r in ok)
        fused = collections.Counter(r[1].extras["served"]["fused"] for r in ok)
        wall_s = sum(rnd["wall_s"] for rnd in rs)
        triton = {k: sum(rnd["triton"][k] for rnd in rs) for k in rs[0]["triton"]}
        row: dict[str, Any] = {
            "suite": SUITE, "group": name, "name": f"concurrency-{c}", "status": "ok" if ok else "failed",
            "device": "cpu", "items": 1, "baseline": f"concurrency-{min(args.concurrency)}",
            "time_source": "wall", "concurrency": c, "method": args.method, "protocol": args.protocol,
            "rounds": len(rs), "requests_sent": sum(rnd["sent"] for rnd in rs), "answered": len(recs),
            "errors": len(errors), "error_examples": [str(e[2])[:200] for e in errors[:3]],
            "throughput_rps": len(ok) / wall_s if wall_s > 0 else None, "wall_s": wall_s,
            "batch_sizes_formed": {str(k): v for k, v in sorted(batch_sizes.items())},
            "fused_sdk_call_sizes": {str(k): v for k, v in sorted(fused.items())},
            "triton_mean_batch": (triton["nv_inference_count"] / triton["nv_inference_exec_count"]
                                  if triton["nv_inference_exec_count"] else None),
            "triton_counters": triton,
            "bitwise_identical": sum(1 for b, _, _ in checks if b), "checked": len(checks),
            "max_abs_diff": max((d for _, d, _ in checks), default=None),
            "max_png_level_diff": max((p for _, _, p in checks), default=None),
            "within_tolerance": all(d <= args.tolerance and p <= 1 for _, d, p in checks),
            "tolerance": args.tolerance, "ratio": None}
        if not ok:
            row["reason"] = f"no request succeeded ({len(errors)} errors)"
        else:
            row["wall_ms"] = harness.summarize(r[0] for r in ok)
            row["items_per_s"] = row["throughput_rps"]
        rows.append(row)
    base = {r["concurrency"]: r for r in rows}
    for r in rows:  # throughput ratio vs the lowest concurrency (latency ratios say the opposite)
        b = base.get(min(args.concurrency))
        if b and b.get("throughput_rps") and r.get("throughput_rps"):
            r["throughput_ratio_vs_baseline"] = r["throughput_rps"] / b["throughput_rps"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="global", choices=["global", "feu", "deltaedit"])
    p.add_argument("--protocol", default="grpc", choices=["http", "grpc"])
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    p.add_argument("--requests", type=int, default=96, help="requests per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per concurrency")
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--round-timeout", type=float, default=120.0, help="seconds a round may take")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=5000)
    p.add_argument("--seeds", type=int, default=16, help="distinct generator seeds the clients cycle through")
    p.add_argument("--tolerance", type=float, default=1e-4)
    p.add_argument("--no-compare-unfused", action="store_true", help="skip the --no-fuse server")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-serve-load.json"))
    args = p.parse_args(argv)
    if min(args.concurrency) < 1 or args.requests < 1 or args.rounds < 1:
        p.error("concurrency, requests and rounds must be >= 1")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    refs = reference_results(args.method, list(range(args.seeds)))
    common = ["--random-weights", "--methods", args.method, "--no-clip-models", "--max-batch", str(args.max_batch),
              "--queue-delay-us", str(args.queue_delay_us), "--drain-timeout", "5"]
    rows = measure_server("fused", common, args, refs)
    if not args.no_compare_unfused:
        rows += measure_server("unfused", common + ["--no-fuse"], args, refs)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings.update(preset="tiny", device="cpu")  # the networks --random-weights serves
    settings["server"] = "editrt serve --random-weights (tiny StyleGAN2 32 px + tiny CLIP), PyTriton 0.7 / Triton 2.51"
    doc = harness.make_document(rows, environment=harness.collect_environment(
        "shared CPU machine: other jobs ran at the same time; compare ratios, not absolute times"), settings=settings)
    for r in rows:  # make_document's per-item latency ratio is not the point here: throughput is
        r["ratio"] = r.get("throughput_ratio_vs_baseline")
    problems = harness.validate_document(doc)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    harness.write_json(doc, args.out)
    for r in rows:
        lat = r.get("wall_ms") or {}
        print(f"{r['group']:<8} c={r['concurrency']:<3} {r.get('throughput_rps') or 0:7.1f} req/s  "
              f"p50 {lat.get('p50', float('nan')):7.1f} ms  p90 {lat.get('p90', float('nan')):7.1f}  "
              f"p99 {lat.get('p99', float('nan')):7.1f}  errors {r['errors']}  batches {r['batch_sizes_formed']}  "
              f"x{r.get('throughput_ratio_vs_baseline') or float('nan'):.2f} vs c=1  "
              f"bitwise {r['bitwise_identical']}/{r['checked']}  max|d| {r['max_abs_diff']}")
    print(f"wrote {args.out}")
    bad = [r for r in rows if r["errors"] or not r["within_tolerance"] or r["answered"] < r["requests_sent"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
