"""The documented layer order, enforced: a module imports only from its own layer or earlier ones,
and no two modules import each other, directly or around a loop.

Every import is read with :mod:`ast` (module level, inside functions, under ``TYPE_CHECKING``).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: docs/architecture.md: ``io -> data -> models -> inference -> evaluation -> training -> routing
#: -> web -> cli``, with ``vocab`` and ``errors`` below all of them.
LAYERS = ["errors", "vocab", "io", "data", "models", "inference", "evaluation", "training",
          "routing", "web", "cli"]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "radroute").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The radroute modules ``name`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t.startswith("radroute")}
    found.discard(name)
    return {t for t in found if t in known} | {t.rpartition(".")[0] for t in found if t not in known
                                               and t.rpartition(".")[0] in known}


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_every_subpackage_has_a_layer():
    top = {n.split(".")[1] for n in GRAPH if n.count(".") >= 1}
    assert top <= set(LAYERS), f"not in the layer order: {sorted(top - set(LAYERS))}"


@pytest.mark.parametrize("name", sorted(n for n in GRAPH if layer(n) is not None))
def test_imports_only_own_or_earlier_layers(name):
    later = sorted(t for t in GRAPH[name] if layer(t) is not None and layer(t) > layer(name))
    assert not later, f"{name} ({LAYERS[layer(name)]}) imports later layers: {later}"


def test_no_import_cycles():
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read():
    # the checker itself: known edges are found (a function-level import and a TYPE_CHECKING one)
    assert "radroute.io.reader" in GRAPH["radroute.io"]
    assert any(t.startswith("radroute.io") for t in GRAPH["radroute.data.preprocess"])
