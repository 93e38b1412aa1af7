"""ONNX export of one spec's wrapper, in a child interpreter.

torch.export switches process-wide state while it traces: it turns oneDNN, NNPACK and cuDNN off
(``_ignore_backend_decomps`` in torch/export/_trace.py) and swaps ``torch.jit.isinstance``
(torch/onnx/_internal/exporter/_capture_strategies.py). Torch work that other threads run
meanwhile (another request's edit, the caller's own code) silently takes other kernels: a
one-step FlexIT edit running next to an export moved by up to 7e-4, and on a GPU its
convolutions would run without cuDNN. So :func:`export_onnx` runs the export in a fresh
interpreter (``python -m editrt.engines.onnx_export``): the parent saves the wrapper's state_dict
next to the output, the child builds the spec's architecture by name, loads the weights
strictly, traces, checks and saves the graph, and answers in JSON. A spec the child cannot
rebuild by name (one made at run time outside editrt) is exported in this process, with a
warning.

Tracing uses torch's dynamo exporter (the default since torch 2.9) with ``dynamic_shapes`` from
the spec. The example batch is 2: with a batch-1 example the exporter silently fixed the batch
axis of CLIP (seen with torch 2.14's dynamo exporter); other dynamic axes (CLIP's token axis)
take their profile's opt size. Each dynamic axis of the spec must come out symbolic in the
graph, or the export fails. The dynamo exporter may name its values after module paths, so
graph inputs and outputs are renamed to the spec's names (an internal value that already
carries such a name is renamed out of the way); then ``onnx.checker`` runs (full check,
path-based so >2 GB graphs work).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import onnx
import torch

from ..errors import EngineError, InputError
from ..models.registry import ModelSpec, get_spec

log = logging.getLogger(__name__)

DEFAULT_OPSET = 20  # what torch 2.14's dynamo exporter emits
EXAMPLE_BATCH = 2
_TWO_GB = 2 ** 31 - 1
_CHILD = "editrt.engines.onnx_export"


# -- graph helpers ----------------------------------------------------------------------------

def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for n in graph.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for coll in (graph.input, graph.output, graph.value_info):
        for v in coll:
            if v.name == old:
                v.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new


def rename_io(model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Give the graph's inputs and outputs the spec's names, in order."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    cur_in = [v.name for v in g.input if v.name not in inits]
    cur_out = [v.name for v in g.output]
    if len(cur_in) != len(inputs) or len(cur_out) != len(outputs):
        raise EngineError(f"exported graph has {len(cur_in)} inputs / {len(cur_out)} outputs, "
                          f"spec declares {len(inputs)} / {len(outputs)}")
    used = {x for n in g.node for x in list(n.input) + list(n.output)} | inits | set(cur_in)
    for old, new in list(zip(cur_in, inputs)) + list(zip(cur_out, outputs)):
        if old == new:
            continue
        if new in used:
            aside = f"{new}__inner"
            _rename_value(g, new, aside)
            used.add(aside)
        _rename_value(g, old, new)
        used.add(new)


def graph_io_shapes(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """name -> dims (int, or the symbolic name) of every graph input and output."""
    out = {}
    for v in list(model.graph.input) + list(model.graph.output):
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_param if d.dim_param else int(d.dim_value) for d in dims]
    return out


def check_dynamic_axes(model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Every dynamic axis the spec declares must be symbolic in the graph (not fixed by tracing)."""
    shapes = graph_io_shapes(model)
    problems = []
    for t in list(spec.inputs) + list(spec.outputs):
        dims = shapes.get(t.name)
        if dims is None:
            problems.append(f"{t.name} is missing")
            continue
        if len(dims) != len(t.shape):
            problems.append(f"{t.name} has rank {len(dims)}, spec {len(t.shape)}")
            continue
        for i, (want, got) in enumerate(zip(t.shape, dims)):
            if isinstance(want, str) and not isinstance(got, str):
                problems.append(f"{t.name} axis {i} ({want}) was fixed to {got}")
            elif isinstance(want, int) and isinstance(got, int) and want != got:
                problems.append(f"{t.name} axis {i} is {got}, spec {want}")
    if problems:
        raise EngineError(f"ONNX export of {spec.name} does not match the spec: " + "; ".join(problems))


def save_model(model: onnx.ModelProto, path: Path) -> list[Path]:
    """Save ``model``; graphs near 2 GB keep their weights in ``<name>.data``. Returns the files."""
    size = sum(len(i.raw_data) for i in model.graph.initializer)
    if size < _TWO_GB - (64 << 20):
        onnx.save_model(model, str(path))
        return [path]
    data = path.with_name(path.name + ".data")
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return [path, data]


def _dynamic_shapes(spec: ModelSpec, module: torch.nn.Module):
    """``dynamic_shapes`` for torch.export: one Dim per axis name, shared across inputs."""
    dims = {}
    for t in spec.inputs:
        for axis in t.dynamic_axes.values():
            if axis not in dims:
                lo, _, hi = spec.profile.get(axis, (1, spec.axes.get(axis, 2), 4096))
                dims[axis] = torch.export.Dim(axis.replace("-", "_"), min=max(1, int(lo)), max=int(hi))
    per_input = tuple({i: dims[a] for i, a in t.dynamic_axes.items()} or None for t in spec.inputs)
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return (per_input,)  # forward(*tensors): the inputs form one tuple argument
    return per_input


