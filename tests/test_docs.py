"""The documentation agrees with the code: the pages in ``docs/`` name only tests that exist, draw
the error tree and the layer map as they are, and the README keeps its promises (two set-up
commands, at most about 12 KB). ``mkdocs build --strict`` (in ``scripts/test``) checks the links
and renders the API reference; these check what it cannot.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import griffe
import pytest

import tank
import tank.errors
from tank.cli.errors import exit_code
from test_layering import LAYERS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src"

#: the modules whose public names the API reference renders (docs/api.md)
API_MODULES = (
    "tank",
    "tank.registry",
    "tank.image",
    "tank.errors",
    "tank.store",
    "tank.config",
    "tank.auth",
    "tank.transport",
    "tank.testing",
    "tank.aio",
)
#: rendered as well once they exist
API_MODULES_TO_COME: tuple[str, ...] = ()


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of a Markdown page."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {heading}'"
    return match.group(1)


def code_block(text: str, info: str = "") -> str:
    """The first fenced code block (with that info string) of ``text``."""
    match = re.search(rf"^```{re.escape(info)}\n(.*?)^```$", text, re.M | re.S)
    assert match, f"no ```{info} block"
    return match.group(1)


# -- the tests the pages name ---------------------------------------------------------------------


@cache
def defined_tests(path: Path) -> frozenset[str]:
    """Every test function defined in the file ``path``, at module level or in a class."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return frozenset(
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    )


def named_tests(text: str) -> list[tuple[str, str]]:
    return re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", text)


def test_every_test_the_guarantees_page_names_exists() -> None:
    named = named_tests(page("guarantees.md"))
    assert len(named) >= 40, "the guarantees table names its tests as `tests/FILE.py::test_NAME`"
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).is_file() or name not in defined_tests(ROOT / path)
    ]
    assert not missing, "docs/guarantees.md names tests that do not exist:\n" + "\n".join(missing)


def test_every_test_any_page_names_exists() -> None:
    missing = [
        f"{doc.name}: {path}::{name}"
        for doc in sorted(DOCS.glob("*.md"))
        for path, name in named_tests(doc.read_text(encoding="utf-8"))
        if not (ROOT / path).is_file() or name not in defined_tests(ROOT / path)
    ]
    assert not missing, "\n".join(missing)


def test_every_test_file_a_page_names_exists() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))
    files = set(re.findall(r"`(tests/[\w/]+\.py)", text))
    assert files
    assert not [f for f in sorted(files) if not (ROOT / f).is_file()]


# -- the error tree -------------------------------------------------------------------------------


