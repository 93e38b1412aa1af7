"""editrt latency profiling: networks per backend x precision x batch, and whole edits by stage.

    python benchmarks/run.py --preset tiny                 # every tiny network and method
    python benchmarks/run.py --preset tiny --quick         # smoke run (fewer repetitions)
    python benchmarks/run.py --preset paper --suites networks --batches 1 8
    python benchmarks/run.py --preset tiny --compare benchmarks/results/cpu-tiny.json
    python benchmarks/run.py --preset paper --list-specs   # the specs each method's edits open
    python benchmarks/run.py --preset paper --suites networks --for deltaedit

Suites:
  networks  each exportable network (registry spec) per backend: torch-eager, torch-compile,
            torch-cudagraph, ort-cpu, ort-cuda, ort-trt (onnxruntime's TensorRT EP), tensorrt;
            x precision (fp32; fp16/bf16 on CUDA) x batch. Baseline: torch-eager fp32, same batch.
  flexit    FlexIT per step: the reference loop, then each optimisation added in turn
            (benchmarks/flexit_loop.py), batched steps, and whole edits by stage.
  edits     global directions / FEU / DeltaEdit text -> image by stage, vs the reference loops
            (benchmarks/style_edits.py).
  ops       editrt._C fused kernels vs the torch reference, forward + backward, FlexIT sizes
            (shapes from benchmarks/ops_kernels.py).

Every row gives p50/p90/p99/mean/CV of its time (CUDA events on a GPU, wall clock otherwise),
items/s, peak memory and the ratio to its group's baseline. Output: a terminal table, and with
--out DIR: <tag>.json, <tag>.csv, <tag>-breakdown.png, <tag>-batch.png, <tag>-flexit.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import harness  # noqa: E402

log = logging.getLogger("benchmarks.run")

SUITES = ("networks", "flexit", "edits", "ops")
BACKENDS = ("torch-eager", "torch-compile", "torch-cudagraph", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
PAPER_SPECS = ("clip/ViT-B-32/image", "clip/ViT-B-32/text", "clip/RN50/image", "clip/RN50x4/image",
               "vqgan/vqgan_imagenet_f16_1024/encoder", "vqgan/vqgan_imagenet_f16_1024/decoder",
               "stylegan2/ffhq-1024/mapping", "stylegan2/ffhq-1024/synthesis", "deltaedit/ffhq/mapper")
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


# -- presets --------------------------------------------------------------------------------------

def preset_settings(preset: str, cuda: bool, quick: bool) -> dict[str, Any]:
    """Default specs, batches, backends, precisions and budgets of a preset on this device."""
    from editrt.models.registry import list_specs

    if preset == "tiny":
        specs = [s for s in list_specs() if "/tiny/" in s]
        batches = (1, 2) if quick else (1, 2, 4, 8)
        budget = harness.Budget(warmup=2, warmup_s=0.1 if quick else 0.2, min_reps=5 if quick else 20,
                                max_reps=200 if quick else 1000, min_time_s=0.2 if quick else 1.0)
    elif preset == "paper":
        specs = list(PAPER_SPECS)
        batches = (1, 8) if cuda else (1,)
        if cuda and not quick:
            batches = (1, 4, 8, 16)
        budget = harness.Budget(warmup=3 if cuda else 1, warmup_s=0.2, min_reps=20 if cuda else (3 if quick else 5),
                                max_reps=500, min_time_s=2.0 if cuda and not quick else 0.0)
    else:
        raise SystemExit(f"unknown preset {preset!r}: use tiny or paper")
    if cuda:
        backends = ["torch-eager", "torch-compile", "torch-cudagraph", "ort-cuda", "ort-trt", "tensorrt"]
        precisions = ["fp32", "fp16", "bf16"] if not quick else ["fp32", "fp16"]
    else:
        backends = ["torch-eager", "ort-cpu"]  # torch-compile on CPU: opt in with --backends
        precisions = ["fp32"]
    return {"specs": specs, "batches": batches, "budget": budget, "backends": backends, "precisions": precisions}


# -- networks -------------------------------------------------------------------------------------

def _unavailable(backend: str, device: torch.device, precision: str) -> str | None:
    """Why ``backend`` cannot run here, or None."""
    cuda = device.type == "cuda"
    if backend in ("torch-cudagraph", "ort-cuda", "ort-trt", "tensorrt") and not cuda:
        return f"{backend} needs a CUDA device"
    if backend.startswith("ort-"):
        try:
            from editrt.engines.onnxruntime_backend import available_providers
        except ImportError as exc:
            return f"editrt.engines.onnxruntime_backend unavailable: {exc}"
        want = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-trt": "tensorrt"}[backend]
        if want not in available_providers():
            return f"onnxruntime provider {want!r} not installed (have {available_providers()})"
        if backend == "ort-cpu" and precision != "fp32":
            return "fp16/bf16 graphs are slow or unsupported on onnxruntime's CPU provider"
    if backend == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "the tensorrt package is not installed (its PyPI wheels fetch the real one from NVIDIA's index)"
    if backend.startswith("torch") and precision != "fp32" and not cuda:
        return "torch autocast fp16/bf16 is measured on CUDA only"
    return None


def open_backend(backend: str, spec, module: torch.nn.Module, precision: str, device: torch.device,
                 store_dir: Path) -> Callable[[dict[str, torch.Tensor]], Any]:
    """A callable feeds -> outputs for one backend, through editrt's Engine contract."""
    from editrt.engines.stages import open_engine

    if backend.startswith("torch"):
        engine = open_engine(spec, "torch", module=module, device=device,
                             compile="default" if backend == "torch-compile" else None,
                             cuda_graph=backend == "torch-cudagraph")
        if precision == "fp32":
            return engine
        dtype = _AUTOCAST[precision]

        def autocast_call(feeds):
            with torch.autocast(device.type, dtype=dtype):
                return engine(feeds)
        return autocast_call
    if backend.startswith("ort-"):
        provider = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-trt": "tensorrt"}[backend]
        return open_engine(spec, "onnxruntime", store=str(store_dir), precision=precision, module=module,
                           device=device, provider=provider)
    return open_engine(spec, "tensorrt", store=str(store_dir), precision=precision, module=module, device=device)


