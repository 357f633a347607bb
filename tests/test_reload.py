"""``env=dev`` reload, run the way a user runs it: from the app's directory, Hydra's default output dir."""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from pyfly_hydra.supervision.reload import WatchedSources, watched_sources
from pyfly_hydra.supervision.supervisor import Supervisor
from pyfly_hydra.worker.control import WorkerControl
from tests.conftest import SERVERS

APP_TEMPLATE = (
    "import os\n"
    "\n"
    "from fastapi import FastAPI\n"
    "from fastapi.responses import PlainTextResponse\n"
    "\n"
    "with open('imports.txt', 'a') as imports:  # one line per import of this module, in any process\n"
    "    imports.write(f'{{os.getpid()}}\\n')\n"
    "\n"
    "app = FastAPI()\n"
    "\n"
    "\n"
    "@app.get('/', response_class=PlainTextResponse)\n"
    "def root() -> str:\n"
    "    return '{body}'\n"
)
BROKEN = "async def app(scope, receive, send:\n"
IDLE_SECONDS = 10.0
SERVE_WITHIN = 15.0


def detected_lines(log: str) -> list[str]:
    """The log's lines announcing a change: watchfiles' own, the supervisor's, granian's."""
    return [line for line in log.splitlines() if "change" in line.lower() and "detected" in line.lower()]


def imports(project: Path) -> int:
    return len((project / "imports.txt").read_text().splitlines())


