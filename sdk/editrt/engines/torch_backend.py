"""The reference backend: the spec's torch module itself, eager, compiled, or replayed as a CUDA graph."""

from __future__ import annotations

import logging

import torch

from ..errors import BackendUnavailable, InputError
from ..models.registry import ModelSpec
from .base import Engine

log = logging.getLogger(__name__)


def as_output_dict(spec: ModelSpec, result) -> dict[str, torch.Tensor]:
    """A module result (tensor or tuple in output order) -> ``{output name: tensor}``."""
    if isinstance(result, torch.Tensor):
        result = (result,)
    result = tuple(result)
    if len(result) != len(spec.outputs):
        raise InputError(f"{spec.name}: module returned {len(result)} tensors, spec declares {len(spec.outputs)}")
    return {t.name: r for t, r in zip(spec.outputs, result)}


class TorchEngine(Engine):
    """Run ``module`` (the spec's forward-only wrapper) under ``torch.inference_mode``.

    Args:
        compile: None (eager) or a ``torch.compile`` mode ("default", "max-autotune", ...).
        cuda_graph: capture one CUDA graph per input shape and replay it (CUDA only; inputs are
            copied into static buffers, outputs are cloned out of the graph's buffers).
    """

    backend = "torch"

    def __init__(self, spec: ModelSpec, module: torch.nn.Module, *, device: str | torch.device | None = None,
                 compile: str | None = None, cuda_graph: bool = False):
        super().__init__(spec)
        self.module = module.eval().requires_grad_(False)
        if device is not None:
            self.module.to(device)
        self.device = next((p.device for p in self.module.parameters()), torch.device(device or "cpu"))
        if cuda_graph and self.device.type != "cuda":
            raise BackendUnavailable(f"{spec.name}: CUDA graphs need a CUDA device, the module is on {self.device}")
        self._compile_mode = compile
        self._fn = torch.compile(self.module, mode=compile, dynamic=False) if compile else self.module
        self.cuda_graph = cuda_graph
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict, dict]] = {}

    def _run(self, feeds: dict[str, torch.Tensor], axes: dict[str, int]) -> dict[str, torch.Tensor]:
        args = [feeds[n].to(self.device) for n in self.input_names]
        with torch.inference_mode():
            if not self.cuda_graph:
                return as_output_dict(self.spec, self._fn(*args))
            return self._replay(args)

    def _replay(self, args: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        sig = tuple((tuple(a.shape), a.dtype) for a in args)
        if sig not in self._graphs:
            static_in = [a.clone() for a in args]
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up outside capture (lazy inits, autotuning)
                for _ in range(2):
                    self._fn(*static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = as_output_dict(self.spec, self._fn(*static_in))
            self._graphs[sig] = (graph, static_in, static_out)
            log.debug("%s: captured a CUDA graph for %s", self.name, sig)
        graph, static_in, static_out = self._graphs[sig]
        for dst, src in zip(static_in, args):
            dst.copy_(src)
        graph.replay()
        return {k: v.clone() for k, v in static_out.items()}

    def clone(self) -> "TorchEngine":
        return TorchEngine(self.spec, self.module, compile=self._compile_mode, cuda_graph=self.cuda_graph)

    def close(self) -> None:
        self._graphs.clear()


__all__ = ["TorchEngine", "as_output_dict"]
