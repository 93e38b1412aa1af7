"""The package's import graph, read from the source (ast, nothing imported): no cycle, counting
the imports inside functions too, and the layers never reach upwards (``engines`` knows nothing
of ``methods``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sdk" / "editrt"

# layer -> packages it must never import, at module level or inside a function
FORBIDDEN = {
    "editrt.engines": ("editrt.methods", "editrt.eval", "editrt.cli", "editrt.cli_style", "editrt.toy"),
    "editrt.models": ("editrt.methods", "editrt.engines", "editrt.eval", "editrt.cli", "editrt.cli_style"),
    "editrt.ops": ("editrt.methods", "editrt.engines", "editrt.models", "editrt.eval"),
    "editrt.methods": ("editrt.eval", "editrt.cli", "editrt.cli_style"),
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    t = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"))


def imports_of(root: Path, path: Path, known: set[str], *, deferred: bool) -> set[str]:
    """Package modules ``path`` imports (``from .x import y`` counts x and x.y when y is a module).
    ``deferred``: also imports inside functions. ``if TYPE_CHECKING:`` blocks never run."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not deferred:
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    # a module importing its own parent package finds it already initialising: not a cycle edge
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


def import_graph(root: Path, *, deferred: bool) -> dict[str, set[str]]:
    files = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {n: imports_of(root, p, known, deferred=deferred) for n, p in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


@pytest.mark.parametrize("deferred", [False, True], ids=["import time", "deferred imports included"])
def test_no_import_cycle(deferred):
    graph = import_graph(PACKAGE, deferred=deferred)
    assert len(graph) > 50  # the walk saw the package
    assert cycles(graph) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_never_import_upwards(layer):
    graph = import_graph(PACKAGE, deferred=True)
    bad = sorted((m, t) for m, targets in graph.items() if m == layer or m.startswith(layer + ".")
                 for t in targets if any(t == f or t.startswith(f + ".") for f in FORBIDDEN[layer]))
    assert bad == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "pkg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "pkg"


def test_the_walk_finds_a_cycle_and_skips_type_checking_and_deferred(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "from .c import thing\n",
        "c.py": "from .a import x\nthing = 1\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import e\n",
        "e.py": "def f():\n    from . import d\n",
        "sub/__init__.py": "from . import leaf\n",
        "sub/leaf.py": "from .. import sub\n",  # its own parent: already initialising
    })
    assert cycles(import_graph(pkg, deferred=False)) == [["pkg.a", "pkg.b", "pkg.c"]]
    deferred = import_graph(pkg, deferred=True)
    assert "pkg.e" not in deferred["pkg.d"] and "pkg.d" in deferred["pkg.e"]
    assert "pkg.sub" not in deferred["pkg.sub.leaf"]


def test_subcommand_modules_never_import_the_cli():
    """``editrt.cli`` imports its subcommand modules by name (importlib), an edge the walk cannot
    see: they take shared options from ``editrt.cli_args`` instead, so no hidden cycle exists."""
    from editrt import cli

    graph = import_graph(PACKAGE, deferred=True)
    assert cli._PLUGINS and all(name in graph for name in cli._PLUGINS)
    assert [n for n in cli._PLUGINS if "editrt.cli" in graph[n]] == []
