"""``editrt export``: build ONNX graphs (and TensorRT plans) for a set of models into a store.

The arguments and the build loop; ``editrt.cli_export`` adds ``--for METHOD`` (the specs a
method declares) and registers the command. Exit codes follow ``editrt.cli``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="+", metavar="NAME",
                   help="spec names or prefixes: clip/ViT-B-32, vqgan/vqgan_imagenet_f16_1024, stylegan2/ffhq-1024, "
                        "e4e/ffhq, deltaedit, clip/tiny/text ... (tiny variants only when named)")
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "fp16", "bf16"],
                   help="graph precision(s); fp16/bf16 keep each spec's fp32_ops (normalisations) in fp32")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "tensorrt"],
                   help="onnxruntime: ONNX graphs only; tensorrt: also TensorRT plans (needs tensorrt + a GPU)")
    p.add_argument("--out", type=Path, default=None, help="artifact store folder (default $EDITRT_ENGINES, else ./engines if it exists, else $EDITRT_HOME/engines)")
    p.add_argument("--weights-dir", type=Path, help="folder laid out like the EDITRT_HOME store")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (smoke runs)")
    p.add_argument("--download", action="store_true",
                   help="download the models' missing checkpoints from their public source before exporting")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-weights")
    p.add_argument("--device", default="cuda", help="GPU the TensorRT plans are built for (default cuda)")
    p.add_argument("--force", action="store_true", help="rebuild even valid artifacts")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch comparison")
    p.add_argument("--list", action="store_true", help="print the matching specs and their store status, build nothing")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--triton-repo", type=Path, metavar="DIR",
                   help="also write a Triton model repository of the artifacts (config.pbtxt + 1/model.*)")
    p.add_argument("--triton-max-batch", type=int, default=8, help="max_batch_size of batched models in --triton-repo")
    p.add_argument("--triton-instances", type=int, default=1, help="instance_group count per model")
    p.add_argument("--triton-kind", default="gpu", choices=["gpu", "cpu"], help="instance_group kind")


def run_export(models: Sequence[str], *, precisions: Sequence[str] = ("fp32",), backend: str = "onnxruntime",
               out: Path | None = None, weights=None, random_weights: bool = False, seed: int = 0,
               device: str = "cuda", force: bool = False, verify: bool = True,
               list_only: bool = False, download: bool = False) -> list[dict[str, Any]]:
    """Build every (spec, precision) artifact; return one row per artifact.

    ``download`` fetches each spec's missing checkpoints first (as ``editrt edit --download``).
    Export loads checkpoints weights-only: a checkpoint that needs unpickling is refused.
    """
    from ..errors import InputError, WeightsError
    from .build import artifact_key, build_onnx, build_plan, resolve_models
    from .store import ArtifactStore

    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"--out {out} is a file; the artifact store is a folder")
    names = resolve_models(models)
    if download and not random_weights and not list_only:
        _download_checkpoints(names, weights)
    store = ArtifactStore(out)
    rows = []
    kind = "plan" if backend == "tensorrt" else "onnx"
    for name in names:
        for precision in precisions:
            row: dict[str, Any] = {"spec": name, "precision": precision, "kind": kind}
            kw = dict(store=store, precision=precision, weights=weights, random_init=random_weights, seed=seed,
                      force=force)
            if list_only:
                key = artifact_key(name, kind, precision, weights=weights, random_init=random_weights, seed=seed,
                                   device=device if kind == "plan" else None)
                row["status"], row["detail"] = store.status(key)
                rows.append(row)
                continue
            t0 = time.perf_counter()
            try:
                art = (build_plan(name, device=device, **kw) if kind == "plan"
                       else build_onnx(name, verify=verify, **kw))
            except WeightsError as exc:
                raise WeightsError(_export_hint(str(exc))) from None
            row.update(path=str(art.path), seconds=round(time.perf_counter() - t0, 1),
                       size_mb=round(sum(p.stat().st_size for p in art.files.values()) / 2**20, 2),
                       drift=(art.report.get("drift_vs_torch_fp32") or {}).get("max"))
            rows.append(row)
    return rows


def _download_checkpoints(specs: Sequence[str], weights) -> None:
    """Fetch every known checkpoint of ``specs`` that is missing (the ones without a source are
    left for the build to report)."""
    from .. import weights as W
    from ..errors import WeightsError
    from .store import checkpoint_keys

    for key in sorted({k for name in specs for k in checkpoint_keys(name)}):
        try:
            W.resolve(key, weights=weights, download=True)
        except WeightsError as exc:
            log.info("not downloaded: %s", exc)


def _export_hint(message: str) -> str:
    """Checkpoint messages name the options of the editing commands; say what export accepts."""
    message = message.replace("pass allow_pickle=True (CLI: --allow-pickle)",
                              "convert it to .safetensors first (export reads checkpoints weights-only)")
    return message.replace("(or call with download=True / --download)", "(or pass --download)")


def cmd_export(args) -> int:
    if not args.models:
        from ..errors import InputError

        raise InputError("name what to export: --models SPEC... or --for flexit|global|feu|deltaedit")
    if args.triton_repo is not None:
        from ..serve.triton_repo import check_repo_options

        check_repo_options(args.triton_repo, max_batch=args.triton_max_batch, instances=args.triton_instances)
    rows = run_export(args.models, precisions=args.precision, backend=args.backend, out=args.out,
                      weights=args.weights_dir, random_weights=args.random_weights, seed=args.seed,
                      device=args.device, force=args.force, verify=not args.no_verify, list_only=args.list,
                      download=args.download)
    if args.triton_repo is not None and not args.list:
        from ..serve.triton_repo import write_repo

        for row, folder in zip(rows, write_repo(args.triton_repo, rows, max_batch=args.triton_max_batch,
                                                 instances=args.triton_instances, instance_kind=args.triton_kind)):
            row["triton_model"] = str(folder)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        if args.list:
            print(f"{r['spec']:<44} {r['precision']:<5} {r['kind']:<5} {r['status']}: {r['detail']}")
        else:
            drift = "n/a" if r["drift"] is None else f"{r['drift']:.2e}"
            print(f"{r['spec']:<44} {r['precision']:<5} {r['size_mb']:>9.2f} MB  {r['seconds']:>6.1f} s  "
                  f"drift vs torch {drift}  {r['path']}")
    if args.random_weights and not args.list:
        print("NOTE: random weights: the artifacts are valid engines of random networks (smoke runs only).")
    return 0


__all__ = ["add_arguments", "cmd_export", "run_export"]
