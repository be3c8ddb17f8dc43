"""The package's layers, checked on the import graph of its source (every ``import``, at module level
or inside a function): no module imports a layer above its own, nothing imports the test support,
and no two modules import each other, directly or through others.

Layers, lowest first (a module may import its own layer and those below):

    inputs, models (+ _version)                       cells, captions and checkpoints
    scorers, visa                                     the scorer contract and every scorer
    engines, training                                 what drives scorers; judge training beside them
    hub, reports                                      publishing and showing what the engines recorded
    cli, the package root                             the command line and the public facade
    testing                                           test support: imported by nothing in the package
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_vlm_filter"
LAYERS = {
    "_version": 0, "inputs": 0, "models": 1,
    "scorers": 2, "visa": 2,
    "engines": 3, "training": 3,
    "hub": 4, "reports": 4,
    "cli": 5, "__init__": 5, "__main__": 5,
    "testing": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement of ``module`` loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - node.level + 1]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in MODULES else prefix for alias in node.names]
    found = []
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("hf_vlm_filter"):
            found.append(name)
    return found


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if _under_type_checking(tree, node):
                    continue
                targets.update(resolve(module, path.name == "__init__.py", node))
        graph[module] = targets - {module}
    return graph


def _under_type_checking(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            if any(child is target for child in ast.walk(node)):
                return True
    return False


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


GRAPH = imports()


def test_every_module_has_a_layer():
    assert all(len(m.split(".")) == 1 or m.split(".")[1] in LAYERS for m in MODULES), sorted(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    upward = sorted(target for target in GRAPH[module] if layer(target) > layer(module))
    assert upward == [], f"{module} (layer {layer(module)}) imports {upward}"


def test_nothing_in_the_package_imports_the_test_support():
    importers = sorted(module for module, targets in GRAPH.items()
                       if not module.startswith("hf_vlm_filter.testing") and any(
                           t.startswith("hf_vlm_filter.testing") for t in targets))
    assert importers == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over module -> module edges. A package's
    ``__init__`` re-exporting its own submodules is not a cycle unless a submodule imports the
    ``__init__`` back."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert cycles == []


def test_the_graph_sees_module_level_and_function_level_imports():
    """Guards the checks above against an empty graph: known edges of each kind are found."""
    assert "hf_vlm_filter.scorers.config" in GRAPH["hf_vlm_filter.engines.streaming.job"]  # module level, relative
    assert "hf_vlm_filter.engines.in_memory" in GRAPH["hf_vlm_filter.cli.score_filter"]  # inside a function
    assert "hf_vlm_filter.inputs" in GRAPH["hf_vlm_filter.scorers.base"]  # a package's __init__
    assert "hf_vlm_filter.engines.streaming" in GRAPH["hf_vlm_filter.hub.job_publishing"]
    assert layer("hf_vlm_filter.hub.cards") > layer("hf_vlm_filter.engines.run_record")
