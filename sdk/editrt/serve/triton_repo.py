"""``editrt export --triton-repo DIR``: a Triton model repository of exported networks.

Layout (Triton "Model Repository" docs)::

    DIR/<model>/config.pbtxt
    DIR/<model>/1/model.onnx      (+ its external-data files)   or   DIR/<model>/1/model.plan

``<model>`` is the spec name with ``/`` as ``_`` (``clip/ViT-B-32/text`` -> ``clip_ViT-B-32_text``),
plus ``_fp16``/``_bf16`` for reduced-precision graphs. The config declares the platform
(``onnxruntime_onnx`` or ``tensorrt_plan``), every input and output with its Triton type and dims,
``max_batch_size`` with ``dynamic_batching`` when every tensor's first axis is the spec's batch
axis ``B`` (at most the TensorRT profile's largest batch for plans), and an ``instance_group``.
Each model folder is written beside the final one and renamed into place, so a failed export
leaves no half-written model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..errors import InputError

BATCH_AXIS = "B"
VERSION = "1"
TRITON_TYPES = {torch.float32: "TYPE_FP32", torch.float16: "TYPE_FP16", torch.bfloat16: "TYPE_BF16",
                torch.int64: "TYPE_INT64", torch.int32: "TYPE_INT32", torch.int8: "TYPE_INT8",
                torch.uint8: "TYPE_UINT8", torch.bool: "TYPE_BOOL"}
PLATFORMS = {"onnx": "onnxruntime_onnx", "plan": "tensorrt_plan"}


def model_name(spec_name: str, precision: str) -> str:
    base = spec_name.replace("/", "_")
    return base if precision == "fp32" else f"{base}_{precision}"


def batched(spec) -> bool:
    return all(t.shape and t.shape[0] == BATCH_AXIS for t in (*spec.inputs, *spec.outputs))


def config_text(spec, *, kind: str, precision: str, max_batch: int, instances: int, instance_kind: str,
                queue_delay_us: int = 5000, io_dtypes: Mapping[str, torch.dtype] | None = None) -> str:
    """``config.pbtxt`` of one exported spec (protobuf text format of Triton's ModelConfig)."""
    if kind not in PLATFORMS:
        raise InputError(f"unknown artifact kind {kind!r}; Triton serves onnx and plan")
    if instance_kind not in ("gpu", "cpu"):
        raise InputError(f"instance kind must be gpu or cpu, got {instance_kind!r}")
    if max_batch < 1 or instances < 1:
        raise InputError(f"max batch and instance count must be >= 1, got {max_batch} and {instances}")
    use_batch = batched(spec)
    if use_batch and kind == "plan" and BATCH_AXIS in spec.profile:
        max_batch = min(max_batch, spec.profile[BATCH_AXIS][2])  # the plan cannot take more
    io_dtypes = dict(io_dtypes or {})

    def tensor(t) -> str:
        shape = t.shape[1:] if use_batch else t.shape
        dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in shape)
        # a per-item scalar ([B] only) is dims [1] reshaped to [] (Triton "Reshape")
        extra = "" if dims else "\n    reshape: { shape: [ ] }"
        dtype = io_dtypes.get(t.name, t.dtype)  # reduced-precision graphs keep fp32 I/O
        if dtype not in TRITON_TYPES:
            raise InputError(f"{spec.name}: tensor {t.name} has dtype {dtype}, which Triton has no type for")
        return (f'  {{\n    name: "{t.name}"\n    data_type: {TRITON_TYPES[dtype]}\n    dims: [ {dims or 1} ]'
                f'{extra}\n  }}')

    lines = [f'name: "{model_name(spec.name, precision)}"', f'platform: "{PLATFORMS[kind]}"',
             f"max_batch_size: {max_batch if use_batch else 0}",
             "input [\n" + ",\n".join(tensor(t) for t in spec.inputs) + "\n]",
             "output [\n" + ",\n".join(tensor(t) for t in spec.outputs) + "\n]"]
    if use_batch:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_{instance_kind.upper()}\n  }}\n]")
    return "\n".join(lines) + "\n"


def onnx_io_dtypes(path: Path) -> dict[str, torch.dtype]:
    """Element types of an ONNX graph's inputs and outputs, read from the file."""
    import onnx

    from_onnx = {onnx.TensorProto.FLOAT: torch.float32, onnx.TensorProto.FLOAT16: torch.float16,
                 onnx.TensorProto.BFLOAT16: torch.bfloat16, onnx.TensorProto.INT64: torch.int64,
                 onnx.TensorProto.INT32: torch.int32, onnx.TensorProto.BOOL: torch.bool,
                 onnx.TensorProto.UINT8: torch.uint8, onnx.TensorProto.INT8: torch.int8}
    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: from_onnx[v.type.tensor_type.elem_type] for v in (*graph.input, *graph.output)
            if v.type.tensor_type.elem_type in from_onnx}


def write_model(repo: Path, spec, artifact_path: Path, *, kind: str, precision: str, max_batch: int = 8,
                instances: int = 1, instance_kind: str = "gpu", queue_delay_us: int = 5000) -> Path:
    """Copy one artifact (its folder's model files) into ``repo/<model>/1/`` with its config."""
    artifact_path = Path(artifact_path)
    name = model_name(spec.name, precision)
    io_dtypes = onnx_io_dtypes(artifact_path) if kind == "onnx" else None
    text = config_text(spec, kind=kind, precision=precision, max_batch=max_batch, instances=instances,
                       instance_kind=instance_kind, queue_delay_us=queue_delay_us, io_dtypes=io_dtypes)
    repo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=repo, prefix=f".{name}."))
    try:
        version = staging / VERSION
        version.mkdir()
        for f in artifact_path.parent.iterdir():  # the model file and its external-data files
            if f.is_file() and not f.name.startswith("."):
                shutil.copyfile(f, version / f.name)
        (staging / "config.pbtxt").write_text(text)
        final = repo / name
        if final.exists():
            old = Path(tempfile.mkdtemp(dir=repo, prefix=f".{name}.old."))
            os.replace(final, old / name)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        return final
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def check_repo_options(repo: str | os.PathLike, *, max_batch: int = 8, instances: int = 1) -> Path:
    """Refuse an unusable repository folder or option before any export runs."""
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise InputError(f"--triton-repo {repo} exists and is not a folder")
    if not repo.parent.exists():
        raise InputError(f"folder {repo.parent} of --triton-repo does not exist")
    if max_batch < 1 or instances < 1:
        raise InputError(f"--triton-max-batch and --triton-instances must be >= 1, got {max_batch} and {instances}")
    return repo


def write_repo(repo: str | os.PathLike, rows: Iterable[Mapping], *, max_batch: int = 8, instances: int = 1,
               **options) -> list[Path]:
    """One Triton model per exported artifact row of ``run_export`` (``spec``, ``precision``,
    ``kind``, ``path``); ``options`` as :func:`write_model`."""
    from ..models.registry import get_spec

    repo = check_repo_options(repo, max_batch=max_batch, instances=instances)
    options.update(max_batch=max_batch, instances=instances)
    return [write_model(repo, get_spec(r["spec"]), Path(r["path"]), kind=r["kind"], precision=r["precision"],
                        **options) for r in rows]


__all__ = ["write_repo", "write_model", "check_repo_options", "config_text", "model_name", "batched"]
