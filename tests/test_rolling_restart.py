"""SIGHUP rolls the workers onto the app's current code, new before old, with keep-alive clients under load.

Run the way a team deploys: the app's file is replaced in its project directory, SIGHUP goes to the runner,
and six keep-alive clients send back to back throughout. No request may fail; the answers soon come from
the new code in new processes; a deploy that does not import leaves the old workers serving.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

APP = (
    "import os\n"
    "\n"
    "async def app(scope, receive, send):\n"
    "    if scope['type'] != 'http':\n"
    "        return\n"
    "    body = f'{VERSION} {os.getpid()}'.encode()\n"
    "    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})\n"
    "    await send({'type': 'http.response.body', 'body': body})\n"
)
BROKEN = "VERSION = 'broken'\nraise RuntimeError('this deploy does not import')\n"
CLIENTS = 6
ROLLED_WITHIN = 10.0
SUPERVISED_SERVERS = ("uvicorn", "hypercorn")  # whose workers pyfly-hydra's supervisor runs


def _write(project: Path, version: str) -> None:
    (project / "main.py").write_text(f"VERSION = {version!r}\n" + APP)


@dataclass
class Load:
    """Keep-alive clients sending back to back: every answer (when, version, pid) and every failure."""

    url: str
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                try:
                    response = client.get(self.url)
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text[:80]}")
                    continue
                version, pid = response.text.split()
                self.answers.append((time.monotonic(), version, int(pid)))


@contextmanager
def load(url: str) -> Iterator[Load]:
    running = Load(url)
    threads = [threading.Thread(target=running.client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        yield running
    finally:
        running.stop.set()
        for thread in threads:
            thread.join(timeout=15)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SUPERVISED_SERVERS)
def test_sighup_rolls_onto_the_new_code_without_a_failed_request(
    start_server, tmp_path: Path, server: str, workers: int
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _write(project, "v1")
    running = start_server(f"server={server}", f"server.workers={workers}", "app=main:app", cwd=project, ready_path="/")
    with load(running.url + "/") as traffic:
        time.sleep(3)
        _write(project, "v2")
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGHUP)
        time.sleep(13)
    assert traffic.failures == [], traffic.failures[:5]
    before = {pid for at, version, pid in traffic.answers if at < signalled}
    late = [(version, pid) for at, version, pid in traffic.answers if at > signalled + ROLLED_WITHIN]
    assert late and all(version == "v2" for version, _ in late), sorted(set(late))[:5]
    assert not {pid for _, pid in late} & before, "the rolled answers come from new processes"
    assert running.stop() == 0, running.log()
    assert f"SIGHUP: {workers} {server} worker(s) rolled" in running.log(), running.log()


@pytest.mark.parametrize("server", SUPERVISED_SERVERS)
def test_a_deploy_that_does_not_import_leaves_the_old_workers_serving(
    start_server, tmp_path: Path, server: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _write(project, "v1")
    running = start_server(f"server={server}", "server.workers=2", "app=main:app", cwd=project, ready_path="/")
    (project / "main.py").write_text(BROKEN)
    running.process.send_signal(signal.SIGHUP)
    with load(running.url + "/") as traffic:
        deadline = time.monotonic() + 20
        while "the roll stopped" not in running.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    assert "the roll stopped" in running.log(), running.log()
    assert traffic.failures == [] and {version for _, version, _ in traffic.answers} == {"v1"}, traffic.failures[:5]
    assert running.process.poll() is None
    errors = [line for line in running.log().splitlines() if "][ERROR]" in line]
    assert len([line for line in errors if "SIGHUP" in line]) == 1, errors

    _write(project, "v3")
    running.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while "worker(s) rolled" not in running.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(running.url + "/").text.split()[0] == "v3", running.log()
    assert running.stop() == 0, running.log()
