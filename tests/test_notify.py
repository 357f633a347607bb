"""systemd readiness (``Type=notify``): a real unix datagram socket as ``NOTIFY_SOCKET``, as systemd gives one.

``READY=1`` comes once the server answers (an immediate request gets its 200), ``RELOADING=1`` then
``READY=1`` around a SIGHUP roll, ``STOPPING=1`` when SIGTERM starts the drain.
"""

from __future__ import annotations

import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pyfly_hydra.registry import SERVER_NAMES
from tests.conftest import child_env


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    # A short directory: a unix socket's path is at most 107 bytes.
    with (
        tempfile.TemporaryDirectory(prefix="notify-") as directory,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind(str(Path(directory) / "notify"))
        sock.settimeout(30)
        yield sock


def _receive(sock: socket.socket, state: str) -> list[str]:
    """Datagrams until one holds ``state``; every line received."""
    lines: list[str] = []
    while state not in lines:
        lines += sock.recv(4096).decode().splitlines()
    return lines


@pytest.mark.parametrize("server", SERVER_NAMES)
def test_ready_reloading_and_stopping_reach_systemd(start_server, notify_socket: socket.socket, server: str) -> None:
    env = child_env(NOTIFY_SOCKET=notify_socket.getsockname())
    running = start_server(f"server={server}", "server.workers=2", env=env, ready_path=None)
    lines = _receive(notify_socket, "READY=1")
    assert httpx.get(running.url + "/health", timeout=2).status_code == 200  # ready means it answers now
    assert any(line.startswith("STATUS=") for line in lines), lines

    running.process.send_signal(signal.SIGHUP)
    lines = _receive(notify_socket, "RELOADING=1")
    assert any(line.startswith("MONOTONIC_USEC=") for line in lines), lines
    assert "READY=1" in _receive(notify_socket, "READY=1")

    started = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    _receive(notify_socket, "STOPPING=1")
    assert time.monotonic() - started < 2
    assert running.wait_exit(timeout=30) == 0, running.log()
