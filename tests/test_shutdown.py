"""SIGTERM drains in-flight requests, runs lifespan shutdown in every worker, and exits 0."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from wsproto.events import CloseConnection, Message, TextMessage

from pyfly_hydra.bench.process import worker_pids
from tests.conftest import ROOT, SERVERS, child_env, free_port
from tests.test_deploying import websocket, websocket_events

SLOW_SECONDS = 2.0


def lifespan_events(log: Path, event: str) -> list[str]:
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.split()[0] == event]


def _wait_for_startups(log: Path, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(lifespan_events(log, "startup")) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def _request_in_flight(url: str) -> tuple[threading.Thread, dict[str, object]]:
    """GET ``url`` in a thread, returned once the request is in flight, with where its outcome will be:
    ``status`` and ``body`` (JSON), or ``error``."""
    result: dict[str, object] = {}

    def request() -> None:
        try:
            response = httpx.get(url, timeout=30)
            result["status"] = response.status_code
            result["body"] = response.json() if response.status_code == 200 else response.text
        except httpx.HTTPError as exc:
            result["error"] = repr(exc)

    client = threading.Thread(target=request)
    client.start()
    time.sleep(0.5)  # the request is in flight
    return client, result


def _serving_lifespan_app(
    start_server: Any, lifespan_log: Path, server: str, *, workers: int, graceful_timeout: int
) -> Any:
    """The lifespan test app (logging its events to ``lifespan_log``), once every worker has started up."""
    running = start_server(
        f"server={server}",
        f"server.workers={workers}",
        f"server.graceful_timeout={graceful_timeout}",
        "app=lifespan_app:app",
        env=child_env(LIFESPAN_LOG=str(lifespan_log)),
    )
    _wait_for_startups(lifespan_log, workers)
    return running


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
def test_sigterm_completes_in_flight_request(start_server, tmp_path: Path, server: str, workers: int) -> None:
    lifespan_log = tmp_path / "lifespan.log"
    running = _serving_lifespan_app(start_server, lifespan_log, server, workers=workers, graceful_timeout=10)
    client, result = _request_in_flight(f"{running.url}/sleep?seconds={SLOW_SECONDS}")
    started = time.monotonic()
    code = running.stop(signal.SIGTERM)
    client.join(timeout=30)
    assert result.get("status") == 200, f"{result}\n{running.log()}"
    assert result["body"]["slept"] == SLOW_SECONDS
    assert code == 0, running.log()
    assert time.monotonic() - started < 10 + 5
    assert len(lifespan_events(lifespan_log, "shutdown")) == workers, lifespan_log.read_text()


@pytest.mark.parametrize("server", SERVERS)
def test_sigint_drains_like_sigterm(start_server, tmp_path: Path, server: str) -> None:
    """Ctrl-C (docs/guides/shutdown.md, Signals): the request in flight completes, lifespan shutdown runs in
    every worker, and the runner exits 0 without a KeyboardInterrupt traceback."""
    lifespan_log = tmp_path / "lifespan.log"
    running = _serving_lifespan_app(start_server, lifespan_log, server, workers=2, graceful_timeout=10)
    client, result = _request_in_flight(f"{running.url}/sleep?seconds={SLOW_SECONDS}")
    code = running.stop(signal.SIGINT)
    client.join(timeout=30)
    assert result.get("status") == 200, f"{result}\n{running.log()}"
    assert result["body"]["slept"] == SLOW_SECONDS
    assert code == 0, running.log()
    assert len(lifespan_events(lifespan_log, "shutdown")) == 2, lifespan_log.read_text()
    assert "Traceback" not in running.log() and "KeyboardInterrupt" not in running.log(), running.log()


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


# Whether a server's workers stop on their own copy of a group signal. uvicorn's and hypercorn's (under
# pyfly-hydra's supervisor) ignore it and drain when the supervisor tells them to.
WORKERS_STOP_ON_GROUP_SIGNALS = {"granian": True, "uvicorn": False, "hypercorn": False}


@pytest.mark.parametrize("server", SERVERS)
def test_workers_stopping_before_the_supervisor_hears_the_signal_is_a_clean_stop(start_server, server: str) -> None:
    """A group SIGTERM can reach the workers first: they stop and exit before the supervisor runs its
    handler. That order is forced here (the supervisor is held with SIGSTOP until its workers have
    exited), and must still be a clean stop: no "unexpected exit", no respawn, exit code 0."""
    running = start_server(f"server={server}", "server.workers=2")
    supervisor = psutil.Process(running.process.pid)
    workers = _wait_for_workers(supervisor, 2)
    supervisor.suspend()
    try:
        os.killpg(running.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + (20 if WORKERS_STOP_ON_GROUP_SIGNALS[server] else 1)
        while any(_running(worker) for worker in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        stopped = [not _running(worker) for worker in workers]
        assert stopped == [WORKERS_STOP_ON_GROUP_SIGNALS[server]] * 2, running.log()
    finally:
        supervisor.resume()
    assert running.process.wait(timeout=20) == 0, running.log()
    complaints = [line for line in running.log().splitlines() if "][ERROR]" in line or "][WARNING]" in line]
    assert not complaints, running.log()


def test_a_granian_worker_still_loading_the_app_keeps_a_group_sigterm(tmp_path: Path) -> None:
    """A group SIGTERM while the workers import the app (1.5 s): forked workers ran the handler they inherited
    from the runner, which swallowed it, and went on to serve with the runner held. Spawned workers keep it
    (blocked from the spawn, then kept by their own handler) and stop on their own once loaded."""
    command = [sys.executable, "-m", "pyfly_hydra", "server=granian", "server.workers=2"]
    command += ["app=slow_worker_app:create_app", "app_factory=true", f"server.port={free_port()}"]
    log = tmp_path / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    supervisor = psutil.Process(process.pid)
    try:
        workers = _wait_for_workers(supervisor, 2)
        time.sleep(0.3)  # into the worker's start and the app's import
        supervisor.suspend()
        try:
            os.killpg(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while any(_running(worker) for worker in workers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not any(_running(worker) for worker in workers), log.read_text()
        finally:
            supervisor.resume()
        assert process.wait(timeout=20) == 0, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_workers(supervisor: psutil.Process, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 20
    while len(pids := worker_pids(supervisor.pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) == count, pids
    return [psutil.Process(pid) for pid in pids]


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body (b"" when the server closed instead)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(
        next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def _listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` still holds the listening socket on ``port`` (a draining worker closes it)."""
    connections = psutil.Process(pid).net_connections("tcp")
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize(("server", "loop"), [("uvicorn", "auto"), ("hypercorn", "auto"), ("hypercorn", "trio")])
def test_a_request_on_an_idle_connection_of_a_worker_being_replaced_is_answered(
    start_server, server: str, loop: str, workers: int
) -> None:
    """uvicorn and hypercorn close idle keep-alive connections the moment a worker stops, racing a client
    sending its next request on one; a worker pyfly-hydra replaces (here by lifetime) keeps them until
    their keep-alive timeout instead, and answers one more request with ``Connection: close``. (granian
    closes them in Rust, hyper's graceful shutdown: docs/guides/shutdown.md.)"""
    running = start_server(
        f"server={server}", f"loop={loop}", f"server.workers={workers}", "server.worker_max_lifetime=2",
        "server.keep_alive_timeout=5",
    )  # fmt: skip
    request = b"GET /loop HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as idle:
        idle.sendall(request)
        first = _read_response(idle)
        pid = json.loads(first.partition(b"\r\n\r\n")[2])["pid"]
        deadline = time.monotonic() + 20
        while _listening(pid, running.port) and time.monotonic() < deadline:  # until it starts draining
            time.sleep(0.02)
        assert f"worker pid {pid} reached its lifetime" in running.log(), running.log()
        idle.sendall(request)  # the worker is draining; the connection sat idle
        answer = _read_response(idle)
        assert answer.startswith(b"HTTP/1.1 200"), (answer, running.log())
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["pid"] == pid
        assert b"\r\nconnection: close\r\n" in answer.lower(), answer  # the client is told ...
        assert idle.recv(1) == b""  # ... and the connection closed
    assert running.stop() == 0, running.log()


