"""Nested server.granian.* settings reach granian (PyFly dropped them): shown by respawn on worker death."""

from __future__ import annotations

import os
import signal
import time

import httpx


def worker_pid(url: str) -> int:
    return httpx.get(url + "/loop", headers={"connection": "close"}).json()["pid"]


def test_respawn_failed_workers_true_keeps_serving(start_server) -> None:
    running = start_server("server=granian", "server.granian.respawn_failed_workers=true")
    first = worker_pid(running.url)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    replacement = first
    while time.monotonic() < deadline and replacement == first:
        time.sleep(0.2)
        try:
            replacement = worker_pid(running.url)
        except httpx.HTTPError:
            continue
    assert replacement != first, running.log()
    assert running.process.poll() is None
    assert running.stop() == 0


def test_respawn_failed_workers_false_stops_with_an_error(start_server) -> None:
    running = start_server("server=granian", "server.granian.respawn_failed_workers=false")
    os.kill(worker_pid(running.url), signal.SIGKILL)
    assert running.process.wait(timeout=20) != 0, running.log()
