"""TensorRT backend: a deserialised plan run with ``execute_async_v3`` on the caller's stream.

Written against the TensorRT 10.x/11 Python API documentation and the patterns of NVIDIA's
``demo/Diffusion``. **Never executed on our machines**: TensorRT cannot be
installed there. Its tests run wherever ``import tensorrt`` works and skip otherwise.

- Persistent I/O buffers: torch CUDA tensors allocated per input shape, bound once with
  ``set_tensor_address``; inputs are copied in, outputs cloned out (so a later call never
  overwrites a tensor the caller holds).
- The caller's stream: ``execute_async_v3(torch.cuda.current_stream().cuda_stream)``; no
  synchronisation is added, torch's stream semantics apply to the returned tensors.
- CUDA graph replay (``cuda_graph=True``): after one warm-up run per shape the enqueue is
  captured with ``torch.cuda.graph`` and replayed; valid because the buffers and the activation
  memory keep their addresses (a grown shared arena invalidates and recaptures).
- One activation arena for a pipeline (:class:`SharedArena`): contexts are created with
  ``ExecutionContextAllocationStrategy.USER_MANAGED`` and all point at one buffer sized to the
  largest ``device_memory_size_v2``. Engines sharing an arena must not run concurrently: the
  arena's lock serialises them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import torch

from ..errors import BackendUnavailable, EngineError, InputError
from ..models.registry import ModelSpec
from .base import Engine

log = logging.getLogger(__name__)

_MAX_SHAPES = 4  # persistent buffer sets (and CUDA graphs) kept per engine, least recently used dropped


def _torch_dtype(trt, dt) -> torch.dtype:
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    for name, tdt in table.items():
        if getattr(trt.DataType, name, None) == dt:
            return tdt
    raise EngineError(f"TensorRT tensor type {dt} has no torch equivalent")


class SharedArena:
    """One CUDA buffer used as activation memory by several engines that run one after another."""

    def __init__(self, device: str | torch.device = "cuda"):
        self.device = torch.device(device)
        self.buffer: torch.Tensor | None = None
        self.generation = 0  # bumped when the buffer moves
        self.lock = threading.RLock()

    @property
    def size(self) -> int:
        return 0 if self.buffer is None else self.buffer.numel()

    def reserve(self, nbytes: int) -> None:
        with self.lock:
            if nbytes > self.size:
                self.buffer = None  # free first: the old and new sizes need not fit together
                self.buffer = torch.empty(int(nbytes), dtype=torch.uint8, device=self.device)
                self.generation += 1
                log.debug("shared TensorRT arena now %d bytes", nbytes)


class TrtEngine(Engine):
    """A TensorRT plan behind the engine contract (CUDA tensors in and out).

    Args:
        plan: path of a ``.plan`` built for this TensorRT version and GPU (the store checks that).
        device: the CUDA device the plan runs on.
        cuda_graph: capture and replay the enqueue per input shape.
        arena: a :class:`SharedArena` for the activation memory (else the context owns its own).
    """

    backend = "tensorrt"

    def __init__(self, spec: ModelSpec, plan: str | os.PathLike, *, device: str | torch.device = "cuda",
                 cuda_graph: bool = False, arena: SharedArena | None = None, _engine=None):
        super().__init__(spec)
        from .build import import_tensorrt

        self.trt = trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailable("the TensorRT backend needs a CUDA device; none is visible to torch")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise InputError(f"the TensorRT backend runs on CUDA devices, got {self.device}")
        self.path = Path(plan)
        self.cuda_graph, self.arena = cuda_graph, arena
        self._logger = trt.Logger(trt.Logger.WARNING)
        if _engine is None:
            runtime = trt.Runtime(self._logger)
            with torch.cuda.device(self.device):
                _engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
            if _engine is None:
                raise EngineError(f"TensorRT cannot deserialise {self.path}: corrupt, or built by another "
                                  f"TensorRT version / for another GPU; rebuild it with `editrt export --backend tensorrt`")
            self._runtime = runtime  # the engine must not outlive its runtime
        self.engine = _engine
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self._inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if set(self._inputs) != set(self.input_names) or set(self._outputs) != set(self.output_names):
            raise EngineError(f"{self.path} does not match spec {spec.name}: plan I/O {self._inputs} -> "
                              f"{self._outputs}; rebuild it")
        self._dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        with torch.cuda.device(self.device):
            if arena is not None:
                strategy = trt.ExecutionContextAllocationStrategy.USER_MANAGED
                self.context = self.engine.create_execution_context(strategy)
                arena.reserve(self._activation_bytes())
            else:
                self.context = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"TensorRT could not create an execution context for {self.path} (out of memory?)")
        self._arena_generation = -1
        self._sets: OrderedDict[tuple, dict] = OrderedDict()

    def _activation_bytes(self) -> int:
        # TensorRT >= 10.1 (the supported range starts at 10.12); TensorRT 11 removed the v1 property
        return int(self.engine.device_memory_size_v2)

    def input_dtype(self, name: str) -> torch.dtype:
        return self._dtypes[name]

    def _check_profile(self, feeds: dict[str, torch.Tensor]) -> None:
        for name, (lo, _, hi) in self.spec.profile_shapes().items():
            shape = tuple(feeds[name].shape)
            if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
                raise InputError(f"{self.name}: input {name!r} shape {shape} is outside the engine's profile "
                                 f"{tuple(lo)}..{tuple(hi)}; split the batch or rebuild with a larger profile")

    def _bind_arena(self) -> None:
        if self.arena is None or self._arena_generation == self.arena.generation:
            return
        buf = self.arena.buffer
        self.context.set_device_memory(buf.data_ptr(), buf.numel())  # TensorRT >= 10.1: address and size
        self._arena_generation = self.arena.generation
        for entry in self._sets.values():  # captured graphs point at the old arena
            entry["graph"] = None

    def _buffers(self, feeds: dict[str, torch.Tensor]) -> dict:
        sig = tuple(tuple(feeds[n].shape) for n in self.input_names)
        entry = self._sets.get(sig)
        if entry is not None:
            self._sets.move_to_end(sig)
            return entry
        tensors = {}
        for n in self.input_names:
            shape = tuple(feeds[n].shape)
            if not self.context.set_input_shape(n, shape):
                raise InputError(f"{self.name}: TensorRT rejected shape {shape} for input {n!r}")
            tensors[n] = torch.empty(shape, dtype=self._dtypes[n], device=self.device)
        for n in self.output_names:
            shape = tuple(self.context.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise EngineError(f"{self.name}: output {n!r} shape {shape} is unresolved after setting inputs")
            tensors[n] = torch.empty(shape, dtype=self._dtypes[n], device=self.device)
        entry = {"tensors": tensors, "graph": None, "warm": False}
        self._sets[sig] = entry
        while len(self._sets) > _MAX_SHAPES:
            self._sets.popitem(last=False)
        return entry

    def _enqueue(self, stream: torch.cuda.Stream) -> None:
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise EngineError(f"{self.name}: TensorRT execution failed (see the TensorRT log)")

    def _run(self, feeds: dict[str, torch.Tensor], axes: dict[str, int]) -> dict[str, torch.Tensor]:
        self._check_profile(feeds)
        lock = self.arena.lock if self.arena is not None else None
        if lock is not None:
            lock.acquire()
        try:
            with torch.cuda.device(self.device):
                self._bind_arena()
                entry = self._buffers(feeds)
                tensors = entry["tensors"]
                for n in self.input_names:
                    # another shape may have been bound since: shapes and addresses are context state
                    self.context.set_input_shape(n, tuple(tensors[n].shape))
                for n, t in tensors.items():
                    self.context.set_tensor_address(n, t.data_ptr())
                stream = torch.cuda.current_stream(self.device)
                for n in self.input_names:
                    tensors[n].copy_(feeds[n], non_blocking=True)
                if not self.cuda_graph or not entry["warm"]:
                    self._enqueue(stream)
                    entry["warm"] = True
                else:
                    if entry["graph"] is None:
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            self._enqueue(torch.cuda.current_stream(self.device))
                        entry["graph"] = graph
                    entry["graph"].replay()
                return {n: tensors[n].clone() for n in self.output_names}
        finally:
            if lock is not None:
                lock.release()

    def clone(self) -> "TrtEngine":
        """Another execution context (own buffers) over the same deserialised engine."""
        other = TrtEngine(self.spec, self.path, device=self.device, cuda_graph=self.cuda_graph,
                          arena=self.arena, _engine=self.engine)
        other._runtime = getattr(self, "_runtime", None)
        return other

    def close(self) -> None:
        self._sets.clear()
        self.context = None


__all__ = ["TrtEngine", "SharedArena"]
