"""The manual: `make docs` builds it in strict mode, its configuration reference holds every key, the README stays a
front page.

The reference is generated at build time by ``docs/hooks/reference.py`` from the schema, ``conf/`` and
``pyfly_hydra.info``; these tests build the site as ``make docs`` does (into a temporary directory) and read it.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pyfly_hydra.cli import CONFIG_DIR
from pyfly_hydra.info import native_option_lines, support_matrix
from tests.conftest import ROOT, missing

README_MAX_LINES = 300
HOOK = ROOT / "docs" / "hooks" / "reference.py"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``mkdocs build --strict`` of the checkout into a temporary directory, as ``make docs`` runs it."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        missing("mkdocs or mkdocs-material is not installed (the docs extra; make test installs it)")
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    yield site


def page_text(site: Path, page: str) -> str:
    """A built page's text, tags removed and entities decoded."""
    markup = (site / page / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def leaf_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every leaf key of a composed config (a list, or an empty mapping, counts as one leaf)."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaf_keys(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def composed_keys() -> list[str]:
    """The ``server.*`` and ``bench.*`` leaf keys of the default configuration, composed as a run composes it."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        config = compose("config")
    keys = list(leaf_keys(OmegaConf.to_container(config, resolve=False)))
    return [key for key in keys if key.startswith(("server.", "bench."))]


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_server_and_bench_key_of_the_composed_configuration_is_in_the_reference(built_site: Path) -> None:
    keys = composed_keys()
    assert {"server.port", "server.granian.runtime_threads", "server.websocket.max_size", "bench.duration"} <= set(
        keys
    ), keys
    reference = (built_site / "reference" / "configuration" / "index.html").read_text()
    absent = [key for key in keys if f"<code>{html.escape(key, quote=False)}</code>" not in reference]
    assert not absent, f"keys missing from the configuration reference: {absent}"


def test_the_reference_holds_the_top_level_keys_and_the_groups(built_site: Path) -> None:
    reference = (built_site / "reference" / "configuration" / "index.html").read_text()
    for key in ("app", "app_dir", "app_factory", "interface", "mode", "provenance", "loop._target_"):
        assert f"<code>{key}</code>" in reference, key
    for group_dir in (path for path in CONFIG_DIR.rglob("*") if path.is_dir()):
        group = group_dir.relative_to(CONFIG_DIR).as_posix()
        for option in group_dir.glob("*.yaml"):
            assert f"<code>{group}</code></td>\n<td><code>{option.stem}</code>" in reference, (group, option.stem)


def test_the_reference_prints_what_mode_info_prints(built_site: Path) -> None:
    """The per-server tables come from the functions ``mode=info`` uses, so they follow the adapters' tables."""
    text = page_text(built_site, "reference/configuration")
    expected = [line for line in (*support_matrix(), *native_option_lines()) if line.strip()]
    assert len(expected) > 40
    absent = [line for line in expected if line not in text]
    assert not absent, absent


def test_every_schema_key_has_a_description() -> None:
    hook = load_hook()
    described = hook.descriptions((ROOT / "pyfly_hydra" / "config" / "schema.py").read_text())
    sections = list(hook.sections(hook.schema.Config, "", described))
    keys = [key for section in sections for key in section.keys]
    assert len(keys) > 60
    assert all(key.description for key in keys)
    server = {key.name: key for key in keys}
    assert server["server.workers"].default == "1" and server["server.workers"].type == "int"
    assert server["server.reload_includes"].default == "[*.py]"
    assert server["bench.workload.requests"].default == "[{name: plaintext, path: /}]"


def test_a_key_without_a_description_stops_the_reference() -> None:
    """The convention, read as stated in schema.py's docstring; a key it does not describe is an error."""
    hook = load_hook()
    source = """
class Example:
    trailing: int = 1  # on its line
    #: above it,
    #: on two lines
    above: int = 2
    # an ordinary comment is not a description
    plain: int = 3
    tool: int = 4  # noqa: E501
"""
    described = hook.descriptions(source)
    assert described == {("Example", "trailing"): "on its line", ("Example", "above"): "above it, on two lines"}
    with pytest.raises(hook.ReferenceError, match=r"server\.host: no description"):
        hook.sections(hook.schema.ServerProperties, "server.", {}).__next__()


def test_the_readme_is_a_front_page_that_links_into_the_manual() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES, len(readme.splitlines())
    assert "```sh\nmake test\n```" in readme  # the README's test command: CI reads it
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", readme)
    assert any(link.startswith("docs/") for link in links), links
    broken = [link for link in links if not (ROOT / link).exists()]
    assert not broken, broken