def example_axes(spec: ModelSpec, batch: int = EXAMPLE_BATCH) -> dict[str, int]:
    """Sizes of the example inputs traced by the export: the batch at ``batch``, every other
    profiled axis at its ``opt``, away from both ends of its range. An example equal to a size
    baked into the network (CLIP's 77 positions) would let tracing tie the axis to it."""
    axes = dict(spec.axes)
    for axis, (lo, opt, hi) in spec.profile.items():
        axes[axis] = min(max(batch, lo), hi) if axis == "B" else int(opt)
    return axes


def check_onnx(path: str | os.PathLike) -> None:
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise EngineError(f"onnx.checker rejected {path}: {exc}") from None


# exports take turns: one child (one copy of the weights) at a time; and in this process,
# torch.export's fake-tensor and dispatcher modes do not survive two traces at once
_EXPORT_LOCK = threading.Lock()


class _ThreadOnly(logging.Filter):
    """Drops records below WARNING emitted by one thread (the exporting one): the ``onnx_ir``
    optimiser logs every deduplicated initializer at INFO. Other threads' records pass."""

    def __init__(self, thread_id: int):
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread_id or record.levelno >= logging.WARNING


def export_onnx(module: torch.nn.Module, spec: ModelSpec, path: str | os.PathLike, *,
                opset: int = DEFAULT_OPSET, example_batch: int = EXAMPLE_BATCH) -> dict[str, Any]:
    """Export ``module`` (the spec's forward-only wrapper) as an fp32 ONNX graph at ``path``, in
    a child interpreter (module docstring). ``module`` is not modified; exports take turns.
    Returns a small report (export seconds, node count, opset, files). Raises EngineError when
    the exporter fails, the weights do not fit the spec's architecture, or an axis is fixed."""
    if not rebuildable_by_name(spec):
        _warn_in_process(spec.name)
        with _EXPORT_LOCK:
            return trace_onnx(private_copy(module), spec, path, opset=opset, example_batch=example_batch)
    path = Path(path)
    files = {k: path.with_name(f"{path.name}.{k}") for k in ("state.pt", "request.json", "result.json")}
    try:
        with _EXPORT_LOCK:
            torch.save({k: v.detach().cpu() for k, v in module_tensors(module).items()}, files["state.pt"])
            files["request.json"].write_text(json.dumps({
                "spec": spec.name, "path": str(path), "state": str(files["state.pt"]), "opset": opset,
                "example_batch": example_batch, "threads": torch.get_num_threads(),
                "result": str(files["result.json"])}))
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", _CHILD, str(files["request.json"])],
                                  capture_output=True, text=True, env=_child_env())
            seconds = time.perf_counter() - t0
        answer = json.loads(files["result.json"].read_text()) if files["result.json"].is_file() else {}
    finally:
        for f in files.values():
            f.unlink(missing_ok=True)
    for line in proc.stderr.splitlines():
        log.debug("export child: %s", line)
    if proc.returncode == 0 and "report" in answer:
        return {**answer["report"], "process_seconds": round(seconds, 2)}
    if "error" in answer:
        raise EngineError(answer["error"])
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or f"exit status {proc.returncode}"
    raise EngineError(f"ONNX export of {spec.name} failed: the export process died: {tail}")


def rebuildable_by_name(spec: ModelSpec) -> bool:
    """Whether a fresh interpreter gets this very spec from ``get_spec(spec.name)``: a spec of
    editrt's own families (not one registered or built at run time by the caller)."""
    try:
        same = get_spec(spec.name) is spec
    except InputError:
        return False
    return same and getattr(spec.build, "__module__", "").startswith("editrt.")


_WARNED: set[str] = set()


def _warn_in_process(name: str) -> None:
    if name not in _WARNED:
        _WARNED.add(name)
        log.warning("%s is not an editrt spec a child process can rebuild: exporting it in this process; "
                    "torch work in other threads runs without oneDNN/cuDNN meanwhile", name)


