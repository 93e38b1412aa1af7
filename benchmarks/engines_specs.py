"""Per-spec engine latency: the torch module vs its onnxruntime engine, side by side.

One group per (spec, precision, batch): a ``torch`` row (eager, fp32, the baseline) and an
``onnxruntime`` row (the stored graph of that precision, CPU provider unless the device is CUDA
and onnxruntime-gpu is installed), plus a ``tensorrt`` row where TensorRT imports (never on our
machines: the row says "skipped" with the reason). ``ratio`` = torch time / engine time (> 1:
the engine is faster). Artifacts come from (and are built into) an artifact store; weights are
seeded random unless ``--weights-dir`` is given: latency does not depend on the values.

    python benchmarks/engines_specs.py --specs clip/tiny/image vqgan/tiny/decoder --batch 1 4
    python benchmarks/engines_specs.py --specs clip/ViT-B-32 --precision fp32 fp16 --json out.json

``run_engine_specs(...)`` returns the rows for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from editrt.engines.build import relative_error, resolve_models  # noqa: E402
from editrt.engines.stages import open_engine  # noqa: E402
from editrt.engines.store import ArtifactStore, weights_identity  # noqa: E402
from editrt.errors import EditrtError  # noqa: E402
from editrt.models.registry import get_spec  # noqa: E402

log = logging.getLogger(__name__)

SUITE = "engines"
DEFAULT_SPECS = ("clip/tiny/image", "clip/tiny/text", "vqgan/tiny/encoder", "vqgan/tiny/decoder",
                 "stylegan2/tiny/synthesis", "deltaedit/tiny/mapper", "e4e/tiny/encoder")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_engine_specs(specs: Sequence[str] = DEFAULT_SPECS, *, batches: Sequence[int] = (1,),
                     precisions: Sequence[str] = ("fp32",), device: str | torch.device = "cpu",
                     store: ArtifactStore | str | os.PathLike | None = None, weights=None,
                     budget: harness.Budget | None = None,
                     progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """Rows (harness format) for each spec x precision x batch: torch baseline vs engines."""
    device = torch.device(device)
    budget = budget or harness.Budget()
    store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)
    random_init = weights is None
    rows: list[dict[str, Any]] = []
    for name in resolve_models(specs):
        spec = get_spec(name)
        module = spec.build(weights=weights, random_init=random_init, seed=0).to(device)
        wid = weights_identity(name, weights=weights, random_init=random_init, seed=0)
        torch_engine = open_engine(spec, "torch", module=module, device=device)
        for precision in precisions:
            engines: dict[str, Any] = {}
            for backend in ("onnxruntime", "tensorrt"):
                if backend == "tensorrt" and device.type != "cuda":
                    engines[backend] = "the TensorRT backend needs a CUDA device"
                    continue
                try:
                    t0 = time.perf_counter()
                    engines[backend] = open_engine(spec, backend, store=store, precision=precision, module=module,
                                                   weights_id=wid, device=device)
                    progress(f"{name} {precision} {backend}: ready in {time.perf_counter() - t0:.1f} s")
                except EditrtError as exc:
                    engines[backend] = f"{type(exc).__name__}: {exc}"
            for b in batches:
                lo, _, hi = spec.profile.get("B", (1, 2, 64))
                if not lo <= b <= hi:
                    continue
                feeds = {k: v.to(device) for k, v in spec.sample_inputs(seed=0, B=b).items()}
                group = f"{name}/{precision}/b{b}"
                common = dict(suite=SUITE, group=group, items=b, device=str(device), spec=name,
                              precision=precision, batch=b)
                base = "torch-fp32"
                progress(f"{group}: torch")
                ref = torch_engine(feeds)
                timing = harness.measure(lambda: torch_engine(feeds), budget=budget, device=device)
                rows.append(harness.row_from_timing(timing, name=base, backend="torch", **{**common, "precision": "fp32"}))
                for backend, eng in engines.items():
                    row_name = f"{backend}-{precision}"
                    if isinstance(eng, str):
                        rows.append(harness.skipped_row(suite=SUITE, group=group, name=row_name, reason=eng,
                                                        baseline=base, backend=backend, spec=name,
                                                        precision=precision, batch=b))
                        continue
                    progress(f"{group}: {backend}")
                    out = eng(feeds)
                    drift = max(relative_error(out[k], ref[k]) for k in ref)
                    _sync(device)
                    timing = harness.measure(lambda e=eng: e(feeds), budget=budget, device=device)
                    rows.append(harness.row_from_timing(timing, name=row_name, baseline=base, backend=backend,
                                                        drift_vs_torch=drift, **common))
    harness.assign_ratios(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", nargs="+", default=list(DEFAULT_SPECS), help="spec names or prefixes")
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--store", type=Path, default=None, help="artifact store (default $EDITRT_ENGINES or ./engines)")
    ap.add_argument("--weights-dir", type=Path, default=None, help="real weights (default: seeded random)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="short budget (3 reps, 0.3 s)")
    ap.add_argument("--json", type=Path, default=None, help="also write a result document")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = harness.Budget(warmup=1, warmup_s=0.0, min_reps=3, min_time_s=0.3) if args.quick else harness.Budget()
    rows = run_engine_specs(args.specs, batches=args.batch, precisions=args.precision, device=args.device,
                            store=args.store, weights=args.weights_dir, budget=budget,
                            progress=lambda s: print(f"... {s}", file=sys.stderr, flush=True))
    doc = harness.make_document(rows, environment=harness.collect_environment(),
                                settings={"suites": [SUITE], "device": args.device, "specs": args.specs,
                                          "batches": args.batch, "precisions": args.precision,
                                          "budget": budget.to_dict(), "threads": torch.get_num_threads()})
    print(harness.format_table(doc))
    if args.json:
        harness.write_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
