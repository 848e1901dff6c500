"""The package's import graph keeps its layers: no cycles, no upward imports, lazy imports only where they pay.

Every ``.py`` under ``placement/``, ``kernels/`` (installed as ``placement.kernels``) and
``solvers/`` (``placement.solvers``) is parsed with ``ast``; each ``import`` and ``from ... import``
of a project module, at any depth of the file, is an edge. A failure lists every offending edge
as ``file:line  importer -> imported``.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the package name it is installed as.
FOLDERS = {"placement": "placement", "kernels": "placement.kernels", "solvers": "placement.solvers"}

# Lowest first. A module may import its own layer and the layers below; the root package
# (the public API, which re-exports the rooms) is at the top with the CLI.
LAYERS: list[tuple[str, ...]] = [
    ("placement.errors",),
    ("placement.model",),
    ("placement.io",),
    ("placement.core",),
    ("placement.kernels",),
    ("placement.solvers",),
    ("placement.summary", "placement.plan", "placement.validate"),
    ("placement.warm_start", "placement.current_plan"),
    ("placement.api",),
    ("placement.replan", "placement.sweep", "placement.generate"),
    ("placement.cli", "placement"),
]
# What kernels/ and solvers/ may import of the package.
ENGINE_MAY_IMPORT = {
    "placement.kernels": ("placement.core", "placement.model", "placement.errors", "placement.kernels"),
    "placement.solvers": ("placement.core", "placement.model", "placement.errors", "placement.kernels",
                          "placement.solvers"),
}
# Imported inside functions only, because their import time or optional install matters.
LAZY_OK = {"numba", "ortools", "highspy", "ray", "cupy", "matplotlib"}
HEAVY = ("ortools", "highspy", "numba", "ray", "cupy")


@dataclass(frozen=True)
class Edge:
    """One import statement's target: where it is, and whether it runs only inside a function."""

    src: str
    dst: str
    path: str
    line: int
    lazy: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}  {self.src} -> {self.dst}" + ("  (inside a function)" if self.lazy else "")


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or (prefix != "placement" and module.startswith(prefix + "."))


@functools.cache
def modules() -> dict[str, Path]:
    """Every project module by its import name (a package by its ``__init__.py``)."""
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Modules an import statement loads (``from pkg import name`` loads ``pkg.name`` when it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module if modules()[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules() else base for a in node.names]


def _imports(tree: ast.AST, inside_function: bool = False):
    """Yield ``(import node, inside a function)`` for every import in the tree."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, inside_function
        yield from _imports(child, inside_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))


@functools.cache
def all_imports() -> tuple[Edge, ...]:
    """Every import of every project module, project or not."""
    edges = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, lazy in _imports(tree):
            for dst in _targets(module, node):
                edges.append(Edge(module, dst, str(path.relative_to(ROOT)), node.lineno, lazy))
    return tuple(edges)


def project_edges() -> list[Edge]:
    return [e for e in all_imports() if _is_within(e.dst, "placement") or e.dst.startswith("placement.")]


def layer_of(module: str) -> int | None:
    """The layer index of a module (longest matching prefix), None when it has none."""
    best: tuple[int, int] | None = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if _is_within(module, prefix) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    return None if best is None else best[0]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


def test_every_module_has_a_layer() -> None:
    """A new module must be placed in LAYERS, and every imported project module must exist."""
    unplaced = sorted(m for m in modules() if layer_of(m) is None)
    missing = [str(e) for e in project_edges() if e.dst not in modules()]
    assert not unplaced, _report("modules with no layer: add them to LAYERS in tests/test_import_graph.py", unplaced)
    assert not missing, _report("imports of project modules that do not exist", missing)


def _cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.src, set()).add(e.dst)
        graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    """No module reaches itself through imports (function-level imports count: they hide a cycle)."""
    edges = [e for e in project_edges() if e.dst in modules()]
    problems = []
    for component in _cycles(edges):
        inside = set(component)
        problems.append("cycle among " + ", ".join(component) + ":\n    "
                        + "\n    ".join(str(e) for e in edges if e.src in inside and e.dst in inside))
    assert not problems, _report("import cycles", problems)


def test_no_upward_imports() -> None:
    """Each module imports only its own layer and the layers below it."""
    bad = []
    for e in project_edges():
        src, dst = layer_of(e.src), layer_of(e.dst)
        if src is not None and dst is not None and dst > src:
            bad.append(f"{e}  (layer {' '.join(LAYERS[src])} imports layer {' '.join(LAYERS[dst])})")
    assert not bad, _report("imports from a lower layer to a higher one", bad)


def test_kernels_and_solvers_import_only_core_model_errors() -> None:
    """kernels/ and solvers/ see the compiled problem, never configs, plans or applications."""
    bad = []
    for e in project_edges():
        for engine, allowed in ENGINE_MAY_IMPORT.items():
            if _is_within(e.src, engine) and not any(_is_within(e.dst, a) for a in allowed):
                bad.append(f"{e}  ({engine} may import only {', '.join(allowed)})")
    assert not bad, _report("kernels/solvers importing outside core, model, errors", bad)


@functools.cache
def loads_heavy(module: str) -> bool:
    """Whether importing a project module loads a LAZY_OK package at its top level, itself or
    through the project modules it imports at the top."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for e in all_imports():
            if e.src == m and not e.lazy:
                if e.dst.partition(".")[0] in LAZY_OK:
                    return True
                if e.dst in modules():
                    todo.append(e.dst)
    return False


def test_lazy_imports_only_for_heavy_optional_packages() -> None:
    """Function-level imports only for packages whose import time or optional install matters,
    or for project modules that load one at their top (a solver engine's wrapper)."""
    bad = [f"{e}  (import it at the top of the module)" for e in all_imports()
           if e.lazy and e.dst.partition(".")[0] not in LAZY_OK and not (e.dst in modules() and loads_heavy(e.dst))]
    assert not bad, _report(f"function-level imports of modules other than {', '.join(sorted(LAZY_OK))}", bad)


def test_import_placement_loads_no_heavy_package() -> None:
    """``import placement`` stays fast: no solver engine, JIT compiler, GPU or cluster library."""
    code = ("import sys, placement; print(' '.join(sorted(m for m in sys.modules if m.partition('.')[0] in "
            f"{set(HEAVY)!r})))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=ROOT).stdout.split()
    assert not loaded, f"`import placement` loads {', '.join(loaded)}"
