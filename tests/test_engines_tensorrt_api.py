"""editrt's TensorRT code against the real TensorRT 11 Python API, without TensorRT's libraries.

The ``tensorrt_cu13_bindings`` wheel (test extra) holds the pybind11 module ``tensorrt.so``; it
cannot be imported without libnvinfer, but its read-only data carries every class, method,
property and enum name and every docstring (with its ``:arg name:`` lines) as C strings. This
test reads those strings and checks each ``trt.*`` name, method and keyword editrt's builder
(engines/build.py) and backend (engines/tensorrt_backend.py) use, found by walking their source
(ast), so a typo or a name TensorRT 11 removed fails here. What it cannot check: behaviour,
return types, and calls made through ``getattr`` (the fallbacks for older versions).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

import pytest

ENGINES = Path(__file__).resolve().parents[1] / "sdk" / "editrt" / "engines"
SOURCES = (ENGINES / "build.py", ENGINES / "tensorrt_backend.py")
# variables (and self.<attr>) that hold TensorRT objects in those files
TRT_OBJECTS = {"runtime", "builder", "network", "parser", "config", "profile", "cache", "_engine",
               "engine", "context", "logger", "serialized"}
# parameter names of each method editrt calls, as the bindings' docstrings list them (``:arg``)
PARAMS = {
    "set_memory_pool_limit": ("pool", "pool_size"),
    "set_shape": ("input", "min", "opt", "max"),
    "set_tensor_address": ("name", "memory"),
    "set_input_shape": ("name", "shape"),
    "set_timing_cache": ("cache", "ignore_mismatch"),
    "create_timing_cache": ("serialized_timing_cache",),
    "build_serialized_network": ("network", "config"),
    "set_device_memory": ("memory", "size"),
    "create_execution_context": ("strategy",),
    "deserialize_cuda_engine": ("serialized_engine",),
    "get_tensor_name": ("index",),
    "execute_async_v3": ("stream_handle",),
    "create_network": ("flags",),
}


def _bindings_so() -> Path | None:
    spec = importlib.util.find_spec("tensorrt_bindings")  # locates the package; runs nothing
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "tensorrt.so"
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def api_surface() -> tuple[frozenset[str], frozenset[tuple[str, ...]], str]:
    """(every C string, every docstring's ``:arg`` name sequence, all docstrings joined)."""
    so = _bindings_so()
    if so is None:
        pytest.skip("tensorrt_cu13_bindings is not installed (pip install -e '.[test]')")
    strings = [s.decode("latin-1") for s in re.findall(rb"[\t\n\r\x20-\x7e]{2,}", so.read_bytes())]
    args = frozenset(a for a in (tuple(re.findall(r":arg (\w+):", s)) for s in strings) if a)
    docs = "\n".join(s for s in strings if " " in s)
    return frozenset(strings), args, docs


def api_has(name: str) -> bool:
    """``name`` is a symbol of the bindings: a C string of its own, the tail of a longer one (the
    linker merges ``Logger`` into ``ILogger``), or cross-referenced in a docstring."""
    strings, _, docs = api_surface()
    if name in strings or any(s.endswith(name) and "\n" not in s for s in strings if len(s) < 200):
        return True
    return re.search(rf"(:attr:|:func:|:class:)`{re.escape(name)}`|\b{re.escape(name)}\(", docs) is not None


def _root(node: ast.AST) -> str | None:
    """Name of the TensorRT object an attribute is read from (``builder``, ``self.context``)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def _in_getattr_guard(node: ast.AST, parents: dict) -> bool:
    """Inside ``getattr(x, "name", None)`` / ``hasattr`` fallbacks: optional by construction."""
    p = parents.get(node)
    while p is not None:
        if isinstance(p, ast.Call) and isinstance(p.func, ast.Name) and p.func.id in ("getattr", "hasattr"):
            return True
        p = parents.get(p)
    return False


def used_api(paths=SOURCES):
    """(``trt.`` attribute chains, {method: [(n positional, keywords)]}, TensorRT object attributes)."""
    chains: set[tuple[str, ...]] = set()
    calls: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
    attrs: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text())
        parents = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and not isinstance(parents.get(node), ast.Attribute):
                chain, cur = [], node
                while isinstance(cur, ast.Attribute):
                    chain.append(cur.attr)
                    cur = cur.value
                if isinstance(cur, ast.Name) and cur.id == "trt":
                    chains.add(tuple(reversed(chain)))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if _root(node.func.value) in TRT_OBJECTS and not _in_getattr_guard(node, parents):
                    calls.setdefault(node.func.attr, []).append(
                        (len(node.args), tuple(k.arg for k in node.keywords if k.arg)))
            elif (isinstance(node, ast.Attribute) and _root(node.value) in TRT_OBJECTS
                  and not isinstance(parents.get(node), ast.Call) and not _in_getattr_guard(node, parents)):
                attrs.add(node.attr)
    return chains, calls, attrs


# attributes of those objects that are editrt's own (the backend's Python fields), not TensorRT's
OWN_ATTRS = {"engine", "context", "path", "arena", "spec", "device", "buffer", "generation", "data_ptr",
             "numel", "exists", "read_bytes", "cuda_stream", "_sets", "_logger"}


def test_the_surface_is_read():
    strings, args, _ = api_surface()
    assert len(strings) > 10_000 and len(args) > 50
    assert api_has("execute_async_v3") and api_has("Logger") and api_has("STRONGLY_TYPED")
    assert not api_has("execute_async_v9") and not api_has("create_builder_konfig")


def test_every_trt_name_editrt_uses_exists():
    chains, _, _ = used_api()
    assert ("Logger", "WARNING") in chains and ("MemoryPoolType", "WORKSPACE") in chains  # the walk saw them
    missing = sorted(".".join(c) for c in chains if c != ("__version__",) and not all(api_has(p) for p in c))
    assert missing == []


def test_every_method_and_property_editrt_uses_exists():
    _, calls, attrs = used_api()
    assert {"create_network", "build_serialized_network", "execute_async_v3"} <= set(calls)
    missing = sorted(n for n in set(calls) | (attrs - OWN_ATTRS) if n not in OWN_ATTRS and not api_has(n))
    assert missing == []


def test_calls_match_the_documented_parameters():
    _, args, _ = api_surface()
    _, calls, _ = used_api()
    for method, params in PARAMS.items():
        assert params in args, f"{method}: the bindings document no parameters {params}"
    problems = []
    for method, uses in calls.items():
        if method not in PARAMS:
            continue
        params = PARAMS[method]
        for n_pos, keywords in uses:
            if n_pos > len(params) or any(k not in params[n_pos:] for k in keywords):
                problems.append(f"{method}({n_pos} positional, keywords {keywords}) vs {params}")
    assert problems == []
    undocumented = sorted(m for m, uses in calls.items() if m not in PARAMS and any(n or k for n, k in uses)
                          and m not in OWN_ATTRS)
    # methods called with arguments must have their parameters listed above (so they are checked)
    assert set(undocumented) <= {"get_tensor_mode", "get_tensor_dtype", "get_tensor_shape", "parse_from_file",
                                 "get_error", "add_optimization_profile"}


def test_a_misspelt_name_fails(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f(trt, builder, context):\n"
                   "    builder.create_netwrok(0)\n"
                   "    context.execute_async_v3(1, 2)\n"
                   "    return trt.BuilderFlag.FP17\n")
    chains, calls, _ = used_api([bad])
    assert [c for c in chains if not all(api_has(p) for p in c)] == [("BuilderFlag", "FP17")]
    assert [m for m in calls if not api_has(m)] == ["create_netwrok"]
    n_pos, _ = calls["execute_async_v3"][0]
    assert n_pos > len(PARAMS["execute_async_v3"])  # one parameter documented, two passed