@pytest.mark.serial  # a time bound: run alone, so a neighbour's load does not decide it
@pytest.mark.parametrize(("server", "loop"), [*((server, "auto") for server in SERVERS), ("hypercorn", "trio")])
def test_a_stop_with_nothing_in_flight_is_quick_whatever_the_keep_alive(start_server, server: str, loop: str) -> None:
    """server.keep_alive_timeout=75 (behind a cloud load balancer) and idle keep-alive connections open,
    one the client has already closed among them: SIGTERM ends the runner within 1 s, exit 0."""
    running = start_server(f"server={server}", f"loop={loop}", "server.workers=2", "server.keep_alive_timeout=75")
    request = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
    idle = [socket.create_connection(("127.0.0.1", running.port), timeout=10) for _ in range(6)]
    try:
        for sock in idle:
            sock.sendall(request)
            assert _read_response(sock).startswith(b"HTTP/1.1 200")
        idle.pop().close()
        stopped = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        assert running.wait_exit(timeout=20) == 0, running.log()
        assert time.monotonic() - stopped < 1.0, running.log()
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
def test_an_open_websocket_gets_1001_when_the_server_stops(start_server, server: str, workers: int) -> None:
    """SIGTERM with a websocket open: the client gets a close frame with 1001 (going away) at once, where
    hypercorn held it to the graceful timeout (then 1011), uvicorn sent 1012 and granian sent none."""
    running = start_server(f"server={server}", f"server.workers={workers}", "server.graceful_timeout=10")
    sock, connection = websocket(running.port)
    with sock:
        sock.sendall(connection.send(Message(data="hello")))
        assert any(isinstance(e, TextMessage) for e in websocket_events(sock, connection, until=TextMessage))
        stopped = time.monotonic()
        running.process.send_signal(signal.SIGTERM)
        events = websocket_events(sock, connection, until=CloseConnection, seconds=8)
        closes = [event for event in events if isinstance(event, CloseConnection)]
        assert closes and closes[0].code == 1001, (events, running.log())
        assert time.monotonic() - stopped < 3, running.log()
        with contextlib.suppress(OSError):
            sock.sendall(connection.send(closes[0].response()))
    assert running.wait_exit(timeout=20) == 0, running.log()


