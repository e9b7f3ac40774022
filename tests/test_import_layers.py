"""isscli's import graph, read from the source: no import cycles, the layers, no module over 400 lines.

Every ``import``/``from … import`` of an isscli module in every ``isscli/**/*.py`` is an edge, at module level and
inside functions alike (a function-level import that patches a cycle is still a cycle); only the imports under
``if TYPE_CHECKING:`` are left out, as they never run. An import names the module it loads: ``from isscli.iss.spec
import GroupSpec`` is an edge to ``isscli.iss.spec`` (a package's ``__init__`` is a module of its own), ``from
isscli import nn`` one to ``isscli.nn``; the parents a dotted import initialises on the way are not edges (every
package would otherwise be in a cycle with its own ``__init__``). Imports by string (``importlib``, the lazy
names of ``isscli/__init__.py``, the old paths of ``isscli/moved.py``) are not in the graph.

Where a rule does not hold yet, its test is an expected failure that lists today's offenders (strict: it fails as
soon as the rule holds, so that the mark goes), and a second test keeps the list from growing.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "isscli"
MAX_LINES = 400

#: Modules the command line may import below :mod:`isscli.api` because they only carry out what it shows or
#: writes: the progress events it renders, the atomic writing of its output files and their JSON (NaN as null).
RENDERING = {"isscli.observer", "isscli.io.atomic", "isscli.io.jsonfile"}

#: Today's import cycles (the modules of each strongly connected component).
KNOWN_CYCLES: list[set[str]] = []

#: The layers, lowest first: a module imports only modules of its own layer or of the layers below (and the package
#: root, ``isscli``, for its version). The ISS method sits on the models it prunes; a user's live module (``live``)
#: on the method; running (``runtime``: timing, export, quantization) on both; learning (``learn``, the loop of
#: your own included) on all of these, as its size targets are measured by the runtime; the API on everything;
#: sweeps on the API; the command line on top.
LAYERS = [
    ("base", ("isscli.io", "isscli.lazy", "isscli.moved", "isscli.observer")),
    ("data", ("isscli.data",)),
    ("models", ("isscli.models",)),
    ("nn", ("isscli.nn",)),
    ("iss", ("isscli.iss",)),
    ("live", ("isscli.live",)),
    ("runtime", ("isscli.runtime",)),
    ("learn", ("isscli.learn",)),
    ("api", ("isscli.api",)),
    ("sweeping", ("isscli.sweeping",)),
    ("cli", ("isscli.cli", "isscli.__main__")),
]

#: Today's imports across the layers, by rule.
KNOWN_VIOLATIONS: dict[str, set[str]] = {"layers": set(), "cli": set()}

#: Today's modules over :data:`MAX_LINES` lines.
KNOWN_LONG: set[str] = set()


# -- the graph -------------------------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, except the body of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        if isinstance(child, ast.If) and is_type_checking(child.test):
            for branch in child.orelse:
                yield from import_nodes(ast.Module(body=[branch], type_ignores=[]))
        else:
            yield from import_nodes(child)


def loaded_modules(name: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The dotted names an import statement loads (``from m import x``: ``m.x`` where that is a module, else ``m``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    source = node.module or ""
    if node.level:
        package = name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        source = ".".join([*base, *([node.module] if node.module else [])])
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        yield submodule if submodule in modules() else source


def owning_module(dotted: str) -> str | None:
    """The isscli module a dotted name is, or lies in (None outside isscli)."""
    while dotted and dotted not in modules():
        dotted = dotted.rpartition(".")[0]
    return dotted or None


@cache
def import_graph() -> dict[str, dict[str, int]]:
    """Module → the isscli modules it imports, each with the line of its first import."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules().items():
        edges = graph.setdefault(name, {})
        for node in import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for loaded in loaded_modules(name, node):
                target = owning_module(loaded)
                if target is not None and target != name:
                    edges.setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif target not in index:
                index[target] = low[target] = len(index)
                stack.append(target)
                work.append((target, iter(sorted(graph[target]))))
            elif target in stack:
                low[node] = min(low[node], index[target])
    return found


def describe(component: set[str]) -> str:
    """The imports inside one cycle, with where each is made."""
    graph = import_graph()
    return "; ".join(f"{source}:{graph[source][target]} → {target}" for source in sorted(component)
                     for target in sorted(graph[source]) if target in component)


