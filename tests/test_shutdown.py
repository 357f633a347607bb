"""SIGTERM drains in-flight requests, runs lifespan shutdown in every worker, and exits 0."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SERVERS, child_env

SLOW_SECONDS = 2.0


def lifespan_events(log: Path, event: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.split()[0] == event]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_completes_in_flight_request(start_server, tmp_path: Path, server: str, workers: int) -> None:
    lifespan_log = tmp_path / "lifespan.log"
    running = start_server(
        f"server={server}",
        f"server.workers={workers}",
        "server.graceful_timeout=10",
        "app=lifespan_app:app",
        env=child_env(LIFESPAN_LOG=str(lifespan_log)),
    )
    deadline = time.monotonic() + 20
    while len(lifespan_events(lifespan_log, "startup")) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    result: dict[str, object] = {}

    def slow_request() -> None:
        try:
            response = httpx.get(f"{running.url}/sleep?seconds={SLOW_SECONDS}", timeout=30)
            result["status"] = response.status_code
            result["body"] = response.json()
        except httpx.HTTPError as exc:
            result["error"] = repr(exc)

    client = threading.Thread(target=slow_request)
    client.start()
    time.sleep(0.5)  # the request is in flight
    started = time.monotonic()
    code = running.stop(signal.SIGTERM)
    client.join(timeout=30)
    assert result.get("status") == 200, f"{result}\n{running.log()}"
    assert result["body"]["slept"] == SLOW_SECONDS
    assert code == 0, running.log()
    assert time.monotonic() - started < 10 + 5
    assert len(lifespan_events(lifespan_log, "shutdown")) == workers, lifespan_log.read_text()


@pytest.mark.parametrize("server", SERVERS)
def test_sigint_exits_zero(start_server, server: str) -> None:
    running = start_server(f"server={server}")
    assert running.stop(signal.SIGINT) == 0, running.log()


@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_to_the_whole_process_group_still_drains(start_server, server: str) -> None:
    """What systemd and container runtimes do: every process of the group gets SIGTERM at once."""
    running = start_server(f"server={server}", "server.workers=2", "server.graceful_timeout=10")
    result: dict[str, object] = {}

    def slow_request() -> None:
        result["status"] = httpx.get(f"{running.url}/sleep?seconds={SLOW_SECONDS}", timeout=30).status_code

    client = threading.Thread(target=slow_request)
    client.start()
    time.sleep(0.5)
    os.killpg(running.process.pid, signal.SIGTERM)
    client.join(timeout=30)
    assert result.get("status") == 200, running.log()
    assert running.process.wait(timeout=20) == 0, running.log()
