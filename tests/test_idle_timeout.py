"""No connection is held forever: silent, idle and half-sent connections are closed on every server.

Bounds: a connection idle after a response, one that never sends a byte in cleartext, and one whose
request head stalls half way are closed within ``server.keep_alive_timeout`` plus ``SLACK``. Over TLS
a silent connection is closed by the TLS handshake timeout: granian's fixed 10 s, which pyfly-hydra
also sets on uvicorn and hypercorn (their default, asyncio's and uvloop's, is 60 s).
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import SERVERS, tls_overrides

KEEP_ALIVE = 2
SLACK = 1.5  # timers fire on the server's next loop tick; the close travels back over loopback
TLS_HANDSHAKE = 10  # granian's fixed value; pyfly-hydra sets the same on uvicorn and hypercorn


def seconds_until_closed(sock: socket.socket, limit: float) -> float | None:
    """How long until the server closes ``sock`` (None: still open after ``limit``)."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


@pytest.mark.parametrize("server", SERVERS)
def test_silent_connection_is_closed(start_server, server: str) -> None:
    running = start_server(f"server={server}", f"server.keep_alive_timeout={KEEP_ALIVE}")
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        closed_after = seconds_until_closed(sock, KEEP_ALIVE + SLACK)
    assert running.stop() == 0
    assert closed_after is not None, f"{server} kept a silent connection open past {KEEP_ALIVE + SLACK} s"


def test_silent_tls_connection_is_closed_on_every_server(start_server, tls) -> None:
    """All three at once (the handshake deadline is 10 s on each): one wait instead of three."""
    servers = {
        server: start_server(
            f"server={server}",
            f"server.keep_alive_timeout={KEEP_ALIVE}",
            *tls_overrides(tls),
            scheme="https",
            verify=tls[2],
        )
        for server in SERVERS
    }
    sockets = {server: socket.create_connection(("127.0.0.1", running.port)) for server, running in servers.items()}
    with ThreadPoolExecutor(len(sockets)) as pool:
        waits = {
            server: pool.submit(seconds_until_closed, sock, TLS_HANDSHAKE + SLACK) for server, sock in sockets.items()
        }
        closed_after = {server: wait.result() for server, wait in waits.items()}
    for sock in sockets.values():
        sock.close()
    for running in servers.values():
        assert running.stop() == 0
    assert all(seconds is not None for seconds in closed_after.values()), closed_after


@pytest.mark.parametrize("head", [b"GET / HT", b"GET / HTTP/1.1\r\nHost: test\r\nX-Half: "], ids=["line", "headers"])
@pytest.mark.parametrize("server", SERVERS)
def test_a_request_head_that_stalls_is_closed(start_server, server: str, head: bytes) -> None:
    running = start_server(f"server={server}", f"server.keep_alive_timeout={KEEP_ALIVE}")
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(head)
        closed_after = seconds_until_closed(sock, KEEP_ALIVE + SLACK)
    assert running.stop() == 0
    assert closed_after is not None, f"{server} kept a half-sent request head open past {KEEP_ALIVE + SLACK} s"


@pytest.mark.parametrize("server", SERVERS)
def test_idle_keep_alive_connection_is_closed(start_server, server: str) -> None:
    running = start_server(f"server={server}", f"server.keep_alive_timeout={KEEP_ALIVE}")
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        closed_after = seconds_until_closed(sock, KEEP_ALIVE + SLACK)
    assert running.stop() == 0
    assert closed_after is not None, f"{server} kept an idle connection open past {KEEP_ALIVE + SLACK} s"
    assert closed_after >= KEEP_ALIVE - 0.5, f"closed after {closed_after:.2f} s, before the timeout"