def _child_env() -> dict[str, str]:
    """This environment, with the directory editrt is imported from first on PYTHONPATH."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _child(request: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(int(request["threads"]))
    spec = get_spec(request["spec"])
    net = spec.build(random_init=True, seed=0).eval().requires_grad_(False)
    load_module_tensors(net, torch.load(request["state"], map_location="cpu", weights_only=True, mmap=True),
                        spec.name)
    return trace_onnx(net, spec, request["path"], opset=int(request["opset"]),
                      example_batch=int(request["example_batch"]))


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer by name, non-persistent buffers included: a state_dict misses
    those, and some are derived from the weights (StyleGAN2's frozen conv constants)."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@torch.no_grad()
def load_module_tensors(module: torch.nn.Module, tensors: dict[str, torch.Tensor], spec_name: str) -> None:
    """Copy :func:`module_tensors` of another instance of the same architecture into ``module``."""
    own = module_tensors(module)
    missing, extra = sorted(own.keys() - tensors.keys()), sorted(tensors.keys() - own.keys())
    wrong = [f"{k} {tuple(tensors[k].shape)} (spec {tuple(v.shape)})" for k, v in own.items()
             if k in tensors and tensors[k].shape != v.shape]
    if missing or extra or wrong:
        parts = [f"{len(missing)} missing ({', '.join(missing[:3])})" if missing else "",
                 f"{len(extra)} unexpected ({', '.join(extra[:3])})" if extra else "",
                 f"shapes differ: {', '.join(wrong[:3])}" if wrong else ""]
        raise EngineError(f"ONNX export of {spec_name} failed: the module's weights do not fit the spec's "
                          f"architecture: {'; '.join(p for p in parts if p)}")
    for k, v in own.items():
        v.copy_(tensors[k])


def main(argv: Sequence[str]) -> int:
    """The child: ``python -m editrt.engines.onnx_export REQUEST.json``."""
    request = json.loads(Path(argv[0]).read_text())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        answer: dict[str, Any] = {"report": _child(request)}
    except EngineError as exc:
        answer = {"error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises EngineError
        answer = {"error": f"ONNX export of {request.get('spec')} failed: {type(exc).__name__}: {exc}"}
    tmp = Path(request["result"] + ".tmp")
    tmp.write_text(json.dumps(answer))
    os.replace(tmp, request["result"])
    return 0 if "report" in answer else 1


def trace_onnx(module: torch.nn.Module, spec: ModelSpec, path: str | os.PathLike, *,
               opset: int = DEFAULT_OPSET, example_batch: int = EXAMPLE_BATCH) -> dict[str, Any]:
    """Trace ``module`` (an eval-mode wrapper it may modify) to an fp32 ONNX graph at ``path``,
    in this process; see the module docstring for why :func:`export_onnx` does not call it here."""
    path = Path(path)
    axes = example_axes(spec, example_batch)
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    feeds = {k: v.to(device) for k, v in spec.sample_inputs(seed=0, **axes).items()}
    args = tuple(feeds[t.name] for t in spec.inputs)
    t0 = time.perf_counter()
    raw = path.with_name(path.stem + ".raw.onnx")
    ir_log = logging.getLogger("onnx_ir")
    quiet = _ThreadOnly(threading.get_ident())
    ir_log.addFilter(quiet)
    try:
        # verbose=False keeps the exporter's progress lines off stdout without redirecting
        # sys.stdout, which is process-wide (other threads' output, and a closed stream after).
        with torch.no_grad():
            torch.onnx.export(module, args, str(raw), dynamo=True, opset_version=opset,
                              dynamic_shapes=_dynamic_shapes(spec, module), external_data=False,
                              optimize=True, verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types
        raw.unlink(missing_ok=True)
        raise EngineError(f"ONNX export of {spec.name} failed: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from exc
    finally:
        ir_log.removeFilter(quiet)
    seconds = time.perf_counter() - t0
    model = onnx.load(str(raw))
    raw.unlink()
    rename_io(model, [t.name for t in spec.inputs], [t.name for t in spec.outputs])
    check_dynamic_axes(model, spec)
    files = save_model(model, path)
    check_onnx(path)
    return {"export_seconds": round(seconds, 2), "nodes": len(model.graph.node), "opset": opset,
            "files": [f.name for f in files], "example_axes": axes}


def private_copy(module: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode, no-grad structural copy of ``module``: new module objects and new Parameter
    objects over the *same* tensor storage (no memory doubled). Export and verification set the
    copy's mode and swap its parameters, never those of a module the caller holds and may be
    running in another thread. Built without ``copy.deepcopy`` because some wrappers (per-layout
    classes made in ``__new__``) do not pickle."""
    return _structural_copy(module, {}).eval().requires_grad_(False)


def _structural_copy(m: torch.nn.Module, memo: dict[int, torch.nn.Module]) -> torch.nn.Module:
    if id(m) in memo:  # a submodule shared by two parents stays shared
        return memo[id(m)]
    new = object.__new__(type(m))
    memo[id(m)] = new
    state = dict(m.__dict__)
    for name, value in state.items():  # hook and registry dicts: own copies
        if isinstance(value, dict) and name.startswith("_") and name not in ("_parameters", "_buffers", "_modules"):
            state[name] = copy.copy(value)
    state["_parameters"] = {k: None if p is None else torch.nn.Parameter(p.detach(), requires_grad=p.requires_grad)
                            for k, p in m._parameters.items()}
    state["_buffers"] = {k: None if b is None else b.detach() for k, b in m._buffers.items()}
    state["_modules"] = {k: None if c is None else _structural_copy(c, memo) for k, c in m._modules.items()}
    new.__dict__.update(state)
    return new


__all__ = ["export_onnx", "trace_onnx", "rebuildable_by_name", "private_copy", "rename_io", "graph_io_shapes",
           "check_dynamic_axes", "check_onnx", "save_model", "example_axes", "module_tensors", "load_module_tensors",
           "DEFAULT_OPSET", "EXAMPLE_BATCH"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
