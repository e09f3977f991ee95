"""Architecture: data flows one way through the layers, and no package imports in a circle.

The layers, lowest first (docs/architecture.md): a module may import its own layer and
the layers below it, never one above.  Route modules (``views.py``, ``*_views.py``) sit
on top of everything: they are where the web and API layers meet each domain.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "voxloop"

LAYERS = (
    "errors",
    "config",
    "store",
    "ingest",
    "understand",
    "detect",
    "analyze",
    "act",
    "assist",
    "pipeline",
    "web",
    # The demo drives the whole product (generate, ingest, stages, loop, monthly report),
    # like the CLI that starts it.
    "demo",
    "api",
    "cli",
)
RANK = {name: i for i, name in enumerate(LAYERS)}

#: Imports up the layers that are allowed for now, as (importing module, imported module).
#: Each one needs a reason; the goal is an empty set.
ALLOWED_BACK_EDGES: frozenset[tuple[str, str]] = frozenset(set())


#: Import circles between modules of one package (function-local imports included) that
#: are allowed for now; the goal is none.
ALLOWED_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    top_level: bool


def _module_name(path: Path) -> str:
    parts = ("voxloop", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str) -> str:
    """Return the deepest existing voxloop module named by a dotted import target."""
    parts = module.split(".")
    while len(parts) > 1:
        base = ROOT.joinpath(*parts[1:])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts)
        parts.pop()
    return "voxloop"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, name: str, is_package: bool) -> Iterator[Edge]:
    """Yield every voxloop import of a module; ``top_level`` when it runs at import time."""
    runtime: set[int] = set()

    def mark(body: list[ast.stmt]) -> None:
        # Statements that run when the module is imported: the body and its if/try blocks,
        # not functions, classes' methods or ``if TYPE_CHECKING`` blocks.
        for stmt in body:
            runtime.add(id(stmt))
            if isinstance(stmt, ast.If):
                if not _is_type_checking(stmt):
                    mark(stmt.body)
                mark(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                for block in (stmt.body, stmt.orelse, stmt.finalbody):
                    mark(block)
                for handler in stmt.handlers:
                    mark(handler.body)

    mark(tree.body)
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # ``from voxloop.analyze import service`` imports the submodule.
            targets = [f"{module}.{alias.name}" for alias in node.names] or [module]
        for target in targets:
            if target == "voxloop" or target.startswith("voxloop."):
                resolved = _resolve(target)
                if resolved != name:
                    yield Edge(name, resolved, node.lineno, id(node) in runtime)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "errors"


def _is_route(module: str) -> bool:
    leaf = module.rsplit(".", 1)[-1]
    return leaf == "views" or leaf.endswith("_views")


def _graph() -> list[Edge]:
    edges: list[Edge] = []
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges.extend(_imports(tree, name, path.name == "__init__.py"))
    return edges


EDGES = _graph()


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert (packages | modules) - set(LAYERS) == set()


def test_no_import_runs_up_the_layers() -> None:
    back = sorted(
        {
            (e.source, e.target, e.line)
            for e in EDGES
            if not _is_route(e.source)
            and RANK[_layer(e.target)] > RANK[_layer(e.source)]
            and (e.source, e.target) not in ALLOWED_BACK_EDGES
        }
    )
    assert back == [], "imports up the layers (move the shared code down or pass it in):\n" + (
        "\n".join(f"  {s}:{line} imports {t}" for s, t, line in back)
    )


def test_allowed_back_edges_still_exist() -> None:
    # An exception that is no longer needed must be struck off the list.
    present = {(e.source, e.target) for e in EDGES}
    assert present >= ALLOWED_BACK_EDGES


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan 1972)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_at_module_level() -> None:
    # Package ``__init__`` modules are skipped as targets: importing ``a.b`` always runs
    # ``a/__init__``, which is not a dependency the code chose.
    graph: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        if e.top_level and not ROOT.joinpath(*e.target.split(".")[1:], "__init__.py").is_file():
            graph[e.source].add(e.target)
    assert _cycles(graph) == []


def test_no_import_cycles_inside_a_package() -> None:
    # Function-local imports too: a circle inside a package (a registry importing the
    # models that import it) is what the models' own registration replaces.
    graph: dict[str, set[str]] = defaultdict(set)
    for e in EDGES:
        same_package = e.source.rsplit(".", 1)[0] == e.target.rsplit(".", 1)[0]
        if same_package and not _is_route(e.source):
            graph[e.source].add(e.target)
    cycles = {frozenset(c) for c in _cycles(graph)}
    assert cycles - ALLOWED_CYCLES == set()
    assert cycles >= ALLOWED_CYCLES  # one no longer there must be struck off the list


def test_the_checker_sees_a_back_edge() -> None:
    tree = ast.parse("def f():\n    from voxloop.act.service import audit\n")
    (edge,) = _imports(tree, "voxloop.detect.notify", is_package=False)
    assert edge == Edge("voxloop.detect.notify", "voxloop.act.service", 2, top_level=False)
    assert RANK[_layer(edge.target)] > RANK[_layer(edge.source)]
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
