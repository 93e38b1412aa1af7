"""Export specs to ONNX (fp32 / fp16 / bf16), check them, and build TensorRT plans.

The fp32 export itself (in a child interpreter, checked for fixed axes) is :mod:`.onnx_export`.
Then come the optional precision conversion (:mod:`.precision`) and a numerical comparison
against the torch module in onnxruntime CPU at batch 1 and 3 (and at the min and opt sizes of
the other dynamic axes) whose drift is recorded in the manifest.

TensorRT plans are built with the TensorRT builder API from the stored ONNX: one explicit
optimisation profile from the spec, a timing cache kept in the store, and a strongly typed
network (the graph's precision is the engine's precision; on TensorRT 11 strong typing is the
only mode). Never run on our machines: TensorRT cannot be installed there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import onnx
import torch

from ..errors import BackendUnavailable, EngineError, InputError
from ..models.registry import ModelSpec, get_spec
from .onnx_export import DEFAULT_OPSET, check_dynamic_axes, check_onnx, export_onnx, private_copy, save_model
from .store import Artifact, ArtifactKey, ArtifactStore, module_identity, weights_identity

log = logging.getLogger(__name__)

BF16_OPSET = 22  # first opset whose Conv / InstanceNormalization accept bfloat16


def to_precision(src: Path, dst: Path, spec: ModelSpec, precision: str) -> dict[str, Any]:
    """Write the ``precision`` version of the fp32 graph ``src`` to ``dst``."""
    from .precision import convert_precision, precision_census

    model = onnx.load(str(src))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), DEFAULT_OPSET)
    if precision == "bf16" and opset < BF16_OPSET:
        from onnx import version_converter

        model = version_converter.convert_version(model, BF16_OPSET)
        opset = BF16_OPSET
    low = convert_precision(model, precision, tuple(spec.fp32_ops))
    check_dynamic_axes(low, spec)
    files = save_model(low, dst)
    check_onnx(dst)
    return {"opset": opset, "fp32_ops": list(spec.fp32_ops), "initializers": precision_census(low),
            "files": [f.name for f in files]}


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a - ref| / max |ref|: drift relative to the output's range."""
    a, ref = a.detach().float().cpu(), ref.detach().float().cpu()
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


def comparison_cases(spec: ModelSpec, batches: Sequence[int] = (1, 3)) -> dict[str, dict[str, int]]:
    """label -> axis sizes the graph is checked at: each batch (other axes at their defaults), then
    the last batch at the ``min`` and ``opt`` of every other dynamic axis, so that a size the
    export baked into the graph (a sliced position table, a mask) fails the check."""
    lo, _, hi = spec.profile.get("B", (1, 2, 64))
    sizes = [min(max(b, lo), hi) for b in batches]
    cases = {f"batch_{b}": {"B": b} for b in sizes}
    dynamic = {a for t in spec.inputs for a in t.dynamic_axes.values()} - {"B"}
    for axis in sorted(dynamic & set(spec.profile)):
        a_lo, a_opt, _ = spec.profile[axis]
        for n in sorted({int(a_lo), int(a_opt)} - {spec.axes.get(axis)}):
            cases[f"{axis}_{n}"] = {"B": sizes[-1], axis: n}
    return cases


