"""onnxruntime backend: CPU, CUDA and TensorRT execution providers behind the engine contract.

CPU feeds go through numpy. CUDA feeds on a CUDA/TensorRT provider are bound in place with
IOBinding: inputs must be contiguous and of the graph's dtype (``prepare_feeds`` casts, this
module makes contiguous and checks), outputs are preallocated torch tensors bound by pointer.
Stream ordering: the session is created with torch's current stream as its compute stream; when
a call comes from another stream, that stream is synchronised first so ORT never reads an input
that is still being written (microsoft/onnxruntime#26609).

Verified on our machines: the CPU provider only (onnxruntime-gpu is not installed anywhere we
run). The CUDA / TensorRT EP paths are written against the ORT docs and are unverified.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import BackendUnavailable, EngineError, InputError
from ..models.registry import ModelSpec
from .base import Engine, output_shape

log = logging.getLogger(__name__)

_ORT_TYPES = {
    "tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(bfloat16)": torch.bfloat16,
    "tensor(double)": torch.float64, "tensor(int32)": torch.int32, "tensor(int64)": torch.int64,
    "tensor(int8)": torch.int8, "tensor(uint8)": torch.uint8, "tensor(bool)": torch.bool,
}
_NP_TYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.float64: np.float64,
             torch.int32: np.int32, torch.int64: np.int64, torch.int8: np.int8, torch.uint8: np.uint8,
             torch.bool: np.bool_}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc}); pip install onnxruntime") from None
    return onnxruntime


ARENA_ENV = "EDITRT_ORT_CPU_ARENA"


def cpu_arena_default() -> bool:
    """``$EDITRT_ORT_CPU_ARENA``: "1"/"on"/"true" (the default when unset) or "0"/"off"/"false"."""
    value = os.environ.get(ARENA_ENV, "on").strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise InputError(f"{ARENA_ENV}={value!r}: use on or off")


def profile_strings(spec: ModelSpec) -> dict[str, str]:
    """``trt_profile_{min,opt,max}_shapes`` values ("name:1x3x224x224,...") from the spec's profile."""
    shapes = spec.profile_shapes()
    out = {}
    for k, which in enumerate(("min", "opt", "max")):
        out[f"trt_profile_{which}_shapes"] = ",".join(
            f"{name}:{'x'.join(str(d) for d in trio[k])}" for name, trio in shapes.items())
    return out


