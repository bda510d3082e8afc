"""The shape of clp_core: no import circle, modules of a readable size, one plugin API."""

from __future__ import annotations

import ast
from pathlib import Path

import clp_core

ROOT = Path(clp_core.__file__).parent
MAX_LINES = 420  # "about 400": a module past this wants splitting by responsibility


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """Every import inside clp_core (function-level ones too; ``if TYPE_CHECKING`` ones not),
    module -> imported clp_core modules."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skipped:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("clp_core") and target != name:
                    graph[name].add(target)
    return graph


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of imports, counting that importing a module first imports its packages."""
    edges = {m: set(targets) for m, targets in graph.items()}
    for module, targets in graph.items():
        for target in targets:
            edges[module].update(p for p in _parents(target) if p in graph and p != module
                                 and not module.startswith(p + "."))
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in colour and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = 2
        return None

    for module in sorted(edges):
        if module not in colour and (found := visit(module)):
            return found
    return None


def unit(module: str) -> str:
    """The part of clp_core a module belongs to: its subpackage (``clp_core.storage``), or itself."""
    parts = module.split(".")
    return ".".join(parts[:2])


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Imports between the parts of clp_core; the root package, the facade, is left out."""
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        if module == "clp_core":
            continue
        units.setdefault(unit(module), set()).update(
            unit(t) for t in targets if t != "clp_core" and unit(t) != unit(module))
    return units


def test_no_import_circle_between_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_import_circle_between_the_parts_of_clp_core() -> None:
    cycle = find_cycle(unit_graph(import_graph()))
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_of_clp_core_is_over_about_400_lines() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in ROOT.rglob("*.py")}
    long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not long, f"split by responsibility: {long}"
