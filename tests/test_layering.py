"""The architecture, checked: every import in ``src/tank`` (inside functions and under
``TYPE_CHECKING`` too) goes down the layers, and no module imports itself back through others.

The layers, lowest first (docs/design.md draws them). A module may import from its own layer and
below; an import of a higher layer is a back-edge. Same-layer imports are allowed only while they
form no cycle. In the spirit of go-containerregistry's ``depcheck_test.go``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: module or package prefix → layer; the longest matching prefix wins
LAYERS: dict[str, int] = {
    "tank.errors": 0,
    "tank._version": 0,
    "tank._fs": 1,
    "tank._json": 1,
    "tank._cancel": 1,
    "tank.reference": 1,
    "tank.digest": 1,
    "tank.platform": 1,
    "tank.mediatypes": 1,
    "tank.image": 2,
    "tank.retry": 3,
    "tank.transport": 4,
    "tank.responses": 4,
    "tank.auth": 5,
    "tank.config": 6,
    "tank.registry": 7,
    "tank.store": 7,
    "tank.layers": 7,
    "tank.outputs": 8,
    "tank.inside": 8,
    "tank.policy": 8,
    "tank._pull": 9,
    "tank._inspect": 9,
    "tank._unpack": 9,
    "tank._inside": 9,
    "tank._copy": 9,
    "tank._sources": 9,
    "tank._sync": 9,
    "tank._artifact": 9,
    "tank._fetch": 9,
    "tank._attach": 9,
    "tank": 10,  # the package's __init__: the public names
    "tank.aio": 11,
    "tank.cli": 12,
    "tank.__main__": 12,
    "tank.testing": 13,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "tank").rglob("*.py"))}


def layer_of(module: str) -> int:
    best, length = None, -1
    for prefix, layer in LAYERS.items():
        covers = module == prefix or (prefix != "tank" and module.startswith(prefix + "."))
        if covers and len(prefix) > length:
            best, length = layer, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                out.update(id(n) for n in ast.walk(child))
    return out


def _imports(
    module: str, path: Path, known: dict[str, Path], *, type_only: bool = True
) -> Iterator[tuple[str, int]]:
    """Every tank module ``module`` imports, with the line: at the top, in functions, anywhere
    (and under ``TYPE_CHECKING`` unless ``type_only`` is false)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    skip = set() if type_only else _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tank" or alias.name.startswith("tank."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base != "tank" and not base.startswith("tank."):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in known else base), node.lineno


def _graph(*, type_only: bool = True) -> dict[str, set[str]]:
    known = _modules()
    return {
        name: {
            target for target, _ in _imports(name, path, known, type_only=type_only)
            if target != name
        }
        for name, path in known.items()
    }


def test_every_module_has_a_layer() -> None:
    for name in _modules():
        layer_of(name)


def test_no_import_goes_up_a_layer() -> None:
    known = _modules()
    back_edges = []
    for name, path in known.items():
        for target, line in _imports(name, path, known):
            if target != name and layer_of(target) > layer_of(name):
                back_edges.append(
                    f"{path.relative_to(SRC)}:{line}: {name} (layer {layer_of(name)}) imports "
                    f"{target} (layer {layer_of(target)})"
                )
    assert not back_edges, "\n".join(back_edges)


def test_no_import_cycle() -> None:
    """No cycle among the imports that run (``TYPE_CHECKING`` ones only name types; they still
    obey the layers, above)."""
    graph = _graph(type_only=False)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" ↔ ".join(c) for c in cycles)


def test_the_library_never_imports_the_testing_kit_or_the_cli() -> None:
    graph = _graph()
    for name, targets in graph.items():
        if name.startswith(("tank.testing", "tank.cli", "tank.__main__")):
            continue
        bad = sorted(t for t in targets if t.startswith(("tank.testing", "tank.cli")))
        assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tank.store.content import Store\n", "tank.store.content"),
        ("from tank import errors\n", "tank.errors"),
        ("import tank.registry\n", "tank.registry"),
        ("def f():\n    from tank.outputs import layout\n", "tank.outputs.layout"),
        ("from . import content\n", "tank.store.content"),
    ],
)
def test_the_checker_sees_every_kind_of_import(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = tmp_path / "__init__.py"
    path.write_text(source)
    known = _modules()
    assert [t for t, _ in _imports("tank.store", path, known)] == [expected]


#: "no module over about 700 lines; no function over about 120 lines outside tests"
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120


def test_modules_and_functions_stay_small() -> None:
    """A newcomer reads any module in one sitting and any function on one screen or two."""
    too_long = []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)
