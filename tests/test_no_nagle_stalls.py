"""Responses are not held back by Nagle's algorithm: sequential requests on one keep-alive connection.

uvicorn binds its multi-worker listener with proto 0, so asyncio never sets TCP_NODELAY on accepted
sockets and each two-write response waits ~40 ms for the client's delayed ACK (22 req/s on one
connection with `uvicorn --workers 2 --loop asyncio`). pyfly-hydra binds that listener itself.
"""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from tests.conftest import SERVERS

DELAYED_ACK_MS = 40.0


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
@pytest.mark.parametrize("server", SERVERS)
def test_sequential_requests_are_not_stalled(start_server, server: str, loop: str, workers: int) -> None:
    running = start_server(f"server={server}", f"loop={loop}", f"server.workers={workers}", "server.access_log=false")
    timings = []
    with httpx.Client() as client:  # one keep-alive connection
        for _ in range(30):
            started = time.perf_counter()
            assert client.get(running.url + "/").status_code == 200
            timings.append((time.perf_counter() - started) * 1e3)
    assert statistics.median(timings) < DELAYED_ACK_MS / 2, f"median {statistics.median(timings):.1f} ms"
    assert running.stop() == 0