class OrtEngine(Engine):
    """An ONNX file run by onnxruntime.

    Args:
        provider: "cpu", "cuda" or "tensorrt" (the TensorRT EP, with CUDA and CPU as fallbacks).
        device: CUDA device for "cuda"/"tensorrt".
        precision: the graph's precision; 16-bit graphs on the CPU provider run with
            ``ORT_ENABLE_EXTENDED`` (ORT 1.31's full optimisation level crashed in session
            creation on fp16 graphs on CPU).
        trt_cache_dir: engine + timing cache folder for the TensorRT EP (from the store).
        cuda_graph: let the CUDA / TensorRT EP capture CUDA graphs: one input shape per engine,
            inputs copied into static buffers bound once (the graph replays fixed addresses).
        threads: intra-op threads (default: torch's setting).
        cpu_arena: onnxruntime's CPU memory arena (CPU provider); None: ``$EDITRT_ORT_CPU_ARENA``
            ("0"/"off" turns it off), else on. On: buffers freed during a run are reused (no
            fresh pages per tensor); a batch-1 1024 px synthesis ran 1.21x faster (2.76 against
            3.33 s, one thread), its peak 0.5 GB higher and kept after the call (the arena grows
            in powers of two and never shrinks; callers run big generators one image per call).
            Off: tensors go back to the allocator after each node and memory follows the live
            tensors.
    """

    backend = "onnxruntime"

    def __init__(self, spec: ModelSpec, path: str | os.PathLike, *, provider: str = "cpu",
                 device: str | torch.device | None = None, precision: str = "fp32",
                 trt_cache_dir: str | os.PathLike | None = None, cuda_graph: bool = False,
                 threads: int | None = None, cpu_arena: bool | None = None, _session=None):
        super().__init__(spec)
        ort = _ort()
        if provider not in PROVIDERS:
            raise InputError(f"unknown onnxruntime provider {provider!r}; use one of {sorted(PROVIDERS)}")
        self.path, self.provider, self.precision = Path(path), provider, precision
        self.device = torch.device(device) if device is not None else (
            torch.device("cpu") if provider == "cpu" else torch.device("cuda"))
        if provider != "cpu" and self.device.type != "cuda":
            raise InputError(f"the {provider} provider needs a CUDA device, got {self.device}")
        self._trt_cache_dir, self._cuda_graph, self._threads = trt_cache_dir, cuda_graph, threads
        self.cpu_arena = cpu_arena_default() if cpu_arena is None else bool(cpu_arena)
        self._stream_handle = None
        self._static = None  # CUDA-graph mode: (shape signature, inputs, outputs, binding)
        if _session is None:
            available = ort.get_available_providers()
            if PROVIDERS[provider] not in available:
                raise BackendUnavailable(f"onnxruntime provider {PROVIDERS[provider]} is not available "
                                         f"(installed: {available}); install onnxruntime-gpu for cuda/tensorrt")
            _session = self._create_session(ort)
        self.session = _session
        self._in_types = {i.name: _ORT_TYPES.get(i.type) for i in self.session.get_inputs()}
        self._out_types = {o.name: _ORT_TYPES.get(o.type) for o in self.session.get_outputs()}
        want_in, want_out = set(self.input_names), set(self.output_names)
        if set(self._in_types) != want_in or set(self._out_types) != want_out:
            raise EngineError(f"{self.path} does not match spec {spec.name}: graph inputs {sorted(self._in_types)}, "
                              f"outputs {sorted(self._out_types)}; spec wants {sorted(want_in)} -> {sorted(want_out)}. "
                              f"Rebuild it with `editrt export`")

    def _create_session(self, ort):
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(self._threads or torch.get_num_threads())
        so.log_severity_level = 3  # errors only: constant-folding notes on fp16 graphs are noise
        if self.provider == "cpu":
            so.enable_cpu_mem_arena = self.cpu_arena
        if self.precision != "fp32" and self.provider == "cpu":
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        providers: list = []
        if self.provider in ("cuda", "tensorrt"):
            idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self._stream_handle = torch.cuda.current_stream(self.device).cuda_stream
            stream_opts = {"device_id": str(idx), "has_user_compute_stream": "1",
                           "user_compute_stream": str(self._stream_handle)}
            if self.provider == "tensorrt":
                cache = Path(self._trt_cache_dir or self.path.parent / "ort_trt_cache")
                cache.mkdir(parents=True, exist_ok=True)
                trt_opts = {**stream_opts, "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache),
                            # precision comes from the graph (strongly typed), not from an EP flag
                            "trt_fp16_enable": "False",
                            "trt_cuda_graph_enable": "True" if self._cuda_graph else "False",
                            **profile_strings(self.spec)}
                providers.append(("TensorrtExecutionProvider", trt_opts))
            providers.append(("CUDAExecutionProvider",
                              {**stream_opts, "enable_cuda_graph": "1" if self._cuda_graph and self.provider == "cuda" else "0"}))
        providers.append("CPUExecutionProvider")
        try:
            return ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            if "NOT_IMPLEMENTED" in str(exc):  # a valid graph with an op this provider has no kernel for
                raise EngineError(f"onnxruntime's {self.provider} provider cannot run this {self.precision} graph "
                                  f"(NOT_IMPLEMENTED: {str(exc).rpartition('NOT_IMPLEMENTED : ')[2]}); "
                                  f"use another precision or backend ({self.path})") from None
            raise EngineError(f"onnxruntime cannot load {self.path} ({type(exc).__name__}: {exc}); "
                              f"the file may be corrupt: rebuild it with `editrt export`") from None

    def input_dtype(self, name: str) -> torch.dtype:
        return self._in_types.get(name) or super().input_dtype(name)

    def _run(self, feeds: dict[str, torch.Tensor], axes: dict[str, int]) -> dict[str, torch.Tensor]:
        first = feeds[self.input_names[0]]
        if self.provider != "cpu" and first.is_cuda:
            return self._run_bound(feeds, axes)
        arrays = {n: np.ascontiguousarray(x.detach().cpu().numpy()) for n, x in feeds.items()}
        try:
            outs = self.session.run(self.output_names, arrays)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"{self.name}: onnxruntime failed on {self.path}: {exc}") from None
        return {n: torch.from_numpy(np.asarray(o)).to(first.device) for n, o in zip(self.output_names, outs)}

    def _run_bound(self, feeds: dict[str, torch.Tensor], axes: dict[str, int]) -> dict[str, torch.Tensor]:
        dev = feeds[self.input_names[0]].device
        if dev != self.device and not (self.device.index is None and dev.type == "cuda"):
            raise InputError(f"{self.name}: inputs are on {dev}, the session runs on {self.device}")
        current = torch.cuda.current_stream(dev)
        if current.cuda_stream != self._stream_handle:
            current.synchronize()  # ORT computes on the stream it was created with
        if self._cuda_graph:
            return self._run_graph(feeds, axes, dev)
        io = self.session.io_binding()
        for name, x in feeds.items():
            if x.dtype != self._in_types[name]:
                raise InputError(f"{self.name}: input {name!r} is {x.dtype}, the graph reads {self._in_types[name]}")
            x = x.contiguous()  # a strided view bound by pointer would be read as dense memory
            feeds[name] = x  # keep it alive until the run ends
            io.bind_input(name, "cuda", dev.index or 0, _NP_TYPES[x.dtype], list(x.shape), x.data_ptr())
        outs: dict[str, torch.Tensor] = {}
        for t in self.spec.outputs:
            shape = output_shape(t, axes)
            dtype = self._out_types[t.name]
            if shape is None or dtype not in _NP_TYPES:
                io.bind_output(t.name, "cuda", dev.index or 0)
                continue
            outs[t.name] = torch.empty(shape, dtype=dtype, device=dev)
            io.bind_output(t.name, "cuda", dev.index or 0, _NP_TYPES[dtype], list(shape), outs[t.name].data_ptr())
        try:
            self.session.run_with_iobinding(io)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"{self.name}: onnxruntime failed on {self.path}: {exc}") from None
        if len(outs) < len(self.output_names):
            values = io.get_outputs()
            for k, name in enumerate(self.output_names):
                if name not in outs:
                    outs[name] = torch.from_numpy(values[k].numpy()).to(dev)
        return {n: outs[n] for n in self.output_names}

    def _run_graph(self, feeds: dict[str, torch.Tensor], axes: dict[str, int], dev: torch.device):
        """CUDA-graph mode: ORT replays a captured graph, so inputs and outputs must keep their
        addresses. One set of static buffers, bound once; new inputs are copied into them."""
        sig = tuple(tuple(feeds[n].shape) for n in self.input_names)
        if self._static is None:
            inputs = {n: torch.empty(x.shape, dtype=self._in_types[n], device=dev) for n, x in feeds.items()}
            outputs = {}
            io = self.session.io_binding()
            for n, x in inputs.items():
                io.bind_input(n, "cuda", dev.index or 0, _NP_TYPES[x.dtype], list(x.shape), x.data_ptr())
            for t in self.spec.outputs:
                shape = output_shape(t, axes)
                if shape is None:
                    raise EngineError(f"{self.name}: output {t.name!r} has no static shape; CUDA graphs need one")
                outputs[t.name] = torch.empty(shape, dtype=self._out_types[t.name], device=dev)
                io.bind_output(t.name, "cuda", dev.index or 0, _NP_TYPES[outputs[t.name].dtype], list(shape),
                               outputs[t.name].data_ptr())
            self._static = (sig, inputs, outputs, io)
        static_sig, inputs, outputs, io = self._static
        if sig != static_sig:
            raise InputError(f"{self.name}: CUDA-graph engines run one input shape ({static_sig}), got {sig}; "
                             f"open another engine for other shapes")
        for n, x in feeds.items():
            inputs[n].copy_(x)
        try:
            self.session.run_with_iobinding(io)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"{self.name}: onnxruntime failed on {self.path}: {exc}") from None
        return {n: outputs[n].clone() for n in self.output_names}

    def clone(self) -> "OrtEngine":
        """Another engine sharing this session (``InferenceSession.run`` is thread-safe)."""
        other = OrtEngine(self.spec, self.path, provider=self.provider, device=self.device,
                          precision=self.precision, trt_cache_dir=self._trt_cache_dir, cuda_graph=self._cuda_graph,
                          threads=self._threads, cpu_arena=self.cpu_arena, _session=self.session)
        other._stream_handle = self._stream_handle
        return other

    def close(self) -> None:
        self.session = None


def available_providers() -> Sequence[str]:
    """Short names of the providers this onnxruntime build offers."""
    names = set(_ort().get_available_providers())
    return [k for k, v in PROVIDERS.items() if v in names]


__all__ = ["OrtEngine", "available_providers", "profile_strings", "PROVIDERS"]