# -- the layers ------------------------------------------------------------------------------------------------


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def is_library(name: str) -> bool:
    return not within(name, "isscli.cli") and name != "isscli.__main__"


def layer(name: str) -> int:
    """The layer of module ``name`` (its index in :data:`LAYERS`); the package root is above them all."""
    found = [index for index, (_, packages) in enumerate(LAYERS) if any(within(name, p) for p in packages)]
    assert name == "isscli" or len(found) == 1, f"{name} belongs to no layer of LAYERS: add it"
    return found[0] if found else len(LAYERS)


def allowed(rule: str, source: str, target: str) -> bool:
    """Whether ``source`` may import ``target`` under ``rule`` (a rule binds only the modules it is about)."""
    if rule == "layers":
        return target == "isscli" or layer(target) <= layer(source)
    if rule == "library":
        return not is_library(source) or not within(target, "isscli.cli")
    assert rule == "cli"
    return (not within(source, "isscli.cli") or within(target, "isscli.cli") or within(target, "isscli.api")
            or target in {"isscli", "isscli.io.errors", *RENDERING})


def violations(rule: str) -> set[str]:
    return {f"{source} → {target}" for source, targets in import_graph().items() for target in targets
            if not allowed(rule, source, target)}


def long_modules() -> set[str]:
    return {str(path.relative_to(ROOT)) for path in modules().values()
            if len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES}


def xfail_while(known: Collection[str], what: str) -> pytest.MarkDecorator:
    """Strictly expected to fail while ``known`` lists offenders: it passes, and so fails, once they are gone."""
    return pytest.mark.xfail(bool(known), reason=f"{what} today: {'; '.join(sorted(known))}", strict=True)


# -- the tests -------------------------------------------------------------------------------------------------


def test_the_graph_sees_imports_at_every_depth_and_skips_type_checking_ones() -> None:
    graph = import_graph()
    assert "isscli.live.model" in graph["isscli.live.trace"]  # module level
    assert "isscli.nn" in graph["isscli.live.model"]  # `from isscli import nn as drop_in`: the subpackage
    assert "isscli.learn.loop" not in graph["isscli.learn.your_loop.loop"]  # only under `if TYPE_CHECKING:`
    assert len(graph) == len(list(PACKAGE.rglob("*.py")))


@xfail_while([", ".join(sorted(component)) for component in KNOWN_CYCLES], "import cycles")
def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "\n".join(describe(component) for component in found)


def test_no_import_cycle_beyond_the_known_ones() -> None:
    new = [component for component in cycles(import_graph()) if not any(component <= k for k in KNOWN_CYCLES)]
    assert not new, "\n".join(describe(component) for component in new)


def test_the_library_never_imports_the_cli() -> None:
    assert not violations("library")


@pytest.mark.parametrize("rule", [
    pytest.param("layers", marks=xfail_while(KNOWN_VIOLATIONS["layers"], "imports up the layers")),
    pytest.param("cli", marks=xfail_while(KNOWN_VIOLATIONS["cli"], "isscli.cli imports below isscli.api")),
])
def test_each_layer_imports_only_the_layers_below_it(rule: str) -> None:
    """Every module imports its own layer and those below (:data:`LAYERS`); the command line reaches the library
    through isscli.api, isscli itself, isscli.io.errors and the rendering modules."""
    assert not violations(rule)


def test_every_module_has_a_layer_and_the_layers_are_the_packages() -> None:
    assert all(layer(name) < len(LAYERS) for name in modules() if name != "isscli")
    assert layer("isscli.models.checkpoint") < layer("isscli.iss.surgery") < layer("isscli.learn.loop") < \
        layer("isscli.api.runs") < layer("isscli.cli.main")


@pytest.mark.parametrize("rule", ["layers", "cli"])
def test_no_layer_violation_beyond_the_known_ones(rule: str) -> None:
    assert not violations(rule) - KNOWN_VIOLATIONS[rule]


@xfail_while(KNOWN_LONG, f"modules over {MAX_LINES} lines")
def test_no_module_over_400_lines() -> None:
    assert not long_modules()


def test_no_module_over_400_lines_beyond_the_known_ones() -> None:
    assert not long_modules() - KNOWN_LONG