def exception_classes() -> dict[str, type[BaseException]]:
    out = {}
    for name in tank.errors.__all__:
        value = getattr(tank.errors, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            out[name] = value
    return out


def error_tree() -> list[tuple[str, str | None, str]]:
    """``(class, parent, the rest of its lines)`` for each class in docs/errors.md's tree."""
    rows: list[tuple[str, str | None, str]] = []
    stack: list[tuple[int, str]] = []
    for line in code_block(section(page("errors.md"), "The tree")).splitlines():
        match = re.match(r"^([│├└─ ]*)([A-Z]\w+)(.*)$", line)
        if not match:  # a description's second line
            if rows:
                name, parent, rest = rows[-1]
                rows[-1] = (name, parent, rest + " " + line.strip("│ "))
            continue
        depth = len(match.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        rows.append((match.group(2), stack[-1][1] if stack else None, match.group(3)))
        stack.append((depth, match.group(2)))
    return rows


def test_the_error_tree_lists_every_exception_with_its_real_parent() -> None:
    classes = exception_classes()
    rows = error_tree()
    drawn = [name for name, _, _ in rows]
    assert sorted(drawn) == sorted(set(drawn)), "a class is drawn twice"
    assert set(drawn) == set(classes), (
        f"docs/errors.md draws {sorted(set(drawn) - set(classes))} that tank.errors does not "
        f"export, and misses {sorted(set(classes) - set(drawn))}"
    )
    for name, parent, rest in rows:
        cls = classes[name]
        expected = cls.__bases__[0].__name__
        if name == "TankError":
            assert parent is None
            assert expected == "Exception"
        else:
            assert parent == expected, f"{name}'s parent is {expected}, not {parent}"
        for other in cls.__bases__[1:]:  # the built-in it also is, e.g. ValueError
            assert f"also a {other.__name__}" in rest, f"{name}: say 'also a {other.__name__}'"


def test_the_error_tree_gives_the_exit_codes_the_command_line_gives() -> None:
    classes = exception_classes()
    for name, _, rest in error_tree():
        match = re.match(r"\s+(\d+)\b", rest)
        assert match, f"{name} has no exit code in docs/errors.md"
        exc = classes[name].__new__(classes[name])
        exc.status = None  # type: ignore[attr-defined]  # RegistryError's, read by exit_code
        assert exit_code(exc) == int(match.group(1)), name
    unavailable = tank.errors.RegistryError("busy", status=503)
    assert exit_code(unavailable) == 6
    assert "(6 for 429 and 5xx)" in section(page("errors.md"), "The tree")


def test_the_error_table_has_a_row_for_each_class() -> None:
    table = section(page("errors.md"), "What each means and carries")
    rows = re.findall(r"^\| `(\w+)` \|", table, re.M)
    assert sorted(rows) == sorted(exception_classes())


def test_the_exit_code_table_is_the_one_tank_help_prints() -> None:
    from tank.cli.errors import EXIT_CODES_HELP

    table = re.findall(r"^\| (\d+) \|", section(page("commands.md"), "Exit codes"), re.M)
    helped = re.findall(r"^\s+(\d+)\s", EXIT_CODES_HELP, re.M)
    assert table == helped


# -- the design page ------------------------------------------------------------------------------


def layer_table() -> dict[str, tuple[int, bool]]:
    """``module → (layer, reserved)`` from docs/design.md's table of the layers."""
    out: dict[str, tuple[int, bool]] = {}
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", section(page("design.md"), "The layers"), re.M)
    for number, modules in rows:
        layer = int(number)
        for name, reserved in re.findall(r"`(tank[\w.]*)`( \*reserved\*)?", modules):
            assert name not in out, f"{name} is in two rows"
            out[name] = (layer, bool(reserved))
    return out


def exists(module: str) -> bool:
    path = SRC.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def test_the_design_page_draws_the_layer_map_of_test_layering() -> None:
    table = layer_table()
    drawn = {name: layer for name, (layer, _) in table.items()}
    assert drawn == LAYERS, (
        "docs/design.md's table of the layers differs from tests/test_layering.py's LAYERS: "
        f"missing {sorted(LAYERS.keys() - drawn.keys())}, "
        f"extra {sorted(drawn.keys() - LAYERS.keys())}, "
        f"moved {sorted(k for k in drawn.keys() & LAYERS.keys() if drawn[k] != LAYERS[k])}"
    )
    written = [name for name, (_, reserved) in table.items() if reserved and exists(name)]
    assert not written, f"{written} exist now: drop '*reserved*' in docs/design.md"


def test_the_design_page_shows_every_module_and_package_of_tank() -> None:
    tree = code_block(section(page("design.md"), "The package"))
    shown = set(re.findall(r"^[├└]── ([\w.]+/?)", tree, re.M))
    actual = {
        p.name + "/" if p.is_dir() else p.name
        for p in (SRC / "tank").iterdir()
        if (p.is_dir() and (p / "__init__.py").is_file()) or p.suffix == ".py"
    }
    assert shown == actual, (
        f"docs/design.md's package tree misses {sorted(actual - shown)} "
        f"and shows {sorted(shown - actual)}, which are gone"
    )


# -- the API reference ----------------------------------------------------------------------------


def test_the_api_reference_renders_every_public_module() -> None:
    rendered = set(re.findall(r"^::: ([\w.]+)$", page("api.md"), re.M))
    wanted = set(API_MODULES) | {m for m in API_MODULES_TO_COME if exists(m)}
    assert wanted <= rendered, f"docs/api.md lacks ::: {sorted(wanted - rendered)}"
    assert not [m for m in rendered if not exists(m)]


@cache
def loaded() -> griffe.Module:
    package = griffe.load("tank", search_paths=[str(SRC)], resolve_aliases=True,
                          resolve_external=False)
    assert isinstance(package, griffe.Module)
    return package


def _undocumented(obj: griffe.Object | griffe.Alias, label: str) -> list[str]:
    target = obj.final_target if isinstance(obj, griffe.Alias) else obj
    if not isinstance(target, griffe.Class | griffe.Function):
        return []
    out = [] if target.docstring and target.docstring.value.strip() else [label]
    if isinstance(target, griffe.Class):
        for name, member in target.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if isinstance(member, griffe.Function) and not member.docstring:
                out.append(f"{label}.{name}")
    return out


@pytest.mark.parametrize("module", API_MODULES)
def test_every_public_function_and_class_has_a_docstring(module: str) -> None:
    mod = loaded() if module == "tank" else loaded()[module.removeprefix("tank.")]
    assert isinstance(mod, griffe.Module)
    names = [str(n) for n in mod.exports] if mod.exports is not None else [
        n for n in mod.members if not n.startswith("_")
    ]
    missing = [m for n in names for m in _undocumented(mod[n], f"{module}.{n}")]
    assert not missing, f"no docstring: {missing}"


def test_the_docstring_converter_fences_doctests_and_flattens_roles() -> None:
    hooks = _hooks()
    text = hooks.markdown(
        "See :class:`~tank.errors.TankError` and :func:`tank.pull`.\n\n"
        ">>> [c for c in 'ab']\n['a', 'b']\n\nAfter::\n\n    literal\n"
    )
    assert "See `TankError` and `tank.pull`." in text
    assert "```pycon\n>>> [c for c in 'ab']\n['a', 'b']\n```" in text
    assert "After:\n" in text
    assert "::" not in text


def _hooks() -> ModuleType:
    path = DOCS / "hooks" / "griffe_sphinx_text.py"
    spec = importlib.util.spec_from_file_location("griffe_sphinx_text", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- examples that run ----------------------------------------------------------------------------


def test_the_test_kit_example_runs(tmp_path: Path) -> None:
    """docs/testing.md's example, as written: a registry, a front, a token server, TLS."""
    example = code_block(page("testing.md"), "python")
    script = tmp_path / "example.py"
    script.write_text(example, encoding="utf-8")
    env = {**os.environ, "TANK_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: digest mismatch" in done.stdout


#: names the pages document that the lead is writing now (the session API, tank.aio, the model)
TO_COME: tuple[str, ...] = ()


def test_the_public_names_the_pages_use_exist() -> None:
    """Every ``tank.X`` / ``tank.module.X`` the pages name is something tank has."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))
    named = set(re.findall(r"(?<![\w./-])tank(?:\.[a-z]\w*)*\.[A-Za-z]\w*\b", text))
    reserved = {name for name, (_, is_reserved) in layer_table().items() if is_reserved}
    missing = [
        dotted for dotted in sorted(named - reserved)
        if not dotted.startswith(TO_COME) and not _resolves(dotted)
    ]
    assert not missing, f"the pages name what tank does not have: {missing}"


def _resolves(dotted: str) -> bool:
    value: object = importlib.import_module("tank")
    for attr in dotted.split(".")[1:]:
        if hasattr(value, attr):
            value = getattr(value, attr)
        elif inspect.ismodule(value) and importlib.util.find_spec(f"{value.__name__}.{attr}"):
            value = importlib.import_module(f"{value.__name__}.{attr}")
        else:
            return False
    return True


def test_the_config_file_example_loads(tmp_path: Path) -> None:
    """docs/configuration.md's config.toml, as written, is one tank reads without complaint."""
    example = code_block(section(page("configuration.md"), "The config file"), "toml")
    path = tmp_path / "config.toml"
    path.write_text(example, encoding="utf-8")
    config = tank.load_config(path, registries_conf=False)
    assert config.jobs == 8
    assert config.platform == str(tank.Platform.parse("linux/arm64"))
    endpoints = config.endpoints(tank.parse_reference("alpine"))
    assert len(endpoints) == 3  # the two mirrors, then Docker Hub


# -- the README -----------------------------------------------------------------------------------


def test_the_readme_stays_short_with_exactly_two_set_up_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024, "the README is the pitch: the rest goes to docs/"
    setup = section(readme, "On a new machine")
    commands = re.findall(r"^\|.*\| `(scripts/\w+)` \|$", setup, re.M)
    assert commands == ["scripts/demo", "scripts/test"]


def test_the_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert links
    assert not [link for link in links if not (ROOT / link).exists()]


def test_benchmark_figures_carry_their_date_and_machine() -> None:
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    runs = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(runs) >= 4
    for run in runs:
        title = run.splitlines()[0]
        assert re.search(r"\b20\d\d-\d\d-\d\d\b", run), f"{title}: no date"
        assert re.search(r"machine: .*\d+ cores.*SHA extensions", run), f"{title}: no machine"
        assert re.search(r"\.venv/bin/python benchmarks/\w+\.py", run), f"{title}: no command"