def run_networks_suite(specs: list[str], backends: list[str], precisions: list[str], batches: tuple[int, ...],
                       device: torch.device, budget: harness.Budget, store_dir: Path,
                       progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    from editrt.models.registry import get_spec

    rows = []
    for name in specs:
        spec = get_spec(name)
        progress(f"networks: {name} (build)")
        try:
            module = spec.build(random_init=True, seed=0).eval().to(device)
        except Exception as exc:  # noqa: BLE001
            rows.append(harness.skipped_row(suite="networks", group=name, name="build", status="error",
                                            reason=f"{type(exc).__name__}: {exc}"))
            continue
        max_b = max(spec.profile.get("B", (1, 1, max(batches)))[2], 1)
        for precision in precisions:
            for backend in backends:
                label = f"{backend} {precision}"
                common = dict(suite="networks", group=name, backend=backend, precision=precision, device=device)
                sizes = [b for b in batches if b <= max_b]
                reason = _unavailable(backend, device, precision)
                engine = None
                if reason is None:
                    progress(f"networks: {name} {label} (open)")
                    try:
                        engine = open_backend(backend, spec, module, precision, device, store_dir)
                    except Exception as exc:  # noqa: BLE001 - export or session failures become rows
                        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
                if reason is not None:
                    for b in sizes:
                        rows.append(harness.skipped_row(name=f"{label} B={b}", reason=reason, batch=b,
                                                        baseline=f"torch-eager fp32 B={b}", **common))
                    continue
                for b in sizes:
                    feeds = {k: v.to(device) for k, v in spec.sample_inputs(B=b).items()}
                    progress(f"networks: {name} {label} B={b}")
                    try:
                        timing = harness.measure(lambda: engine(feeds), budget=budget, device=device)
                    except Exception as exc:  # noqa: BLE001
                        rows.append(harness.skipped_row(name=f"{label} B={b}", status="error", batch=b,
                                                        reason=f"{type(exc).__name__}: {str(exc)[:300]}",
                                                        baseline=f"torch-eager fp32 B={b}", **common))
                        continue
                    base = None if (backend, precision) == ("torch-eager", "fp32") else f"torch-eager fp32 B={b}"
                    rows.append(harness.row_from_timing(timing, name=f"{label} B={b}", items=b, batch=b,
                                                        baseline=base, **common))
        del module
    return rows


# -- fused ops ------------------------------------------------------------------------------------

def run_ops_suite(device: torch.device, budget: harness.Budget,
                  progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """editrt._C vs torch reference, forward+backward, at the sizes of benchmarks/ops_kernels.py."""
    from editrt import ops

    try:
        import ops_kernels as ok
        latent, vgg = ok.LATENT, ok.VGG_288
    except (ImportError, AttributeError) as exc:
        return [harness.skipped_row(suite="ops", group="ops", name="kernels",
                                    reason=f"benchmarks/ops_kernels.py unavailable: {exc}")]
    if not ops.kernel_available(device.type):
        return [harness.skipped_row(suite="ops", group="ops", name="kernels",
                                    reason=f"editrt._C has no {device.type} kernels in this build")]
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=gen).to(device)

    z0 = rand(*latent)
    z = (z0 + 0.1 * rand(*latent)).requires_grad_(True)
    feats = [rand(1, c, s, s).relu().requires_grad_(True) for c, s in vgg]
    target = ops.lpips_prepare_target([rand(1, c, s, s).relu() for c, s in vgg])
    weights = [torch.rand(c, generator=gen).to(device) for c, _ in vgg]
    cases = [(f"l21_norm {'x'.join(map(str, latent))}", lambda: ops.l21_norm(z, z0), [z]),
             ("lpips_distance 5 VGG layers at 288 px", lambda: ops.lpips_distance(feats, target, weights), feats)]
    rows = []
    for group, fn, leaves in cases:
        def step(fn=fn, leaves=leaves):
            for leaf in leaves:
                leaf.grad = None
            fn().sum().backward()
        for name, enabled in (("torch reference", False), ("editrt._C kernel", True)):
            progress(f"ops: {group} {name}")
            with ops.use_kernels(enabled):
                timing = harness.measure(step, budget=budget, device=device)
            rows.append(harness.row_from_timing(timing, suite="ops", group=f"{group} fwd+bwd", name=name,
                                                device=device, backend="torch", precision="fp32", batch=1,
                                                baseline=None if not enabled else "torch reference"))
    return rows


# -- CLI ------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--preset", choices=("tiny", "paper"), default="tiny")
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer batches and repetitions")
    ap.add_argument("--suites", nargs="+", choices=SUITES, default=list(SUITES))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch/onnxruntime CPU threads")
    ap.add_argument("--specs", nargs="+", default=None, help="registry names (default: the preset's)")
    ap.add_argument("--for", dest="for_methods", nargs="+", choices=("flexit", "global", "feu", "deltaedit"),
                    default=None, help="the networks suite over the specs these methods declare (specs())")
    ap.add_argument("--list-specs", action="store_true", help="print each method's specs for the preset and exit")
    ap.add_argument("--backends", nargs="+", choices=BACKENDS, default=None)
    ap.add_argument("--precisions", nargs="+", choices=("fp32", "fp16", "bf16"), default=None)
    ap.add_argument("--batches", nargs="+", type=int, default=None)
    ap.add_argument("--min-reps", type=int, default=None, help="override the preset's repetitions")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timed repetitions per row")
    ap.add_argument("--cv-warn", type=float, default=None,
                    help=f"CV threshold for the instability flag (default {harness.CV_WARN_GPU} on a GPU, "
                         f"{harness.CV_WARN_CPU} on a CPU)")
    ap.add_argument("--flexit-compile", action="store_true", help="include torch.compile of the FlexIT loss on CPU")
    ap.add_argument("--flexit-clip", nargs="+", default=None, help="CLIP nets of the FlexIT suite (reduced paper runs)")
    ap.add_argument("--flexit-augment", type=int, default=None, help="views per CLIP net in the FlexIT suite")
    ap.add_argument("--edit-steps", type=int, default=None, help="FlexIT steps per timed edit")
    ap.add_argument("--edit-batch", type=int, default=2, help="images per direction edit")
    ap.add_argument("--engines-dir", type=Path, default=None,
                    help="ONNX/TensorRT artifact store (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=None, help="folder for JSON, CSV and PNG results")
    ap.add_argument("--tag", default=None, help="file name stem (default: <device>-<preset>[-quick])")
    ap.add_argument("--note", default="", help="free text saved with the environment (e.g. 'shared machine')")
    ap.add_argument("--compare", type=Path, default=None, help="an earlier JSON result to compare with")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    old = None
    if args.compare:
        try:
            old = harness.load_json(args.compare)
        except ValueError as exc:
            print(f"error: --compare: {exc}", file=sys.stderr)
            return 2
    cuda = device.type == "cuda"
    ps = preset_settings(args.preset, cuda, args.quick)
    budget: harness.Budget = ps["budget"]
    if args.min_reps is not None or args.min_time is not None:
        budget = dataclasses.replace(budget, min_reps=args.min_reps or budget.min_reps,
                                     min_time_s=budget.min_time_s if args.min_time is None else args.min_time)
    from editrt.cli_export import METHODS, method_specs

    config_preset = "tiny" if args.preset == "tiny" else None  # paper: each method's default config
    if args.list_specs:
        for method in METHODS:
            print(f"{method:<10} {' '.join(method_specs(method, preset=config_preset))}")
        return 0
    if args.for_methods:
        specs = list(dict.fromkeys(n for m in args.for_methods for n in method_specs(m, preset=config_preset)))
    else:
        specs = args.specs or ps["specs"]
    backends = args.backends or ps["backends"]
    precisions = args.precisions or ps["precisions"]
    batches = tuple(args.batches or ps["batches"])

    def progress(msg: str) -> None:
        print(f"... {msg}", file=sys.stderr, flush=True)

    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    settings: dict[str, Any] = {"preset": args.preset, "quick": args.quick, "device": str(device),
                                "suites": args.suites, "budget": budget.to_dict(), "specs": specs,
                                "backends": backends, "precisions": precisions, "batches": list(batches),
                                "cv_warn": args.cv_warn or harness.cv_threshold(device),
                                "argv": sys.argv[1:] if argv is None else list(argv)}
    if not cuda:
        warnings.append("no GPU in this run: CUDA events, CUDA memory, TensorRT and onnxruntime CUDA/TRT rows "
                        "were not measured; CPU times are wall clock")
    with tempfile.TemporaryDirectory(prefix="editrt-bench-") as tmp:
        store_dir = args.engines_dir or Path(tmp) / "engines"
        if "networks" in args.suites:
            rows += run_networks_suite(specs, backends, precisions, batches, device, budget, store_dir, progress)
    if "ops" in args.suites:
        rows += run_ops_suite(device, budget, progress)
    if "flexit" in args.suites:
        import flexit_loop

        bench = flexit_loop.preset_bench(args.preset, device, quick=args.quick, cpu_compile=args.flexit_compile,
                                         clip_models=tuple(args.flexit_clip) if args.flexit_clip else None,
                                         n_augment=args.flexit_augment, edit_steps=args.edit_steps)
        settings["flexit_config"] = bench.config.to_dict()
        settings["flexit_budget"] = bench.budget.to_dict()
        rows += flexit_loop.run_flexit_suite(bench, progress)
    if "edits" in args.suites:
        import style_edits

        ebudget = harness.Budget(warmup=1, warmup_s=0.2, min_reps=3 if args.quick else 10, max_reps=200,
                                 min_time_s=0.0 if args.quick else 2.0)
        if args.preset == "paper" and not cuda:
            ebudget = harness.Budget(warmup=1, warmup_s=0.0, min_reps=2 if args.quick else 3, max_reps=10,
                                     min_time_s=0.0)
        settings["edits_budget"] = ebudget.to_dict()
        rows += style_edits.run_style_suite(style_edits.StyleBench(preset=args.preset, device=device,
                                                                   budget=ebudget, batch=args.edit_batch),
                                            progress=progress)
    if args.cv_warn is not None:
        for r in rows:
            if r.get("status") == "ok":
                s = r.get("device_ms") or r["wall_ms"]
                r["cv_threshold"], r["high_variance"] = args.cv_warn, s["cv"] > args.cv_warn
    doc = harness.make_document(rows, environment=harness.collect_environment(args.note), settings=settings,
                                warnings=warnings)
    print(harness.format_table(doc))
    if old is not None:
        print()
        print(harness.format_compare(harness.compare(old, doc), old["environment"], doc["environment"]))
    if args.out:
        tag = args.tag or f"{'gpu' if cuda else 'cpu'}-{args.preset}{'-quick' if args.quick else ''}"
        written = [harness.write_json(doc, args.out / f"{tag}.json"), harness.write_csv(doc, args.out / f"{tag}.csv")]
        if not args.no_plots:
            for fn, suffix in ((harness.plot_breakdown, "breakdown"), (harness.plot_batch_scaling, "batch"),
                               (harness.plot_ratios, "flexit")):
                p = fn(doc, args.out / f"{tag}-{suffix}.png")
                if p:
                    written.append(p)
        print("\nwrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
