"""The package's import structure: no cycles, lazy imports only at the top.

Every ``import kprune…`` / ``from kprune… import`` in the package is read
from the source (module level and inside functions alike), so a cycle hidden
by a function-level import is found too. See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
import re
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
        _module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if STANDALONE not in path.parents
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
        ("kprune.errors", False),
        ("kprune.graph", True),
        ("kprune.surgery", True),
    ]


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


# --- the layer table of docs/ARCHITECTURE.md -------------------------------------
ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"


def _layer_table() -> list[tuple[str, list[str]]]:
    """(layer, its entries: `module.py` files and `package/` folders), top layer first."""
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers of modules", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return [
        (cells[0], re.findall(r"`([\w./]+(?:\.py|/))`", cells[1]))
        for cells in ([cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:])
    ]


def _layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """The index of the layer whose entry holds ``module`` (the longest entry wins)."""
    path = module.replace(".", "/").removeprefix("kprune").lstrip("/") or "__init__"
    best = None
    for index, (_, entries) in enumerate(table):
        for entry in entries:
            hit = path + ".py" == entry or (entry.endswith("/") and (path + "/").startswith(entry))
            hit = hit or (entry.endswith("/") and path == entry.rstrip("/"))  # the package's __init__
            if hit and (best is None or len(entry) > best[1]):
                best = (index, len(entry))
    return None if best is None else best[0]


def test_every_module_has_a_layer_in_architecture_md():
    table = _layer_table()
    assert len(table) >= 8 and all(entries for _, entries in table), table
    missing = [name for name in _modules() if _layer_of(name, table) is None]
    assert missing == [], f"modules that docs/ARCHITECTURE.md's layer table does not place: {missing}"


def test_imports_only_point_down_the_layer_table():
    table = _layer_table()
    edges, _ = _graph()
    layer = {
        name: _layer_of(name, table) for name in {*edges, *(t for targets in edges.values() for t in targets)}
    }
    upward = [
        f"{source} ({table[layer[source]][0]}) imports {target} ({table[layer[target]][0]})"
        for source, targets in edges.items()
        for target in targets
        if None not in (layer[source], layer[target]) and layer[target] < layer[source]
    ]
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    table = [("top", ["runs.py"]), ("bottom", ["files.py", "graph/"])]
    assert _layer_of("kprune.runs", table) == 0 and _layer_of("kprune.graph.flatten", table) == 1
    assert _layer_of("kprune.graph", table) == 1 and _layer_of("kprune.surgery", table) is None


# --- the one door to Keras internals ----------------------------------------------
KERAS_INTERNALS = PACKAGE / "keras_internals.py"
PRIVATE_NAMES = {
    "_keras_history",
    "_inbound_nodes",
    "_outbound_nodes",
    "_nodes_by_depth",
    "_compile_config",
    "_inputs_struct",
    "_outputs_struct",
    "_functional",
    "fill_in",
}


def _keras_internals_used(path: Path) -> list[tuple[str, int]]:
    """(what, line) for each ``keras.src`` import and private Keras name (an attribute,
    or a string as ``getattr`` takes it) in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("keras.src")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_NAMES:
            found.append((node.attr, node.lineno))
        elif isinstance(node, ast.Constant) and node.value in PRIVATE_NAMES:
            found.append((repr(node.value), node.lineno))
    return sorted(found, key=lambda item: item[1])


def test_only_keras_internals_touches_keras_private_parts():
    users = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in _modules().values()
        if path != KERAS_INTERNALS
        for what, line in _keras_internals_used(path)
    ]
    assert users == [], "use kprune.keras_internals instead"
    assert _keras_internals_used(KERAS_INTERNALS)  # the finder sees what the door holds


def test_the_internals_finder_sees_each_kind_of_use(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "from keras.src.ops import nn\nimport keras.src.utils\n"
        "x = t._keras_history\ny = getattr(m, '_compile_config', None)\n"
    )
    assert _keras_internals_used(source) == [
        ("keras.src.ops", 1),
        ("keras.src.utils", 2),
        ("_keras_history", 3),
        ("'_compile_config'", 4),
    ]
