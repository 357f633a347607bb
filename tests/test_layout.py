"""The layout keeps each fact once: only the registry names the set of built-in servers (read by everything
else), and a module that runs inside workers imports nothing of the parent side (`pyproject.toml`'s
import-linter contracts, run by `make lint`; here: that they hold and name every package)."""

from __future__ import annotations

import ast
import tomllib

import pytest

from pyfly_hydra.registry import SERVER_NAMES
from tests.conftest import ROOT

REGISTRY = ROOT / "pyfly_hydra" / "registry.py"
SCANNED = ("pyfly_hydra", "hydra_plugins", "benchmarks")


def _strings(nodes: list[ast.expr | None]) -> set[str]:
    return {node.value for node in nodes if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def names_every_server(tree: ast.AST) -> list[int]:
    """Lines where a literal collection, a dict's keys or a class's fields name every built-in server."""
    every = set(SERVER_NAMES)
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            found = _strings(list(node.elts))
        elif isinstance(node, ast.Dict):
            found = _strings(list(node.keys))
        elif isinstance(node, ast.ClassDef):
            found = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        else:
            continue
        if every <= found:
            lines.append(node.lineno)
    return lines


def test_only_the_registry_names_every_built_in_server() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}:{line}"
        for folder in SCANNED
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != REGISTRY
        for line in names_every_server(ast.parse(path.read_text(), filename=str(path)))
    }
    assert not offenders, f"the set of servers is written again (derive it from pyfly_hydra.registry): {offenders}"


@pytest.mark.parametrize(
    "source",
    [
        'SERVERS = ("granian", "uvicorn", "hypercorn")',
        'COLOURS = {"granian": "#1", "uvicorn": "#2", "hypercorn": "#3"}',
        "class Options:\n    granian: dict\n    uvicorn: dict\n    hypercorn: dict",
        'ok = name in ["hypercorn", "granian", "uvicorn", "mine"]',
    ],
)
def test_the_check_sees_a_list_of_servers_in_any_shape(source: str) -> None:
    assert names_every_server(ast.parse(source)) == [1]
    assert REGISTRY.read_text().count('name="') == len(SERVER_NAMES)  # the registry itself: one row each


def test_the_import_contracts_cover_every_package() -> None:
    """A new package must be placed in a layer: one left out would be checked by no contract."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in settings["contracts"] if c["type"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    package = ROOT / "pyfly_hydra"
    modules = {
        f"pyfly_hydra.{path.stem if path.is_file() else path.name}"
        for path in package.iterdir()
        if (path.is_dir() and (path / "__init__.py").exists()) or (path.suffix == ".py" and path.stem != "__init__")
    }
    entry = {"pyfly_hydra.__main__"}  # `python -m pyfly_hydra`: imports the cli only
    assert modules - entry == placed, sorted(modules - entry ^ placed)
