"""fp32 ONNX graph -> fp16 or bf16 graph, with chosen op types kept in fp32.

TensorRT 11 builds are strongly typed: the precision is whatever the graph says,
so the reduced-precision graph is produced here rather than by a builder flag. Rules:

- float initializers and float ``Constant``/``ConstantOfShape`` values become 16-bit, except
  those read only by fp32 nodes (they stay fp32 and need no cast);
- nodes whose op type is in ``keep_fp32`` (the spec's ``fp32_ops``: normalisations whose
  statistics overflow in fp16) read fp32 inputs and write fp32 outputs; a ``Cast`` is inserted
  wherever a tensor crosses between the two precisions (one cast per tensor and direction);
- ``Cast(to=FLOAT)`` in the 16-bit part becomes ``Cast(to=<16-bit>)``;
- float inputs that ONNX requires in fp32 (``Resize`` roi/scales) stay fp32;
- graph inputs and outputs keep their fp32 type (casts at the boundary), so callers feed and
  receive fp32 whatever the engine's precision.

onnxruntime's own ``float16.convert_float_to_float16`` was tried first: on the dynamo exporter's
graphs it produced duplicate cast names (invalid SSA) and unsorted nodes, hence this pass.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from ..errors import EngineError

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
FLOAT = TensorProto.FLOAT

# (op type -> input slots that must stay fp32 whatever the graph precision)
_FP32_SLOTS = {"Resize": (1, 2), "Upsample": (1,)}
# ops that accept any input type (no cast needed in front of them)
_ANY_INPUT = {"Cast", "Shape", "Size", "CastLike"}
_FP16_MAX = 65504.0


def _to_low(arr: np.ndarray, low: int) -> TensorProto:
    """fp32 array -> TensorProto of the 16-bit type (fp16 values clipped to the finite range)."""
    if low == TensorProto.FLOAT16:
        return numpy_helper.from_array(np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16))
    bits = torch.from_numpy(np.array(arr, dtype=np.float32)).to(torch.bfloat16).view(torch.int16)
    t = TensorProto()
    t.data_type = TensorProto.BFLOAT16
    t.dims.extend(arr.shape)
    t.raw_data = bits.numpy().tobytes()
    return t


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=False)
    g = inferred.graph
    types = {}
    for v in list(g.input) + list(g.output) + list(g.value_info):
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def convert_precision(model: onnx.ModelProto, precision: str, keep_fp32: tuple[str, ...] = ()) -> onnx.ModelProto:
    """Return a copy of ``model`` in ``precision`` ("fp16" | "bf16"); see the module docstring."""
    if precision not in LOW_TYPES:
        raise EngineError(f"precision conversion supports fp16 and bf16, not {precision!r}")
    low = LOW_TYPES[precision]
    src = onnx.ModelProto()
    src.CopyFrom(model)
    g = src.graph
    for n in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise EngineError(f"node {n.name} ({n.op_type}) has a subgraph: reduced-precision conversion "
                              f"of control flow is not supported; export this spec in fp32")
    if len(src.functions):
        raise EngineError("the graph has local functions; inline them before precision conversion")
    types = _elem_types(src)
    keep = set(keep_fp32)

    def is_float(name: str) -> bool:
        return types.get(name) == FLOAT

    def wants_fp32(node, slot: int) -> bool:
        return node.op_type in keep or slot in _FP32_SLOTS.get(node.op_type, ())

    # Which float initializers have a 16-bit consumer?
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            consumers.setdefault(x, []).append((n, i))
    precision_of: dict[str, int] = {}  # float tensor -> FLOAT or low
    new_inits = []
    for init in g.initializer:
        if init.data_type == FLOAT and any(not wants_fp32(n, i) and n.op_type not in _ANY_INPUT
                                           for n, i in consumers.get(init.name, [])):
            t = _to_low(numpy_helper.to_array(init), low)
            t.name = init.name
            new_inits.append(t)
            precision_of[init.name] = low
        else:
            new_inits.append(init)
            if init.data_type == FLOAT:
                precision_of[init.name] = FLOAT
    del g.initializer[:]
    g.initializer.extend(new_inits)
    for v in g.input:
        if v.type.tensor_type.elem_type == FLOAT:
            precision_of[v.name] = FLOAT

    casts: dict[tuple[str, int], str] = {}
    out_nodes: list[onnx.NodeProto] = []
    counter = [0]

    def cast(name: str, to: int) -> str:
        if precision_of.get(name, to) == to:
            return name
        if (name, to) not in casts:
            counter[0] += 1
            new = f"{name}__to{'32' if to == FLOAT else '16'}_{counter[0]}"
            out_nodes.append(helper.make_node("Cast", [name], [new], to=to, name=f"precision_cast_{counter[0]}"))
            casts[(name, to)] = new
            precision_of[new] = to
        return casts[(name, to)]

    for n in g.node:
        fp32_node = n.op_type in keep
        if n.op_type not in _ANY_INPUT:
            for i, x in enumerate(n.input):
                if x and x in precision_of:
                    n.input[i] = cast(x, FLOAT if wants_fp32(n, i) else low)
        if n.op_type == "Cast":
            to = helper.get_attribute_value(next(a for a in n.attribute if a.name == "to"))
            if to == FLOAT and not fp32_node:
                for a in n.attribute:
                    if a.name == "to":
                        a.i = low
                precision_of[n.output[0]] = low
            elif to == FLOAT:
                precision_of[n.output[0]] = FLOAT
            out_nodes.append(n)
            continue
        if n.op_type in ("Constant", "ConstantOfShape") and not fp32_node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == FLOAT:
                    t = _to_low(numpy_helper.to_array(a.t), low)
                    a.t.CopyFrom(t)
                    precision_of[n.output[0]] = low
            out_nodes.append(n)
            continue
        for o in n.output:
            if is_float(o):
                precision_of[o] = FLOAT if fp32_node else low
        out_nodes.append(n)

    # Graph outputs stay fp32: the producer writes a renamed 16-bit tensor, a cast restores the name.
    for o in g.output:
        if o.type.tensor_type.elem_type != FLOAT or precision_of.get(o.name, FLOAT) == FLOAT:
            continue
        inner = f"{o.name}__lowp"
        for n in out_nodes:
            n.output[:] = [inner if x == o.name else x for x in n.output]
            n.input[:] = [inner if x == o.name else x for x in n.input]
        out_nodes.append(helper.make_node("Cast", [inner], [o.name], to=FLOAT, name=f"output_cast_{o.name}"))
    del g.node[:]
    g.node.extend(out_nodes)
    del g.value_info[:]  # float types changed; recomputed by shape inference on load
    toposort(g)
    return src


def toposort(graph: onnx.GraphProto) -> None:
    """Sort nodes topologically in place (stable: original order where free)."""
    import collections
    import heapq

    produced = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    deps = [{produced[x] for x in n.input if x in produced} for n in graph.node]
    indeg = [len(d) for d in deps]
    users = collections.defaultdict(list)
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(graph.node):
        raise EngineError("the graph has a cycle; cannot sort it")
    nodes = [onnx.NodeProto() for _ in order]
    for dst, i in zip(nodes, order):
        dst.CopyFrom(graph.node[i])
    del graph.node[:]
    graph.node.extend(nodes)


def precision_census(model: onnx.ModelProto) -> dict[str, int]:
    """Count of initializer elements per data type name (for reports)."""
    out: dict[str, int] = {}
    for init in model.graph.initializer:
        name = TensorProto.DataType.Name(init.data_type)
        out[name] = out.get(name, 0) + int(np.prod(init.dims)) if init.dims else out.get(name, 0) + 1
    return out


__all__ = ["convert_precision", "toposort", "precision_census", "LOW_TYPES"]
