"""Measurement core of ``benchmarks/run.py``: timing, statistics, environment, result files.

Conventions (trtexec, ``torch.utils.benchmark``, ``triton.testing.do_bench``):

- warm-up: at least ``Budget.warmup`` calls *and* ``Budget.warmup_s`` seconds (trtexec: 200 ms);
- repetitions: at least ``min_reps``, then more until ``min_time_s`` has passed or ``max_reps``;
- every repetition is timed by wall clock around a synchronised call (``torch.cuda.synchronize``
  before and after on CUDA) and, on CUDA, by a CUDA event pair recorded on the current stream
  (device time, as ``do_bench``);
- statistics: mean, std, coefficient of variation, min, p50, p90, p95, p99, max (linear
  interpolation between order statistics, numpy's default); throughput = items / p50;
- peak memory: ``torch.cuda.max_memory_allocated`` after a reset, and the process RSS sampled by
  a background thread every few milliseconds during the timed repetitions;
- a row is flagged ``high_variance`` when the CV of its primary time exceeds the threshold:
  2.5 % on a GPU (trtexec's), 10 % on a CPU. The CPU threshold is higher because a shared,
  unpinned 2-core CPU machine routinely shows 3-8 % run-to-run noise on identical work; at 10 %
  a flagged result means something else was really competing for the cores.

A result document (JSON, schema ``SCHEMA``) holds the environment, the settings and one row per
measurement; rows in one ``group`` compare against a ``baseline`` row of the same group, and
``ratio`` = baseline time per item / this row's time per item (> 1 is faster than the baseline).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

SCHEMA = "editrt-bench/1"
CV_WARN_GPU = 0.025  # trtexec's threshold
CV_WARN_CPU = 0.10  # shared CPU machines: see the module docstring
STAT_KEYS = ("n", "mean", "std", "cv", "min", "p50", "p90", "p95", "p99", "max")
ROW_REQUIRED = ("suite", "group", "name", "status")
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- statistics -----------------------------------------------------------------------------------

def percentile(sorted_values: Sequence[float], q: float) -> float:
    """q-th percentile (0..100) of ascending values, linear interpolation (numpy 'linear')."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Statistics of a sample (any unit; the harness uses ms): keys ``STAT_KEYS``.

    ``std`` is the sample standard deviation (n - 1), ``cv`` = std / mean (0 for one value).
    """
    vals = sorted(float(v) for v in values)
    if not vals:
        raise ValueError("no timings to summarise")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("timings contain non-finite values")
    n = len(vals)
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
    return {
        "n": n, "mean": mean, "std": std, "cv": std / mean if mean > 0 else 0.0,
        "min": vals[0], "p50": percentile(vals, 50), "p90": percentile(vals, 90),
        "p95": percentile(vals, 95), "p99": percentile(vals, 99), "max": vals[-1],
    }


# -- timing ---------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Budget:
    """How long to warm up and how many repetitions to time."""

    warmup: int = 2  # calls
    warmup_s: float = 0.2  # and at least this long (trtexec: 200 ms)
    # calls faster than this are timed in runs of consecutive calls (one sample = their mean),
    # as trtexec's avgRuns / timeit's autorange: single sub-millisecond calls are timer noise
    min_sample_s: float = 1e-3
    max_inner: int = 100
    min_reps: int = 10
    max_reps: int = 1000
    min_time_s: float = 1.0  # keep repeating until this much time was measured

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Timing:
    """Raw result of :func:`measure`: per-repetition times in ms and peak memory."""

    wall_ms: list[float]
    device_ms: list[float] | None  # CUDA event times; None off CUDA
    warmup_calls: int
    peak_cuda_bytes: int | None
    peak_rss_bytes: int | None
    inner: int = 1  # consecutive calls averaged into one sample

    @property
    def primary_ms(self) -> list[float]:
        """Device time on CUDA (what the GPU spent), wall time elsewhere."""
        return self.device_ms if self.device_ms else self.wall_ms


class RSSSampler:
    """Peak resident set size of this process while the context is open (polls psutil)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RSSSampler":
        try:
            import psutil
        except ImportError:  # psutil is a dependency of editrt; tolerate its absence here only
            return self
        proc = psutil.Process()
        self.peak = proc.memory_info().rss

        def poll() -> None:
            while not self._stop.wait(self.interval_s):
                self.peak = max(self.peak or 0, proc.memory_info().rss)

        self._thread = threading.Thread(target=poll, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            import psutil

            self.peak = max(self.peak or 0, psutil.Process().memory_info().rss)


def _is_cuda(device: Any) -> bool:
    return str(device).startswith("cuda")


def measure(fn: Callable[[], Any], *, budget: Budget = Budget(), device: Any = "cpu",
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time ``fn()`` (no arguments; its result is kept until the device is synchronised).

    On CUDA each repetition is bracketed by ``torch.cuda.synchronize`` and a CUDA event pair on
    the current stream, and ``torch.cuda.max_memory_allocated`` is reset before the timed part.
    ``clock`` is injectable for tests.
    """
    cuda = _is_cuda(device)
    torch = None
    if cuda:
        import torch

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    # warm-up: compiles, autotunes, fills caches and allocators
    calls, t_start, last = 0, clock(), None
    while calls < budget.warmup or clock() - t_start < budget.warmup_s:
        t0 = clock()
        out = fn()
        sync()
        last = clock() - t0
        del out
        calls += 1
    inner = 1
    if last is not None and 0 < last < budget.min_sample_s:
        inner = min(budget.max_inner, math.ceil(budget.min_sample_s / last))
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    wall: list[float] = []
    dev: list[float] | None = [] if cuda else None
    with RSSSampler() as rss:
        measured = 0.0
        while len(wall) < budget.min_reps or (measured < budget.min_time_s and len(wall) < budget.max_reps):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                sync()
                t0 = clock()
                start.record()
                for _ in range(inner):
                    out = fn()
                end.record()
                sync()
                t1 = clock()
                dev.append(start.elapsed_time(end) / inner)
            else:
                t0 = clock()
                for _ in range(inner):
                    out = fn()
                t1 = clock()
            del out
            wall.append((t1 - t0) * 1e3 / inner)
            measured += t1 - t0
    peak_cuda = int(torch.cuda.max_memory_allocated(device)) if cuda else None
    return Timing(wall_ms=wall, device_ms=dev, warmup_calls=calls, peak_cuda_bytes=peak_cuda,
                  peak_rss_bytes=rss.peak, inner=inner)


@dataclasses.dataclass
class StagedTiming:
    """Result of :func:`measure_stages`: the whole call and each named stage, per repetition."""

    total: Timing
    stages: dict[str, list[float]]  # stage -> ms per repetition (device time on CUDA)


def measure_stages(fn: Callable[[Callable[[str], None]], Any], *, budget: Budget = Budget(),
                   device: Any = "cpu", clock: Callable[[], float] = time.perf_counter) -> StagedTiming:
    """Time ``fn(mark)`` where ``fn`` calls ``mark(stage)`` when a stage has finished.

    A stage lasts from the previous mark (or the start) to its own mark. On CUDA the stage times
    come from CUDA events recorded at each mark (no extra synchronisation inside the call);
    elsewhere from the wall clock. A stage marked several times in one call is summed.
    """
    cuda = _is_cuda(device)
    per_rep: list[dict[str, float]] = []
    torch = None
    if cuda:
        import torch

    def one_call() -> Any:
        marks: list[tuple[str, Any]] = []
        if cuda:
            first = torch.cuda.Event(enable_timing=True)
            first.record()
        else:
            first = clock()

        def mark(stage: str) -> None:
            if cuda:
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                marks.append((stage, ev))
            else:
                marks.append((stage, clock()))

        out = fn(mark)
        if cuda:
            torch.cuda.synchronize(device)
        times: dict[str, float] = {}
        prev = first
        for stage, t in marks:
            ms = prev.elapsed_time(t) if cuda else (t - prev) * 1e3
            times[stage] = times.get(stage, 0.0) + ms
            prev = t
        per_rep.append(times)
        return out

    # one call per sample: stage times are per call (edits are far above the timer resolution)
    total = measure(one_call, budget=dataclasses.replace(budget, min_sample_s=0.0), device=device, clock=clock)
    timed = per_rep[-len(total.wall_ms):]  # drop the warm-up calls
    names: list[str] = []
    for rep in timed:
        names += [s for s in rep if s not in names]
    return StagedTiming(total=total, stages={s: [rep.get(s, 0.0) for rep in timed] for s in names})


def cv_threshold(device: Any) -> float:
    return CV_WARN_GPU if _is_cuda(device) else CV_WARN_CPU


# -- result rows ----------------------------------------------------------------------------------

def row_from_timing(timing: Timing, *, suite: str, group: str, name: str, items: int = 1,
                    device: Any = "cpu", baseline: str | None = None, cv_warn: float | None = None,
                    **fields: Any) -> dict[str, Any]:
    """One result row (a JSON-serialisable dict) from a :class:`Timing`.

    ``items``: images (or samples) produced per call, for throughput and per-item ratios.
    ``baseline``: the ``name`` of the row in the same group this one is compared with.
    Extra ``fields`` (backend, precision, batch, stage, variant, params, note, ...) are kept.
    """
    wall = summarize(timing.wall_ms)
    dev = summarize(timing.device_ms) if timing.device_ms else None
    primary = dev or wall
    threshold = cv_threshold(device) if cv_warn is None else cv_warn
    row = {
        "suite": suite, "group": group, "name": name, "status": "ok", "device": str(device),
        "items": int(items), "baseline": baseline,
        "time_source": "cuda_events" if dev else "wall",
        "wall_ms": wall, "device_ms": dev,
        "items_per_s": items * 1e3 / primary["p50"] if primary["p50"] > 0 else None,
        "peak_cuda_mb": timing.peak_cuda_bytes / 2**20 if timing.peak_cuda_bytes is not None else None,
        "peak_rss_mb": timing.peak_rss_bytes / 2**20 if timing.peak_rss_bytes is not None else None,
        "warmup_calls": timing.warmup_calls,
        "calls_per_sample": timing.inner,
        "high_variance": primary["cv"] > threshold,
        "cv_threshold": threshold,
        "ratio": None,
    }
    row.update(fields)
    return row


def skipped_row(*, suite: str, group: str, name: str, reason: str, status: str = "skipped",
                **fields: Any) -> dict[str, Any]:
    """A row for a measurement that could not run (missing backend, error), with the reason."""
    row = {"suite": suite, "group": group, "name": name, "status": status, "reason": reason,
           "baseline": fields.pop("baseline", None), "ratio": None}
    row.update(fields)
    return row


def primary_p50(row: dict[str, Any]) -> float | None:
    stats = row.get("device_ms") or row.get("wall_ms")
    return stats["p50"] if stats else None


def per_item_ms(row: dict[str, Any]) -> float | None:
    p50 = primary_p50(row)
    if p50 is None or row.get("status") != "ok":
        return None
    return p50 / max(int(row.get("items") or 1), 1)


def assign_ratios(rows: list[dict[str, Any]]) -> None:
    """Sets ``row["ratio"]`` = baseline per-item time / row per-item time (speed-up), in place.

    The baseline is looked up by name within the same (suite, group); rows without a baseline,
    or whose baseline did not run, keep ``ratio = None``.
    """
    index = {(r["suite"], r["group"], r["name"]): r for r in rows}
    for r in rows:
        r["ratio"] = None
        base_name = r.get("baseline")
        if not base_name:
            continue
        base = index.get((r["suite"], r["group"], base_name))
        mine, theirs = per_item_ms(r), (per_item_ms(base) if base else None)
        if mine and theirs:
            r["ratio"] = theirs / mine


def row_key(row: dict[str, Any]) -> str:
    return f"{row['suite']}/{row['group']}/{row['name']}"


# -- environment ----------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU model name (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_info() -> dict[str, Any]:
    commit = _run(["git", "rev-parse", "HEAD"], REPO_ROOT)
    dirty = None
    if commit:  # read-only: `git diff --quiet` compares contents without writing the index
        try:
            dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=REPO_ROOT,
                                   capture_output=True, timeout=20).returncode == 1
        except (OSError, subprocess.SubprocessError):
            dirty = None
    return {"commit": commit, "dirty": dirty}


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out = {}
    for dist in ("torch", "torchvision", "onnxruntime", "onnxruntime-gpu", "onnx", "tensorrt",
                 "open_clip_torch", "lpips", "numpy", "scikit-learn", "triton", "editrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _gpu_info() -> list[dict[str, Any]]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                     "memory_gb": round(p.total_memory / 2**30, 2), "sm_count": p.multi_processor_count})
    query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit,temperature.gpu"
    smi = _run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"])
    if smi:
        keys = ["smi_name", "driver", "sm_clock_mhz", "sm_clock_max_mhz", "mem_clock_mhz",
                "mem_clock_max_mhz", "power_limit_w", "temperature_c"]
        for gpu, line in zip(gpus, smi.splitlines()):
            gpu.update({k: v.strip() for k, v in zip(keys, line.split(","))})
    return gpus


def collect_environment(note: str = "") -> dict[str, Any]:
    """Everything needed to interpret a result: machine, libraries, commit, kernels."""
    env: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "note": note,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git": _git_info(),
        "versions": _versions(),
        "gpus": _gpu_info(),
    }
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["torch_cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = []
    try:
        from editrt import ops

        status = ops.kernel_status()
        env["editrt_kernels"] = {"enabled": status.get("kernels_enabled"), "ops": status.get("ops"),
                                 "cuda_compiled": status.get("extension", {}).get("cuda_compiled")}
    except Exception as exc:  # noqa: BLE001 - the environment report must never fail a run
        env["editrt_kernels"] = {"error": f"{type(exc).__name__}: {exc}"}
    return env


def device_label(env: dict[str, Any], device: str) -> str:
    """Short human label of the machine a document was measured on."""
    if device.startswith("cuda") and env.get("gpus"):
        return env["gpus"][0]["name"]
    return f"{env.get('cpu_model', 'CPU')} ({env.get('torch_threads', '?')} threads)"


# -- documents: JSON, CSV, validation ---------------------------------------------------------------

def make_document(rows: list[dict[str, Any]], *, environment: dict[str, Any], settings: dict[str, Any],
                  warnings: list[str] | None = None) -> dict[str, Any]:
    assign_ratios(rows)
    return {"schema": SCHEMA, "environment": environment, "settings": settings,
            "results": rows, "warnings": list(warnings or [])}


def validate_document(doc: Any) -> list[str]:
    """Problems with a result document (empty list: valid). Checks the schema tag, the required
    keys, the statistics of every ``ok`` row and the uniqueness of row keys."""
    problems = []
    if not isinstance(doc, dict):
        return ["document is not a JSON object"]
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for key in ("environment", "settings", "results"):
        if key not in doc:
            problems.append(f"missing top-level key {key!r}")
    seen = set()
    for i, row in enumerate(doc.get("results") or []):
        missing = [k for k in ROW_REQUIRED if k not in row]
        if missing:
            problems.append(f"row {i}: missing {missing}")
            continue
        key = row_key(row)
        if key in seen:
            problems.append(f"row {i}: duplicate key {key}")
        seen.add(key)
        if row["status"] == "ok":
            stats = row.get("wall_ms")
            if not isinstance(stats, dict) or any(k not in stats for k in STAT_KEYS):
                problems.append(f"row {i} ({key}): wall_ms lacks statistics {STAT_KEYS}")
            elif not stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]:
                problems.append(f"row {i} ({key}): percentiles are not ordered")
        elif not row.get("reason"):
            problems.append(f"row {i} ({key}): status {row['status']!r} without a reason")
    return problems


def _atomic_write(path: Path, text: str) -> Path:
    from editrt.files import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def _save_figure(fig, path: str | Path) -> Path:
    """``fig.savefig`` published atomically (editrt.files), PNG at 110 dpi."""
    from editrt.files import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    return _atomic_write(Path(path), json.dumps(doc, indent=1, sort_keys=False, default=str) + "\n")


def load_json(path: str | Path) -> dict[str, Any]:
    """Read and validate a result document; ValueError names what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    problems = validate_document(doc)
    if problems:
        raise ValueError(f"{path} is not an editrt benchmark result: " + "; ".join(problems[:5]))
    return doc


CSV_COLUMNS = (
    "suite", "group", "name", "status", "backend", "precision", "batch", "stage", "items", "device",
    "time_source", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "cv", "reps",
    "wall_p50_ms", "items_per_s", "ratio", "baseline", "peak_cuda_mb", "peak_rss_mb", "high_variance",
    "estimated", "reason",
    # environment, repeated on every row so a CSV row is self-describing
    "created", "git_commit", "git_dirty", "cpu_model", "torch_threads", "gpu_name", "gpu_driver",
    "gpu_sm_clock_mhz", "torch", "onnxruntime", "tensorrt",
)


def csv_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    env = doc["environment"]
    gpu = (env.get("gpus") or [{}])[0]
    versions = env.get("versions", {})
    env_cols = {
        "created": env.get("created"), "git_commit": (env.get("git") or {}).get("commit"),
        "git_dirty": (env.get("git") or {}).get("dirty"), "cpu_model": env.get("cpu_model"),
        "torch_threads": env.get("torch_threads"), "gpu_name": gpu.get("name"),
        "gpu_driver": gpu.get("driver"), "gpu_sm_clock_mhz": gpu.get("sm_clock_mhz"),
        "torch": versions.get("torch"), "onnxruntime": versions.get("onnxruntime"),
        "tensorrt": versions.get("tensorrt"),
    }
    out = []
    for r in doc["results"]:
        stats = r.get("device_ms") or r.get("wall_ms") or {}
        line = {k: r.get(k) for k in ("suite", "group", "name", "status", "backend", "precision", "batch",
                                      "stage", "items", "device", "time_source", "items_per_s", "ratio",
                                      "baseline", "peak_cuda_mb", "peak_rss_mb", "high_variance",
                                      "estimated", "reason")}
        for k in ("p50", "p90", "p95", "p99", "mean", "min", "max"):
            line[f"{k}_ms"] = stats.get(k)
        line["cv"] = stats.get("cv")
        line["reps"] = stats.get("n")
        line["wall_p50_ms"] = (r.get("wall_ms") or {}).get("p50")
        line.update(env_cols)
        out.append(line)
    return out


def write_csv(doc: dict[str, Any], path: str | Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for line in csv_rows(doc):
        writer.writerow({k: ("" if v is None else (f"{v:.6g}" if isinstance(v, float) else v))
                         for k, v in line.items()})
    return _atomic_write(Path(path), buf.getvalue())


# -- reading out ----------------------------------------------------------------------------------

def _fmt_ms(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def _fmt_mem(r: dict[str, Any]) -> str:
    if r.get("peak_cuda_mb") is not None:
        return f"{r['peak_cuda_mb']:.0f} MB gpu"
    if r.get("peak_rss_mb") is not None:
        return f"{r['peak_rss_mb']:.0f} MB rss"
    return "-"


def format_table(doc: dict[str, Any]) -> str:
    """A terminal table per group: p50/p90/p99/mean in ms, CV, items/s, peak memory, ratio."""
    env = doc["environment"]
    lines = [f"editrt benchmark  preset={doc['settings'].get('preset')}  "
             f"device={doc['settings'].get('device')}  commit={(env.get('git') or {}).get('commit', '')[:10]}",
             f"cpu: {env.get('cpu_model')}  threads={env.get('torch_threads')}  "
             f"gpu: {', '.join(g['name'] for g in env.get('gpus') or []) or 'none'}"]
    if env.get("note"):
        lines.append(f"note: {env['note']}")
    header = ("name", "p50 ms", "p90", "p99", "mean", "CV%", "items/s", "peak mem", "ratio")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in doc["results"]:
        groups.setdefault((r["suite"], r["group"]), []).append(r)
    for (suite, group), rows in groups.items():
        table = [header]
        baselines = {r.get("baseline") for r in rows}
        for r in rows:
            if r["status"] != "ok":
                table.append((r["name"], f"[{r['status']}] {r.get('reason', '')}"[:70], "", "", "", "", "", "", ""))
                continue
            s = r.get("device_ms") or r["wall_ms"]
            flag = " !" if r.get("high_variance") else ""
            est = " (est.)" if r.get("estimated") else ""
            table.append((r["name"] + est, _fmt_ms(s["p50"]), _fmt_ms(s["p90"]), _fmt_ms(s["p99"]),
                          _fmt_ms(s["mean"]), f"{100 * s['cv']:.1f}{flag}",
                          f"{r['items_per_s']:.3g}" if r.get("items_per_s") else "-", _fmt_mem(r),
                          f"{r['ratio']:.2f}x" if r.get("ratio") else ("base" if r["name"] in baselines else "-")))
        measured = [row for k, row in enumerate(table) if k == 0 or rows[k - 1]["status"] == "ok"]
        widths = [max(len(str(row[i])) for row in measured) for i in range(len(header))]
        lines.append("")
        lines.append(f"== {suite} / {group}")
        for k, row in enumerate(table):
            if len(row) > 1 and row[1].startswith("[") and k > 0:
                lines.append(f"  {row[0].ljust(widths[0])}  {row[1]}")
                continue
            lines.append("  " + "  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                                          for i, c in enumerate(row)))
    flagged = [r for r in doc["results"] if r.get("high_variance")]
    if flagged:
        lines.append("")
        lines.append(f"! {len(flagged)} row(s) with CV above the threshold "
                     f"({100 * flagged[0]['cv_threshold']:.1f}%): timings unstable "
                     "(other load on the machine, thermal or clock changes; on a GPU lock the clocks)")
    for w in doc.get("warnings") or []:
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows present in both documents: old and new p50 per item and the relative change
    (``change`` = new / old - 1; negative is faster). Rows only in one side are listed too."""
    old_rows = {row_key(r): r for r in old["results"]}
    new_rows = {row_key(r): r for r in new["results"]}
    out = []
    for key in list(new_rows) + [k for k in old_rows if k not in new_rows]:
        o, n = old_rows.get(key), new_rows.get(key)
        o_ms = per_item_ms(o) if o else None
        n_ms = per_item_ms(n) if n else None
        change = (n_ms / o_ms - 1.0) if (o_ms and n_ms) else None
        noise = max((o.get("cv_threshold") or 0) if o else 0, (n.get("cv_threshold") or 0) if n else 0)
        out.append({"key": key, "old_ms": o_ms, "new_ms": n_ms, "change": change,
                    "significant": change is not None and abs(change) > 2 * noise,
                    "only_in": None if (o and n) else ("old" if o else "new")})
    return out


def format_compare(changes: list[dict[str, Any]], old_env: dict[str, Any], new_env: dict[str, Any]) -> str:
    lines = [f"compare: old {(old_env.get('git') or {}).get('commit', '')[:10]} ({old_env.get('created')}) "
             f"-> new {(new_env.get('git') or {}).get('commit', '')[:10]} ({new_env.get('created')})"]
    if old_env.get("cpu_model") != new_env.get("cpu_model") or \
            [g.get("name") for g in old_env.get("gpus") or []] != [g.get("name") for g in new_env.get("gpus") or []]:
        lines.append("! the two runs come from different machines: compare ratios, not times")
    width = max([len(c["key"]) for c in changes] + [10])
    lines.append(f"  {'row'.ljust(width)}  {'old ms/item':>12}  {'new ms/item':>12}  {'change':>8}")
    for c in changes:
        if c["only_in"]:
            lines.append(f"  {c['key'].ljust(width)}  (only in {c['only_in']})")
            continue
        ch = "-" if c["change"] is None else f"{100 * c['change']:+.1f}%"
        mark = "  *" if c["significant"] else ""
        lines.append(f"  {c['key'].ljust(width)}  {_fmt_ms(c['old_ms']):>12}  {_fmt_ms(c['new_ms']):>12}  {ch:>8}{mark}")
    lines.append("  * change larger than twice the CV threshold of the runs")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_breakdown(doc: dict[str, Any], path: str | Path) -> Path | None:
    """One panel per group with ``stage`` rows (a method); a stacked bar per variant (reference,
    editrt), p50 ms of each stage, linear scale so the segments compare honestly."""
    groups: dict[str, dict[str, dict[str, float]]] = {}
    for r in doc["results"]:
        if r.get("stage") and r["status"] == "ok":
            groups.setdefault(r["group"], {}).setdefault(r.get("variant") or "", {})[r["stage"]] = primary_p50(r)
    if not groups:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 1.0 + 1.3 * len(groups)), squeeze=False)
    for ax, (group, variants) in zip(axes[:, 0], groups.items()):
        stage_names: list[str] = []
        for stages in variants.values():
            stage_names += [s for s in stages if s not in stage_names]
        labels = list(variants)
        left = [0.0] * len(labels)
        for s in stage_names:
            vals = [variants[v].get(s, 0.0) for v in labels]
            ax.barh(range(len(labels)), vals, left=left, label=s)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(group, fontsize=9)
        ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes[-1, 0].set_xlabel("p50 latency (ms), stacked by stage")
    fig.suptitle(f"latency breakdown ({doc['settings'].get('preset')}, {doc['settings'].get('device')})", fontsize=10)
    fig.tight_layout()
    try:
        return _save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_batch_scaling(doc: dict[str, Any], path: str | Path) -> Path | None:
    """One panel per network: p50 latency vs batch size, one line per backend + precision."""
    nets: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for r in doc["results"]:
        if r["suite"] == "networks" and r["status"] == "ok" and r.get("batch"):
            line = f"{r.get('backend')} {r.get('precision')}"
            nets.setdefault(r["group"], {}).setdefault(line, []).append((int(r["batch"]), primary_p50(r)))
    if not nets:
        return None
    plt = _pyplot()
    n = len(nets)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (net, lines) in zip(axes.flat, nets.items()):
        for label, pts in sorted(lines.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_title(net, fontsize=9)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("p50 ms")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"latency vs batch ({doc['settings'].get('preset')}, {doc['settings'].get('device')})")
    fig.tight_layout()
    try:
        return _save_figure(fig, path)
    finally:
        plt.close(fig)


def plot_ratios(doc: dict[str, Any], path: str | Path, suite: str = "flexit") -> Path | None:
    """Horizontal bars of ``ratio`` (speed-up over the group's baseline) for one suite."""
    rows = [r for r in doc["results"] if r["suite"] == suite and r.get("ratio") and not r.get("stage")]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.5))
    labels = [f"{r['group']}: {r['name']}" for r in rows]
    ax.barh(range(len(rows)), [r["ratio"] for r in rows], color="tab:green")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up over the reference (x, per item)")
    ax.set_title(f"{suite}: each optimisation added in turn ({doc['settings'].get('device')})")
    fig.tight_layout()
    try:
        return _save_figure(fig, path)
    finally:
        plt.close(fig)