@pytest.mark.parametrize("server", SERVERS)
def test_lifespan_shutdown_runs_in_every_worker_at_the_graceful_timeout(
    start_server, tmp_path: Path, server: str
) -> None:
    """A request outlives server.graceful_timeout=2: it is cut (500 or a closed connection), and every
    worker still runs the app's lifespan shutdown (granian killed the busy one without it), exit 0."""
    lifespan_log = tmp_path / "lifespan.log"
    running = _serving_lifespan_app(start_server, lifespan_log, server, workers=2, graceful_timeout=2)
    client, outcome = _request_in_flight(f"{running.url}/sleep?seconds=15")
    stopped = time.monotonic()
    assert running.stop(signal.SIGTERM) == 0, running.log()
    assert time.monotonic() - stopped < 2 + 5, running.log()
    client.join(timeout=30)
    assert outcome.get("status") != 200, outcome
    assert sorted(lifespan_events(lifespan_log, "shutdown")) == sorted(lifespan_events(lifespan_log, "startup"))
    assert len(lifespan_events(lifespan_log, "shutdown")) == 2, lifespan_log.read_text()
    if server == "granian":  # the busy worker found its request's task among its own and cancelled it
        assert "1 request(s) still running at server.graceful_timeout: cancelled" in running.log(), running.log()
