"""No import cycle among tgo's modules, counting imports inside functions and package re-exports
(issues 17 and 28).

The graph is read from the source with ``ast``: an edge a -> b for every ``import b`` /
``from b import ...`` anywhere in module a, at module level or inside a function (a
``from package import name`` that names a submodule is an edge to that submodule). A package's
``__init__`` that re-exports its submodules has an edge to each of them: importing a name from
the package runs those submodules, so a module that imports the package depends on them all
(issue 28: ``capture.transfer -> capturers -> capturers.base -> capture.losses -> capture.transfer``
hid behind such a re-export).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tgo_store", "tgo_analysis", "tgo_app")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from package import submodule`` runs the submodule; any other name is the package's
                submodules = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t if t in modules else node.module for t in submodules]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if not target or target == name:
                    continue
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_module_graph_has_no_cycle_lazy_imports_included() -> None:
    cycle = _cycle(_graph(_modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_a_package_re_export_is_an_edge() -> None:
    graph = _graph({name: path for name, path in _modules().items() if name.startswith("tgo_store.capturers")})
    assert "tgo_store.capturers.base" in graph["tgo_store.capturers"]


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
