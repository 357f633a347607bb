"""Every worker runs the loop that was asked for, on every server: checked by the loop's class."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import SERVERS

EXPECTED_LOOP = {"uvloop": "uvloop.Loop", "asyncio": "asyncio.unix_events._UnixSelectorEventLoop"}
WORKERS = 2


def sample_workers(url: str, *, want: int, attempts: int = 400) -> dict[int, str]:
    """Ask /loop on fresh connections until `want` distinct worker pids have answered."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 30
    for _ in range(attempts):
        with httpx.Client(timeout=5) as client:  # a new connection each time, so workers take turns
            body = client.get(url + "/loop").json()
        seen[body["pid"]] = body["loop"]
        if len(seen) >= want or time.monotonic() > deadline:
            break
    return seen


@pytest.mark.parametrize("loop", sorted(EXPECTED_LOOP))
@pytest.mark.parametrize("server", SERVERS)
def test_every_worker_runs_the_requested_loop(start_server, server: str, loop: str) -> None:
    running = start_server(f"server={server}", f"loop={loop}", f"server.workers={WORKERS}")
    seen = sample_workers(running.url, want=WORKERS)
    assert len(seen) == WORKERS, f"only saw workers {seen} on {server}"
    assert set(seen.values()) == {EXPECTED_LOOP[loop]}, seen
    assert running.process.pid not in seen, "the supervisor itself must not serve requests"
    assert httpx.get(running.url + "/loop").json()["server"] == server
    assert running.stop() == 0, running.log()
