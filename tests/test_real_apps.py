"""Real framework apps (Flask, Django over ASGI and WSGI) on every server, with interface=auto."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from pyfly_hydra.bench.process import free_port
from tests.conftest import SERVERS

MEGABYTE = os.urandom(1024 * 1024)
LIFESPAN_COMPLAINTS = ("lifespan error", "lifespan errored", "exception in 'lifespan'", "lifespan startup failed")


def served_interface(running: object) -> str:
    record = json.loads((running.run_dir / "server_info.json").read_text())  # type: ignore[attr-defined]
    return record["interface"]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
def test_flask(start_server, server: str, workers: int) -> None:
    running = start_server(f"server={server}", f"server.workers={workers}", "app=flask_app:app")
    assert "serving flask_app:app (wsgi) on " + server in running.log()
    assert served_interface(running) == "wsgi"
    with httpx.Client(base_url=running.url, timeout=10) as client:
        assert client.get("/").text == "flask says hello"
        upload = client.post("/upload", content=MEGABYTE).json()
        assert upload == {"size": len(MEGABYTE), "sha256": hashlib.sha256(MEGABYTE).hexdigest()}
        with client.stream("GET", "/stream") as response:
            chunks = [chunk for chunk in response.iter_text() if chunk]
        assert "".join(chunks) == "".join(f"chunk {i}\n" for i in range(5))
    assert running.stop() == 0, running.log()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("module", ["asgi", "wsgi"])
def test_django_admin_login(start_server, server: str, workers: int, module: str) -> None:
    running = start_server(f"server={server}", f"server.workers={workers}", f"app=djproject.{module}:application")
    assert served_interface(running) == module
    response = httpx.get(running.url + "/admin/login/", timeout=10)
    assert response.status_code == 200 and "csrfmiddlewaretoken" in response.text
    assert running.stop() == 0, running.log()
    # Django has no lifespan: with server.lifespan=auto no server may complain about it.
    complaints = [line for line in running.log().lower().splitlines() if any(c in line for c in LIFESPAN_COMPLAINTS)]
    assert complaints == [], running.log()


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_completes_a_slow_wsgi_request(start_server, server: str) -> None:
    running = start_server(f"server={server}", "server.workers=2", "server.graceful_timeout=10", "app=flask_app:app")
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            response = httpx.get(running.url + "/sleep?seconds=2", timeout=20)
            result["status"], result["text"] = response.status_code, response.text
        except httpx.HTTPError as error:
            result["error"] = repr(error)

    thread = threading.Thread(target=slow_request)
    thread.start()
    threading.Event().wait(0.7)  # the request is in the app, sleeping
    assert running.stop(signal.SIGTERM) == 0, running.log()
    thread.join(timeout=20)
    assert result == {"status": 200, "text": "slept 2.0"}, (result, running.log())


@pytest.mark.parametrize("server", SERVERS)
def test_proxy_headers_reach_a_wsgi_app(start_server, server: str) -> None:
    running = start_server(f"server={server}", "app=flask_app:app", "server.proxy_headers=true")
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    assert httpx.get(running.url + "/client", headers=headers).json() == {"client": "203.0.113.7", "scheme": "https"}
    # A forged line first, the proxy's own after it (HAProxy's option forwardfor): the proxy's wins.
    lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.8"), ("X-Forwarded-Proto", "http")]
    assert httpx.get(running.url + "/client", headers=lines).json() == {"client": "203.0.113.8", "scheme": "http"}
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_lifespan_off_runs_no_lifespan(start_server, tmp_path: Path, server: str) -> None:
    from tests.conftest import child_env

    log = tmp_path / "lifespan.log"
    running = start_server(
        f"server={server}", "app=lifespan_app:app", "server.lifespan=off", env=child_env(LIFESPAN_LOG=str(log))
    )
    assert httpx.get(running.url + "/").status_code == 200
    assert running.stop() == 0
    assert not log.exists(), log.read_text()


@pytest.mark.parametrize("server", SERVERS)
def test_lifespan_on_with_a_failing_startup_exits_non_zero(server: str) -> None:
    from tests.conftest import run_cli

    port = free_port()
    result = run_cli(
        f"server={server}", "app=lifespan_app:failing_startup_app", "server.lifespan=on", f"server.port={port}"
    )
    assert result.returncode != 0
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("pyfly-hydra: error: "), result.stderr
    assert server in last, result.stderr  # which server would not start...
    assert "database unreachable" in result.stdout + result.stderr, result.stderr  # ...and the app's own reason
