"""galrec's package layout: packages by concept, in layers, with no import cycle.

The import graph is read from the source with ``ast``. Each import of a galrec module is
counted by kind: ``module`` (runs when the importer is imported: top level, class bodies),
``typing`` (under ``if TYPE_CHECKING:``) and ``function`` (inside a function: a lazy import,
which postpones a cycle rather than removing it). Importing ``galrec.a.b`` also runs
``galrec/a/__init__.py``, so it counts as importing the package ``galrec.a`` too, unless the
importer is inside ``galrec.a``.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "galrec"

#: The packages and top-level modules, lowest layer first: each may import only from the
#: layers below it (docs/architecture.md, "Package layout"). ``galrec`` itself (the public
#: API's ``__init__``, which imports ``api`` on first use) is outside the layers.
LAYERS: list[set[str]] = [
    {"_core", "_optional", "config", "progress"},
    {"data", "graph", "evaluation"},
    {"baselines"},
    {"model"},
    {"training"},
    {"experiments"},
    {"api"},
    {"export"},
    {"cli"},
    {"__main__"},
]

#: Top-level modules (python/galrec/*.py); anything else belongs in a package.
TOP_LEVEL_MODULES = {"__init__", "__main__", "_optional", "api", "config", "export", "progress"}

KINDS = ("module", "typing", "function")

Graph = dict[str, dict[str, dict[str, str]]]  # module -> imported module -> kind -> "path:line"


def modules_of(package: Path) -> dict[str, Path | None]:
    """Dotted name -> source file of every module of ``package`` (``None``: compiled)."""
    modules: dict[str, Path | None] = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for stub in package.rglob("*.pyi"):
        parts = stub.relative_to(package.parent).with_suffix("").parts
        modules.setdefault(".".join(parts), None)
    return modules


def _known(name: str, modules: dict[str, Path | None]) -> str | None:
    """``name`` or its nearest enclosing module that exists."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement of a module with its kind."""
    found: list[tuple[ast.Import | ast.ImportFrom, str]] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = kind
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                inner = "function"
            elif (
                isinstance(child, ast.If)
                and kind == "module"
                and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                for statement in child.body:
                    visit_statement(statement, "typing")
                for statement in child.orelse:
                    visit_statement(statement, "module")
                continue
            visit_statement(child, inner)

    def visit_statement(node: ast.AST, kind: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, kind))
        else:
            visit(node, kind)

    visit(tree, "module")
    return found


def import_graph(package: Path) -> Graph:
    """Every import between the modules of ``package``, by kind."""
    modules = modules_of(package)
    root = package.name
    graph: Graph = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        if path is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node, kind in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = module.split(".")
                    if path.name != "__init__.py":
                        anchor = anchor[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                if target != root and not target.startswith(root + "."):
                    continue
                found = _known(target, modules)
                if found is None:
                    continue
                where = f"{path.relative_to(package.parent)}:{node.lineno}"
                parts = found.split(".")
                implied = [".".join(parts[:k]) for k in range(1, len(parts))]
                for imported in [found, *implied]:
                    inside = module == imported or module.startswith(imported + ".")
                    if imported is not found and inside:
                        continue  # one's own package is already being imported
                    if imported != module and imported in modules:
                        edges.setdefault(imported, {}).setdefault(kind, where)
    return graph


def only(graph: Graph, kinds: tuple[str, ...]) -> Graph:
    """The edges of ``graph`` made by imports of the given kinds."""
    return {
        module: {
            imported: {kind: where for kind, where in by_kind.items() if kind in kinds}
            for imported, by_kind in edges.items()
            if any(kind in kinds for kind in by_kind)
        }
        for module, edges in graph.items()
    }


def count_imports(graph: Graph) -> Counter[str]:
    """How many module -> module edges each kind of import makes."""
    return Counter(kind for edges in graph.values() for by in edges.values() for kind in by)


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one
    module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph.get(node, {}):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return [_cycle_in(graph, set(component), component[0]) for component in components]


def _cycle_in(graph: Graph, members: set[str], start: str) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``members``."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph.get(node, {})):
                if successor not in members:
                    continue
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def describe(graph: Graph, cycle: list[str]) -> str:
    def edge(a: str, b: str) -> str:
        by_kind = graph.get(a, {}).get(b, {})
        return ", ".join(f"{kind} {where}" for kind, where in by_kind.items())

    return "\n    ".join(f"{a} -> {b} ({edge(a, b)})" for a, b in pairwise(cycle))


def unit(module: str) -> str:
    """The package or top-level module that ``module`` belongs to (``galrec`` itself)."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: Graph) -> Graph:
    """The graph between top-level units: the subpackages and top-level modules."""
    units: Graph = {}
    for module, edges in graph.items():
        for imported, by_kind in edges.items():
            a, b = unit(module), unit(imported)
            units.setdefault(a, {})
            units.setdefault(b, {})
            if a != b:
                for kind, where in by_kind.items():
                    units[a].setdefault(b, {}).setdefault(kind, where)
    return units


def layer_violations(units: Graph, root: str = "galrec") -> list[str]:
    """Imports that do not point down the layers, and units placed in no layer."""
    layer = {f"{root}.{name}": level for level, names in enumerate(LAYERS) for name in names}
    problems = [f"{name}: in no layer of LAYERS" for name in units if name not in (root, *layer)]
    for a, edges in sorted(units.items()):
        for b, by_kind in sorted(edges.items()):
            if a == root or b == root or a not in layer or b not in layer:
                continue  # the public API's __init__; units in no layer are reported above
            if layer[b] >= layer[a]:
                where = ", ".join(f"{kind} {at}" for kind, at in by_kind.items())
                problems.append(f"{a} imports {b}, which is not below it ({where})")
    return problems


@pytest.fixture(scope="module")
def graph() -> Graph:
    found = import_graph(PACKAGE)
    assert len(found) > 30, "the package's modules were not found"
    return found


def test_both_kinds_of_import_are_counted(graph: Graph) -> None:
    counts = count_imports(graph)
    assert counts["module"] > 50, counts
    assert counts["function"] > 20, counts


def test_no_cycle_among_module_level_imports(graph: Graph) -> None:
    module_level = only(graph, ("module",))
    found = cycles(module_level)
    assert not found, "module-level import cycles among galrec's modules:\n  " + "\n  ".join(
        describe(module_level, cycle) for cycle in found
    )


def test_no_cycle_counting_every_import(graph: Graph) -> None:
    """Function-local and TYPE_CHECKING imports too: a lazy import postpones a cycle."""
    found = cycles(graph)
    assert not found, "import cycles among galrec's modules:\n  " + "\n  ".join(
        describe(graph, cycle) for cycle in found
    )


def test_packages_form_layers(graph: Graph) -> None:
    units = package_graph(graph)
    found = cycles(units)
    assert not found, "galrec's packages import each other in a circle:\n  " + "\n  ".join(
        describe(units, cycle) for cycle in found
    )
    problems = layer_violations(units)
    assert not problems, "\n".join(problems)


def test_every_package_has_a_docstring() -> None:
    for init in sorted(PACKAGE.rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"), str(init))
        assert (ast.get_docstring(tree) or "").strip(), f"{init}: no docstring"


def test_no_module_outside_the_packages() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    assert modules <= TOP_LEVEL_MODULES, (
        f"top-level modules {sorted(modules - TOP_LEVEL_MODULES)}: "
        "put them in a package (docs/architecture.md, Package layout)"
    )
    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    placed = {name for names in LAYERS for name in names}
    assert packages <= placed, f"packages {sorted(packages - placed)} are in no layer"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.sub.b import g\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    (package / "c.py").write_text("from . import a\nclass C:\n    from pkg import e\n")
    (package / "e.py").write_text("")
    (package / "sub" / "d.py").write_text("from .b import x\n")
    graph = import_graph(package)
    assert graph["pkg.c"] == {"pkg.a": {"module": "pkg/c.py:1"}, "pkg.e": {"module": "pkg/c.py:3"}}
    assert graph["pkg.a"]["pkg.sub.b"] == {"function": "pkg/a.py:2"}
    assert set(graph["pkg.a"]) == {"pkg.sub.b", "pkg.sub"}  # pkg/sub/__init__.py runs too
    assert graph["pkg.sub.b"] == {"pkg.a": {"typing": "pkg/sub/b.py:3"}}
    assert set(graph["pkg.sub.d"]) == {"pkg.sub.b"}  # its own package does not count
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.a"]]
    assert cycles(only(graph, ("module",))) == []
    assert count_imports(graph) == {"module": 3, "function": 2, "typing": 1}


def test_entry_points_resolve() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    pyproject = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert scripts, "no console script"
    for target in scripts.values():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), target
    assert callable(importlib.import_module("galrec.__main__").main)


@pytest.mark.parametrize("name", ["BipartiteGraph", "Recommender", "load", "prepare", "train"])
def test_public_api_resolves(name: str) -> None:
    import galrec

    assert name in galrec.__all__
    assert getattr(galrec, name) is not None
