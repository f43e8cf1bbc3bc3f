"""The layers hold: the core imports nothing above it, stages only the core, no cycles.

Read from the source (every ``import``, at module level or inside a
function), so a lazy import cannot hide an arrow that runs the wrong way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = "iotpipe"
STAGES = {"ingest", "flows", "sinks", "simulators"}
# What each top-level package may import besides itself (third-party is always fine).
ALLOWED: dict[str, set[str]] = {
    CORE: set(),
    **{stage: {CORE} for stage in STAGES},
    "flows": {CORE, "sinks"},  # the flows wire in their sinks
    "dashboard": {CORE, *STAGES},  # pipeline health is handed in (``create_app``)
    "bench": {CORE, *STAGES, "dashboard"},
    "ops": {CORE, *STAGES, "dashboard", "bench"},  # the CLI is the composition root
}


def modules() -> Iterator[tuple[str, Path]]:
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports(name: str, path: Path) -> set[str]:
    """Local modules ``name`` imports (absolute names; ``from x import y`` may name a module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m.split(".")[0] in ALLOWED}


def graph() -> dict[str, set[str]]:
    known = dict(modules())
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        edges[name] = {m for m in imports(name, path) if m in known and m != name}
    return edges


def test_each_package_imports_only_the_layers_below_it() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        for target in targets
        if (top := target.split(".")[0]) != name.split(".")[0]
        and top not in ALLOWED[name.split(".")[0]]
    )
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def without_packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop arrows into a package's ``__init__`` from its own modules (a re-export, not a cycle)."""
    return {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in edges.items()
    }


def test_no_import_cycles_between_modules() -> None:
    found = cycles(without_packages(graph()))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_no_import_cycles_between_packages() -> None:
    tops: dict[str, set[str]] = {}
    for name, targets in graph().items():
        top = name.split(".")[0]
        tops.setdefault(top, set()).update(t.split(".")[0] for t in targets)
    for top, targets in tops.items():
        targets.discard(top)
    assert not cycles(tops), cycles(tops)


def test_the_check_sees_a_wrong_arrow_and_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    edges = graph()
    assert "iotpipe.settings" in edges["ops.cli.common"]  # it reads lazy and module-level imports