def compare_with_torch(path: str | os.PathLike, module: torch.nn.Module, spec: ModelSpec, *,
                       precision: str = "fp32", batches: Sequence[int] = (1, 3), seed: int = 1) -> dict[str, Any]:
    """Run the graph in onnxruntime CPU and the fp32 torch module at each of
    :func:`comparison_cases` (each batch size, and the other dynamic axes' min and opt sizes).

    Returns ``{"batch_<n>": {output: relative error}, "<axis>_<n>": {...}, "max": worst}``; for
    graphs ORT CPU cannot run (bf16 convolutions) ``{"skipped": reason}``.
    """
    from .onnxruntime_backend import OrtEngine
    from .torch_backend import as_output_dict

    try:
        # a one-off session over several batch sizes: no arena to keep their peak
        engine = OrtEngine(spec, path, provider="cpu", precision=precision, cpu_arena=False)
    except EngineError as exc:
        if precision == "bf16":
            return {"skipped": f"onnxruntime CPU cannot run this bf16 graph: {str(exc)[:200]}"}
        raise
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    report: dict[str, Any] = {}
    worst = 0.0
    for label, axes in comparison_cases(spec, batches).items():
        feeds = spec.sample_inputs(seed=seed, **axes)
        try:
            got = engine(feeds)
        except EngineError as exc:
            if precision == "bf16":
                return {"skipped": f"onnxruntime CPU cannot run this bf16 graph: {str(exc)[:200]}"}
            raise
        with torch.no_grad():
            ref = as_output_dict(spec, module(*[feeds[t.name].to(device) for t in spec.inputs]))
        errs = {n: relative_error(got[n], ref[n]) for n in got}
        for n, x in got.items():
            if tuple(x.shape) != tuple(ref[n].shape):
                raise EngineError(f"{spec.name}: output {n} has shape {tuple(x.shape)} in onnxruntime, "
                                  f"{tuple(ref[n].shape)} in torch ({label})")
        report[label] = errs
        worst = max(worst, *errs.values())
    report["max"] = worst
    return report


# -- store-backed builds ----------------------------------------------------------------------

def _spec(spec: ModelSpec | str) -> ModelSpec:
    return get_spec(spec) if isinstance(spec, str) else spec


def artifact_key(spec: ModelSpec | str, kind: str, precision: str, *, weights=None, random_init: bool = False,
                 seed: int = 0, module: torch.nn.Module | None = None, weights_id: str | None = None,
                 device=None) -> ArtifactKey:
    """The key an artifact of ``spec`` built from these weights would have now."""
    spec = _spec(spec)
    if weights_id is None:
        weights_id = (module_identity(module) if module is not None else
                      weights_identity(spec.name, weights=weights, random_init=random_init, seed=seed))
    opset = BF16_OPSET if precision == "bf16" else DEFAULT_OPSET
    return ArtifactKey.create(spec, kind, precision, weights_id, opset=opset, device=device)


_BUILD_LOCKS: dict[tuple[str, ArtifactKey], threading.Lock] = {}
_BUILD_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _building(store: ArtifactStore, key: ArtifactKey):
    """One build per (store, key) at a time in this process: a thread that finds the artifact
    being built waits, then finds it in the store and reuses it."""
    ident = (str(store.root.resolve()), key)
    with _BUILD_LOCKS_GUARD:
        lock = _BUILD_LOCKS.setdefault(ident, threading.Lock())
    with lock:
        yield


def build_onnx(spec: ModelSpec | str, *, store: ArtifactStore, precision: str = "fp32", weights=None,
               random_init: bool = False, seed: int = 0, module: torch.nn.Module | None = None,
               weights_id: str | None = None, rebuild: bool = True, force: bool = False,
               verify: bool = True) -> Artifact:
    """The ONNX artifact of ``spec`` in ``precision``, exported into ``store`` when needed.

    ``module`` (the spec's wrapper, already built) skips building it from weights; its
    state_dict is then hashed as the weights identity unless ``weights_id`` is given.
    ``rebuild=False`` turns a missing or stale artifact into an EngineError instead of a build;
    ``force=True`` rebuilds even a valid one. Thread-safe: concurrent calls for one artifact
    build it once; ``module`` is never modified.
    """
    spec = _spec(spec)
    key = artifact_key(spec, "onnx", precision, weights=weights, random_init=random_init, seed=seed,
                       module=module, weights_id=weights_id)
    with _building(store, key):
        return _build_onnx_locked(spec, key, store=store, precision=precision, weights=weights,
                                  random_init=random_init, seed=seed, module=module, rebuild=rebuild,
                                  force=force, verify=verify)