def body(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None


def wait_for_body(url: str, expected: str, log: object) -> None:
    deadline = time.monotonic() + SERVE_WITHIN
    while time.monotonic() < deadline:
        if body(url) == expected:
            return
        time.sleep(0.2)
    pytest.fail(f"{expected!r} not served within {SERVE_WITHIN} s:\n{log}")


def settle_imports(project: Path, seconds: float = 3.0) -> int:
    """The import count once it has not changed for ``seconds``."""
    count, since = imports(project), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(0.25)
        if (now := imports(project)) != count:
            count, since = now, time.monotonic()
    return count


@pytest.mark.slow  # 35 s of edits, each waited out
def test_env_dev_reloads_once_per_edit_and_waits_out_a_syntax_error(start_server, tmp_path: Path) -> None:
    """A FastAPI app on every server at once (each from its own project directory), so the quiet ten seconds
    are spent once: no change is announced while nothing changes, one line per edit (watchfiles' own is not)."""
    projects = {server: tmp_path / server for server in SERVERS}
    running = {}
    for server, project in projects.items():
        project.mkdir()
        (project / "main.py").write_text(APP_TEMPLATE.format(body="before"))
        running[server] = start_server(
            "env=dev", f"server={server}", "app=main:app", ready_path="/", cwd=project, users_defaults=True
        )
    for server, project in projects.items():
        assert body(running[server].url + "/") == "before"
        assert list((project / "outputs").glob("*/*/pyfly_hydra.log")), "the run's record is where Hydra puts it"

    # Ten quiet seconds, with the servers writing their own logs (env=dev: debug and access log): no reload.
    started = {server: settle_imports(project) for server, project in projects.items()}
    deadline = time.monotonic() + IDLE_SECONDS
    while time.monotonic() < deadline:
        for server in SERVERS:
            assert body(running[server].url + "/") == "before", server
        time.sleep(0.5)
    for server, project in projects.items():
        assert imports(project) == started[server], f"{server} reloaded without an edit:\n{running[server].log()}"
        assert detected_lines(running[server].log()) == [], running[server].log()

    # One edit: the new code is served, after exactly one more import (one worker, one reload).
    for project in projects.values():
        (project / "main.py").write_text(APP_TEMPLATE.format(body="after"))
    for server_running in running.values():
        wait_for_body(server_running.url + "/", "after", server_running.log())
    for server, project in projects.items():
        assert settle_imports(project) == started[server] + 1, running[server].log()
        assert len(detected_lines(running[server].log())) == 1, running[server].log()

    # A syntax error is reported and each server waits for the fix instead of stopping.
    for project in projects.values():
        (project / "main.py").write_text(BROKEN)
    deadline = time.monotonic() + SERVE_WITHIN
    while time.monotonic() < deadline and not all("SyntaxError" in r.log() for r in running.values()):
        time.sleep(0.2)
    time.sleep(1)
    for server, server_running in running.items():
        log = server_running.log()
        assert "SyntaxError" in log, server
        assert server_running.process.poll() is None, log
        # One error line and the user's own frames: not the chain through importlib and the server twice.
        failures = log.count("app=main:app: importing 'main' failed at main.py")
        assert failures >= 1 and log.count("Traceback (most recent call last)") <= failures, log
        assert "HYDRA_FULL_ERROR" not in log and "The above exception" not in log and "importlib" not in log, log
    for project in projects.values():
        (project / "main.py").write_text(APP_TEMPLATE.format(body="fixed"))
    for server_running in running.values():
        wait_for_body(server_running.url + "/", "fixed", server_running.log())
    for server_running in running.values():
        assert server_running.stop() == 0, server_running.log()


def test_the_watch_rule_leaves_out_records_virtualenvs_vcs_and_caches(tmp_path: Path) -> None:
    (tmp_path / "env" / "lib").mkdir(parents=True)
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    output_dir = tmp_path / "outputs" / "2026-11-24" / "10-00-00"
    sources = watched_sources(
        dirs=[str(tmp_path)], includes=["*.py", "*.html"], excludes=["tests"], output_dir=output_dir
    )
    accepted = ["main.py", "pkg/views.py", "templates/index.html"]
    ignored = [
        "outputs/2026-11-24/10-00-00/pyfly_hydra.log",
        "outputs/2026-11-24/09-00-00/plugin.py",
        "env/lib/site.py",
        ".git/hooks/pre-commit.py",
        ".venv/lib/x.py",
        "pkg/__pycache__/views.cpython-311.pyc",
        "node_modules/a/b.py",
        "tests/test_main.py",
        "main.py~",
        ".main.py.swp",
        "README.md",
    ]
    assert [p for p in accepted if not sources.accepts(tmp_path / p)] == []
    assert [p for p in ignored if sources.accepts(tmp_path / p)] == []


def _serve_until_shutdown(control: WorkerControl) -> None:
    """A worker that serves nothing: ready at once, gone on its shutdown event."""
    control.turned()
    control.shutdown.wait(30)


def test_the_supervisor_returns_only_after_its_watcher_has_stopped(tmp_path: Path) -> None:
    """In-process: a watcher thread still inside watchfiles' Rust loop at interpreter exit is unwound through
    Rust frames and aborts the runner (SIGABRT, 'FATAL: exception not rethrown', seen on watchfiles 1.0)."""
    sources = WatchedSources(dirs=(tmp_path,), includes=("*.py",), excludes=(), ignored=())
    supervisor = Supervisor(
        _serve_until_shutdown, server="uvicorn", listeners=[], workers=1, graceful_timeout=1.0, sources=sources
    )
    stopper = threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM))
    stopper.start()
    try:
        assert supervisor.run() == 0
    finally:
        stopper.cancel()
    assert [thread for thread in threading.enumerate() if thread.name == "pyfly-hydra-reload"] == []


def _edit_then_serve(source: Path, control: WorkerControl) -> None:
    """A worker that edits a watched source while it starts (before it serves), once."""
    if not source.exists():
        source.write_text("EDITED = True\n")
    control.turned()
    control.shutdown.wait(30)


def test_an_edit_while_the_workers_start_is_a_change_to_reload_on(tmp_path: Path, caplog) -> None:
    """In-process: the watch begins before the first worker starts. It began once they served, and an edit
    made in between went unseen (CI23: hypercorn kept serving the old code of an `app_dir=..` project)."""
    sources = WatchedSources(dirs=(tmp_path,), includes=("*.py",), excludes=(), ignored=())
    supervisor = Supervisor(
        functools.partial(_edit_then_serve, tmp_path / "edited.py"),
        server="uvicorn", listeners=[], workers=1, graceful_timeout=1.0, sources=sources,
    )  # fmt: skip
    stopper = threading.Timer(4.0, os.kill, args=(os.getpid(), signal.SIGTERM))
    stopper.start()
    try:
        with caplog.at_level(logging.INFO, logger="pyfly_hydra"):
            assert supervisor.run() == 0
    finally:
        stopper.cancel()
    assert "changes detected in" in caplog.text and "edited.py" in caplog.text, caplog.text
