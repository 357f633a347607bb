"""SIGHUP rolls the workers onto the app's current code, new before old, with keep-alive clients under load.

Run the way a team deploys: the app's file is replaced in its project directory, SIGHUP goes to the runner,
and six keep-alive clients send back to back throughout. No request may fail; the answers soon come from
the new code in new processes; a deploy that does not import leaves the old workers serving.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pyfly_hydra.registry import SERVER_NAMES
from tests.conftest import RunningServer
from tests.keep_alive_clients import Load, keep_alive_clients
from tests.test_metrics import app_and_admin_ports, scrape, total

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
ROLLED_WITHIN = 10.0


def _write(project: Path, version: str) -> None:
    (project / "main.py").write_text(f"VERSION = {version!r}\n" + APP)


def _all_serving(running: RunningServer, server: str, workers: int) -> None:
    """Until the runner says every worker serves (a worker still importing the app would import the edit)."""
    deadline = time.monotonic() + 30
    while f"{workers} {server} worker(s) serving" not in running.log():
        assert time.monotonic() < deadline, running.log()
        time.sleep(0.1)


def _answers(traffic: Load) -> list[tuple[float, str, int]]:
    """(when, version, pid) of every answer of the app above."""
    return [(at, *_version_pid(body)) for at, body in traffic.answers]


def _version_pid(body: str) -> tuple[str, int]:
    version, pid = body.split()
    return version, int(pid)


# One worker rolls the same way as two, one at a time: in the slow tier, so `make test` keeps its 10 minutes.
@pytest.mark.parametrize("workers", [pytest.param(1, marks=pytest.mark.slow), 2])
@pytest.mark.parametrize("server", SERVER_NAMES)
def test_sighup_rolls_onto_the_new_code_without_a_failed_request(
    start_server, tmp_path: Path, server: str, workers: int
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _write(project, "v1")
    port, admin = app_and_admin_ports()
    running = start_server(
        f"server={server}", f"server.workers={workers}", "app=main:app", f"server.metrics.port={admin}",
        cwd=project, ready_path="/", port=port,
    )  # fmt: skip
    _all_serving(running, server, workers)
    with keep_alive_clients(running.url + "/") as traffic:
        time.sleep(3)
        _write(project, "v2")
        signalled = time.monotonic()
        running.process.send_signal(signal.SIGHUP)
        time.sleep(13)
    assert traffic.failures == [], traffic.failures[:5]
    answers = _answers(traffic)
    before = {pid for at, _, pid in answers if at < signalled}
    late = [(version, pid) for at, version, pid in answers if at > signalled + ROLLED_WITHIN]
    assert late and all(version == "v2" for version, _ in late), sorted(set(late))[:5]
    assert not {pid for _, pid in late} & before, "the rolled answers come from new processes"
    # /metrics across the roll: the rolled workers' exits said, and what they counted kept.
    families = scrape(admin)
    assert total(families, "pyfly_hydra_worker_exits", reason="rolled") == workers, families["pyfly_hydra_worker_exits"]
    assert total(families, "pyfly_hydra_worker_starts") == 2 * workers
    assert total(families, "pyfly_hydra_requests") >= len(answers)
    assert running.stop() == 0, running.log()
    assert f"SIGHUP: {workers} {server} worker(s) rolled" in running.log(), running.log()
    (roll,) = _rolls(running)
    assert roll["outcome"] == "rolled" and len(roll["replaced"]) == workers, roll
    assert {pid for _, pid in late} <= {entry["new_pid"] for entry in roll["replaced"]}, roll


@pytest.mark.parametrize("server", SERVER_NAMES)
def test_a_deploy_that_does_not_import_leaves_the_old_workers_serving(
    start_server, tmp_path: Path, server: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _write(project, "v1")
    running = start_server(f"server={server}", "server.workers=2", "app=main:app", cwd=project, ready_path="/")
    _all_serving(running, server, 2)
    (project / "main.py").write_text(BROKEN)
    running.process.send_signal(signal.SIGHUP)
    with keep_alive_clients(running.url + "/") as traffic:
        deadline = time.monotonic() + 20
        while "the roll stopped" not in running.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    assert "the roll stopped" in running.log(), running.log()
    assert traffic.failures == [] and {version for _, version, _ in _answers(traffic)} == {"v1"}, traffic.failures[:5]
    assert running.process.poll() is None
    errors = [line for line in running.log().splitlines() if "][ERROR]" in line]
    assert len(errors) == 1 and "SIGHUP" in errors[0], errors  # one line, saying why
    assert "main.py:2: RuntimeError: this deploy does not import" in errors[0], errors

    _write(project, "v3")
    running.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while len(_rolls(running)) < 2:
        assert time.monotonic() < deadline, running.log()
        time.sleep(0.2)
    # An old worker accepts until it sees its shutdown event (uvicorn looks every 0.1 s, later under load):
    # once the replaced workers are gone, every answer is v3.
    for entry in _rolls(running)[1]["replaced"]:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(entry["old_pid"]).wait(timeout=ROLLED_WITHIN)
    assert {httpx.get(running.url + "/").text.split()[0] for _ in range(10)} == {"v3"}, running.log()
    assert running.stop() == 0, running.log()
    stopped, rolled = _rolls(running)
    assert stopped["outcome"].startswith("stopped: ") and "did not come up" in stopped["outcome"], stopped
    assert stopped["replaced"] == [] and rolled["outcome"] == "rolled", (stopped, rolled)


def _rolls(running: RunningServer) -> list[dict]:
    """The rolls the run's startup record notes."""
    return json.loads((running.run_dir / "server_info.json").read_text()).get("rolls", [])


# The line each server logs as a worker starts.
WORKER_STARTS = {"granian": "Spawning worker-", "uvicorn": "Started server process", "hypercorn": "Running on"}


@pytest.mark.parametrize("server", SERVER_NAMES)
def test_roll_batch_starts_that_many_new_workers_before_an_old_one_drains(
    start_server, tmp_path: Path, server: str
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    _write(project, "v1")
    overrides = (f"server={server}", "server.workers=2", "server.roll_batch=2", "app=main:app")
    running = start_server(*overrides, cwd=project, ready_path="/")
    _all_serving(running, server, 2)
    running.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "SIGHUP: 2" not in running.log() or "worker(s) rolled" not in running.log():
        assert time.monotonic() < deadline, running.log()
        time.sleep(0.1)
    log = running.log()
    during = log[log.index("SIGHUP: rolling") : log.index("rolled (SIGHUP)")]
    assert during.count(WORKER_STARTS[server]) == 2, log  # both new workers up before the first old one goes
    assert running.stop() == 0, running.log()
    (roll,) = _rolls(running)
    assert roll["outcome"] == "rolled" and len(roll["replaced"]) == 2, roll