def _build_onnx_locked(spec: ModelSpec, key: ArtifactKey, *, store: ArtifactStore, precision: str, weights,
                       random_init: bool, seed: int, module: torch.nn.Module | None, rebuild: bool, force: bool,
                       verify: bool) -> Artifact:
    if not force:
        found = _cached(store, key, rebuild, f"no {precision} ONNX artifact for {spec.name} in {store.root}; "
                        f"build it with `editrt export --models {spec.name} --precision {precision} "
                        f"--out {store.root}`")
        if found is not None:
            return found
    if module is None:
        module = spec.build(weights=weights, random_init=random_init, seed=seed).eval().requires_grad_(False)
    else:
        module = private_copy(module)  # the caller's module keeps its mode, grads and parameters
    log.info("exporting %s (%s) to ONNX", spec.name, precision)
    with store.staging() as tmp:
        tmp = Path(tmp)
        fp32 = tmp / ("model.onnx" if precision == "fp32" else "fp32.onnx")
        base = _valid_fp32(spec, store, key.weights) if precision != "fp32" else None
        if base is not None and len(base.files) == 1:  # (external-data graphs are re-exported)
            # reduced precision from the stored fp32 graph of the same weights: no second export
            shutil.copyfile(base.path, fp32)
            report: dict[str, Any] = {"export": {**base.report.get("export", {}), "reused": str(base.path)}}
        else:
            report = {"export": export_onnx(module, spec, fp32)}
        main = fp32
        if precision != "fp32":
            main = tmp / "model.onnx"
            t0 = time.perf_counter()
            report["precision"] = to_precision(fp32, main, spec, precision)
            report["precision"]["seconds"] = round(time.perf_counter() - t0, 2)
        if verify:
            report["drift_vs_torch_fp32"] = compare_with_torch(main, module, spec, precision=precision)
            worst = report["drift_vs_torch_fp32"].get("max")
            if precision == "fp32" and worst is not None and worst > 1e-3:
                raise EngineError(f"{spec.name}: onnxruntime output differs from torch by {worst:.2e} "
                                  f"(relative); the export is wrong, not stored")
        files = {name: tmp / name for name in (report.get("precision") or report["export"])["files"]}
        art = store.put(key, files, report)
    return art


def _cached(store: ArtifactStore, key, rebuild: bool, missing: str) -> Artifact | None:
    """A valid stored artifact for ``key``, or None when it must be (re)built; without
    ``rebuild`` a stale or missing one is an EngineError (naming how the stored artifacts of the
    same spec differ, when there are some)."""
    try:
        found = store.lookup(key)
    except EngineError as exc:
        if not rebuild:
            raise
        log.warning("rebuilding: %s", exc)
        return None
    if found is None and not rebuild:
        others = store.other_weights(key)
        if others:
            missing += f" (the store holds {key.spec} built from other inputs: {' | '.join(others)})"
        raise EngineError(missing)
    if found is not None:
        store.touch(key)
    return found


def _valid_fp32(spec: ModelSpec, store: ArtifactStore, weights_id: str) -> Artifact | None:
    try:
        return store.lookup(artifact_key(spec, "onnx", "fp32", weights_id=weights_id))
    except EngineError:
        return None


def build_plan(spec: ModelSpec | str, *, store: ArtifactStore, precision: str = "fp32", weights=None,
               random_init: bool = False, seed: int = 0, module: torch.nn.Module | None = None,
               weights_id: str | None = None, rebuild: bool = True, force: bool = False,
               device=None, workspace_gib: float | None = None, optimization_level: int = 3) -> Artifact:
    """The TensorRT plan of ``spec``: built from its ONNX artifact (exported first if needed)."""
    trt = import_tensorrt()
    spec = _spec(spec)
    if weights_id is None:
        weights_id = (module_identity(module) if module is not None else
                      weights_identity(spec.name, weights=weights, random_init=random_init, seed=seed))
    key = artifact_key(spec, "plan", precision, weights_id=weights_id, device=device)
    with _building(store, key):
        return _build_plan_locked(trt, spec, key, store=store, precision=precision, weights=weights,
                                  random_init=random_init, seed=seed, module=module, weights_id=weights_id,
                                  rebuild=rebuild, force=force, device=device, workspace_gib=workspace_gib,
                                  optimization_level=optimization_level)


