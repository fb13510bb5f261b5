"""The package's import structure: no cycles, lazy imports only at the top.

Every ``import kprune…`` / ``from kprune… import`` in the package is read
from the source (module level and inside functions alike), so a cycle hidden
by a function-level import is found too. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import kprune

PACKAGE = Path(kprune.__file__).resolve().parent
# Programs copied into deployment bundles: standalone, they never import kprune.
STANDALONE = PACKAGE / "export" / "templates"
# The only modules that may import kprune inside functions: the lazy public
# API and the CLI, which keep `import kprune` and `kprune --help` fast.
TOP_LAYER = ("kprune", "kprune.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for path in sorted(PACKAGE.rglob("*.py"))
        if STANDALONE not in path.parents
    }


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, bool]]:
    """(imported kprune module, whether the import is inside a function)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # `from kprune.a import b` imports module kprune.a.b when there is one.
                names = [
                    f"{child.module}.{alias.name}"
                    if f"{child.module}.{alias.name}" in modules
                    else child.module
                    for alias in child.names
                ]
            for name in names:
                if name == "kprune" or name.startswith("kprune."):
                    found.append((name, nested))
            visit(child, nested)

    visit(tree, False)
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    modules = _modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    lazy: dict[str, list[str]] = {}
    for name, path in modules.items():
        for target, in_function in _imports(path, modules):
            if target != name:
                edges[name].add(target)
            if in_function:
                lazy.setdefault(name, []).append(target)
    return edges, lazy


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in edges:
        if node not in index:
            connect(node)
    return components


def test_cycle_finder_finds_a_cycle_through_three_modules():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_import_finder_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "from kprune.errors import KpruneError\n"
        "def f():\n    from kprune.graph import analyze\n    import kprune.surgery\n"
    )
    modules = _modules()
    assert _imports(source, modules) == [
        ("kprune.errors", False), ("kprune.graph", True), ("kprune.surgery", True),
    ]  # fmt: skip


def test_the_package_has_no_import_cycle():
    edges, _ = _graph()
    assert len(edges) > 40  # the walker really read the package
    assert _cycles(edges) == []


def test_only_the_top_layer_imports_kprune_inside_functions():
    _, lazy = _graph()
    outside = {
        module: targets
        for module, targets in lazy.items()
        if module not in TOP_LAYER and not module.startswith("kprune.cli.")
    }
    assert outside == {}
