"""The package's layers: which of its units may import which (imports inside functions included).

Read from the source with `ast`, nothing is imported. The lowest layers must not reach up, and no
unit may depend on itself through others (a cycle of any length fails here).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nas_agent"

# Units that hold the OS walls, data, task facts and plain values: they import nothing above them.
FOUNDATION = {"candidate": {"errors"}, "tasks": {"space"}, "sandbox": {"errors"}, "fractals": {"errors", "device", "config", "data"}, "data": {"errors"},
              "config": {"errors"}, "errors": set(), "device": set(), "space": {"errors", "candidate"}}


def _unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def import_graph() -> dict[str, set[str]]:
    """unit -> the other units of nas_agent it imports anywhere in its code."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
                if node.module == "nas_agent":  # from nas_agent import cli
                    modules = [f"nas_agent.{alias.name}" for alias in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "nas_agent" and len(parts) > 1 and parts[1] != source:
                    edges[source].add(parts[1])
    return edges


def test_the_foundation_imports_nothing_above_it():
    graph = import_graph()
    for unit, allowed in FOUNDATION.items():
        assert graph.get(unit, set()) <= allowed, (unit, sorted(graph.get(unit, set()) - allowed))


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph.get(todo.pop(), set()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_no_unit_depends_on_itself_through_others():
    """Zero cycles, of any length: the units form layers (the task families' two-way links are gone)."""
    graph = import_graph()
    cycles = sorted(unit for unit in graph if unit in _reachable(graph, unit))
    assert not cycles, {unit: sorted(graph[unit] & {u for u in graph if unit in _reachable(graph, u)}) for unit in cycles}
    # The report reads the catalog's views and nothing else of the loop.
    assert graph["report"] <= {"catalog", "config", "errors"}, sorted(graph["report"])
    # The cli is the top: nothing imports it.
    assert not [unit for unit, targets in graph.items() if "cli" in targets and unit != "cli"]


# The layers, top to bottom (README "How it works"): a unit may import units of its own layer or below.
LAYERS = (
    {"cli"},
    {"search", "report", "export", "export_standalone", "bench"},
    {"llm", "validate", "train", "catalog"},
    {"tasks", "space", "sandbox", "fractals", "data", "device"},
    {"candidate", "config", "errors"},
)


def test_every_import_points_down_the_layers():
    rank = {unit: depth for depth, layer in enumerate(LAYERS) for unit in layer}
    graph = import_graph()
    assert set(graph) <= set(rank), sorted(set(graph) - set(rank))   # a new unit must be given its layer
    upward = sorted((unit, target) for unit, targets in graph.items() for target in targets
                    if rank[target] < rank[unit])
    assert not upward, upward
    # The llm layer neither validates nor trains: the search loop does both with what it proposes.
    assert not graph["llm"] & {"validate", "train", "search"}, sorted(graph["llm"])


def test_no_private_name_is_imported_across_units():
    crossing = []
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nas_agent."):
                if node.module.split(".")[1] == unit:
                    continue
                crossing += [f"{path.relative_to(PACKAGE)}: {node.module}.{alias.name}" for alias in node.names
                             if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert not crossing, crossing