def _build_plan_locked(trt, spec: ModelSpec, key: ArtifactKey, *, store: ArtifactStore, precision: str, weights,
                       random_init: bool, seed: int, module, weights_id: str, rebuild: bool, force: bool,
                       device, workspace_gib: float | None, optimization_level: int) -> Artifact:
    if not force:
        found = _cached(store, key, rebuild, f"no {precision} TensorRT plan for {spec.name} in {store.root}; "
                        f"build it with `editrt export --backend tensorrt --models {spec.name} "
                        f"--precision {precision}`")
        if found is not None:
            return found
    onnx_art = build_onnx(spec, store=store, precision=precision, weights=weights, random_init=random_init,
                          seed=seed, module=module, weights_id=weights_id, rebuild=rebuild)
    with store.staging() as tmp:
        plan = Path(tmp) / "model.plan"
        report = build_trt_plan(trt, onnx_art.path, plan, spec.profile_shapes(),
                                timing_cache=store.timing_cache_path(device),
                                workspace_gib=workspace_gib, optimization_level=optimization_level)
        return store.put(key, {"model.plan": plan}, report)


def import_tensorrt():
    try:
        import tensorrt
    except Exception as exc:  # noqa: BLE001 - stub wheels fail in various ways
        raise BackendUnavailable(f"TensorRT is not available ({type(exc).__name__}: {exc}); install the "
                                 f"`tensorrt` wheel from NVIDIA's index on a machine with a CUDA GPU, or use "
                                 f"--backend onnxruntime") from None
    return tensorrt


def build_trt_plan(trt, onnx_path: Path, plan_path: Path, shapes: Mapping[str, tuple], *,
                   timing_cache: Path, workspace_gib: float | None = None,
                   optimization_level: int = 3) -> dict[str, Any]:
    """Build a strongly typed TensorRT plan with one explicit profile; load and save the timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:  # TensorRT 10.x needs the flag; 11 accepts and ignores it (always strongly typed)
        flags |= 1 << int(strongly)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_gib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    config.builder_optimization_level = int(optimization_level)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build a plan from {onnx_path} (see the TensorRT log above)")
    seconds = time.perf_counter() - t0
    plan_path.write_bytes(bytes(serialized))
    from ..files import atomic_write_bytes

    atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
    return {"build_seconds": round(seconds, 1), "profile": {k: [list(s) for s in v] for k, v in shapes.items()},
            "tensorrt": trt.__version__, "optimization_level": optimization_level}


# -- model groups ------------------------------------------------------------------------------

def resolve_models(names: Sequence[str]) -> list[str]:
    """Spec names from exact names or prefixes: ``clip/ViT-B-32`` -> its image and text towers,
    ``stylegan2/ffhq-1024`` -> synthesis, mapping, styles; ``deltaedit`` -> every non-tiny
    DeltaEdit spec. Tiny variants come only when named."""
    from ..models.registry import list_specs

    everything = list_specs()
    out: list[str] = []
    for name in names:
        name = name.strip().rstrip("/").replace("ViT-B/", "ViT-B-")
        if name in everything:
            hits = [name]
        else:
            hits = [s for s in everything if s.startswith(name + "/")]
            if "tiny" not in name.split("/"):
                hits = [s for s in hits if "/tiny/" not in s] or hits
        if not hits:
            raise InputError(f"no model spec matches {name!r}; known: {', '.join(everything)}")
        out.extend(h for h in hits if h not in out)
    return out


__all__ = ["to_precision", "compare_with_torch", "comparison_cases", "build_onnx", "build_plan", "build_trt_plan",
           "resolve_models", "artifact_key", "relative_error", "import_tensorrt", "BF16_OPSET"]
