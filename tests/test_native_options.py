"""``server.options.<server>.*``: the manual's examples work as written; a bad value is one line naming the key."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, assert_one_line_error, run_cli

DEPLOYING = ROOT / "docs" / "guides" / "deploying.md"  # the manual's page "A server's own options"
EXAMPLE = re.compile(r"^python -m pyfly_hydra (server=\w+ \+server\.options\..*)$", re.MULTILINE)


def _examples() -> list[list[str]]:
    return [shlex.split(line) for line in EXAMPLE.findall(DEPLOYING.read_text())]


def test_the_manual_lists_one_example_per_server() -> None:
    assert [command[0] for command in _examples()] == ["server=granian", "server=uvicorn", "server=hypercorn"]


@pytest.mark.parametrize("command", _examples(), ids=lambda command: command[0])
def test_the_manuals_native_option_examples_work_as_written(start_server, tmp_path: Path, command: list[str]) -> None:
    """From a project directory with a ./static, as the manual's sentence below the examples says."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "hello.txt").write_text("static hello")
    running = start_server(*command, cwd=tmp_path, users_defaults=True)
    headers = httpx.get(running.url + "/").headers
    assets = httpx.get(running.url + "/assets/hello.txt")
    assert running.stop() == 0
    if command[0] == "server=granian":
        assert (assets.status_code, assets.text) == (200, "static hello")
    else:
        assert {"server=uvicorn": "server", "server=hypercorn": "date"}[command[0]] not in headers


BAD_VALUES = {
    "granian refuses blocking threads on ASGI": (
        ["server=granian", "+server.options.granian.blocking_threads=8"],
        ["server.options.granian.blocking_threads=8: Blocking threads > 1 is not supported on ASGI"],
    ),
    "granian's idle timeout range": (
        ["server=granian", "+server.options.granian.blocking_threads_idle_timeout=1"],
        ["server.options.granian.blocking_threads_idle_timeout=1: ", "between 5 and 600"],
    ),
    "granian routes and mounts": (
        [
            "server=granian",
            "+server.options.granian.static_path_route=/a",
            "+server.options.granian.static_path_mount=[a,b]",
        ],
        ["server.options.granian.static_path_route=/a: ", "same length"],
    ),
    "granian type": (
        ["server=granian", "+server.options.granian.blocking_threads=many"],
        ["server.options.granian.blocking_threads=many: granian.Granian takes int | None here"],
    ),
    "uvicorn type": (
        ["server=uvicorn", "+server.options.uvicorn.server_header=3"],
        ["server.options.uvicorn.server_header=3: uvicorn.Config takes bool here"],
    ),
    "hypercorn type": (
        ["server=hypercorn", "+server.options.hypercorn.keep_alive_max_requests=lots"],
        ["server.options.hypercorn.keep_alive_max_requests=lots: hypercorn.config.Config takes int here"],
    ),
}


@pytest.mark.parametrize("overrides,fragments", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_a_bad_native_value_is_one_line_before_serving(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)
