"""Production keys on every server: root_path and each server's own options (server.options.<server>.*)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import SERVERS, run_cli


@pytest.mark.parametrize("server", SERVERS)
def test_root_path_reaches_the_app(start_server, server: str) -> None:
    running = start_server(f"server={server}", "server.root_path=/api")
    assert httpx.get(running.url + "/loop").json()["root_path"] == "/api"
    assert running.stop() == 0


@pytest.mark.parametrize(
    "server,option,check",
    [
        ("uvicorn", "+server.options.uvicorn.server_header=false", "server"),
        ("hypercorn", "+server.options.hypercorn.include_date_header=false", "date"),
    ],
)
def test_a_native_option_takes_effect(start_server, server: str, option: str, check: str) -> None:
    plain = start_server(f"server={server}")
    assert check in httpx.get(plain.url + "/").headers
    plain.stop()
    running = start_server(f"server={server}", option)
    assert check not in httpx.get(running.url + "/").headers
    assert running.stop() == 0


def test_a_native_granian_option_takes_effect(start_server) -> None:
    running = start_server(
        "server=granian", "server.access_log=true", "+server.options.granian.log_access_format='access-MARK %(path)s'"
    )
    httpx.get(running.url + "/json")
    assert running.stop() == 0
    assert "access-MARK /json" in running.log()


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["server=uvicorn", "+server.options.uvicorn.server_headr=false"], ["did you mean", "server_header"]),
        (["server=granian", "+server.options.granian.blocking_thread=4"], ["did you mean", "blocking_threads"]),
        (["server=uvicorn", "+server.options.uvicorn.backlog=10"], ["set server.backlog instead"]),
        (["server=granian", "+server.options.granian.url_path_prefix=/x"], ["set server.root_path instead"]),
        (["server=granian", "server.options.granian.websockets=false"], ["added with a +"]),
        (["server.root_path=api"], ["server.root_path=api", "must start with /"]),
    ],
)
def test_bad_native_options_are_one_line(overrides: list[str], fragments: list[str]) -> None:
    result = run_cli(*overrides)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines
