"""The runner checks the app in a short-lived fork and never imports it itself (pyfly_hydra.runner.app_check), so its
first workers fork from it, each importing the app on its own; later ones (a roll) are spawned."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pyfly_hydra.errors import ConfigError, ServeError
from pyfly_hydra.runner.app_check import app_check
from pyfly_hydra.worker.apps import AppTarget, load_app_target
from tests.conftest import SERVERS

# An app that writes, at import, the pid of the process importing it.
PID_APP = """
import os
from pathlib import Path

Path(__file__).with_name("imported-by").open("a").write(f"{os.getpid()}\\n")

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


def app_dir(tmp_path: Path, name: str, source: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return directory


def checked_app(import_string: str, **where: object) -> tuple[AppTarget, bool]:
    """The check as ``runner.serve.make_plan`` makes it, with nothing else to do while it runs."""
    with app_check(import_string, **where) as check:  # type: ignore[arg-type]
        return check.outcome()


def imported_by(directory: Path) -> list[int]:
    path = directory / "imported-by"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_the_app_is_checked_in_a_fork_and_never_imported_here(tmp_path: Path) -> None:
    directory = app_dir(tmp_path, "pid_app_here", PID_APP)
    target, apart = checked_app("pid_app_here:app", app_dir=str(directory), factory=False, interface="auto")
    assert apart and target.interface == "asgi" and target.directory == directory
    assert "pid_app_here" not in sys.modules
    [checker] = imported_by(directory)
    assert checker != os.getpid()
    assert sys.path[0] == str(directory)  # the workers inherit it


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("import no_such_module_here\n", "No module named 'no_such_module_here'"),
        ("def broken(:\n", "SyntaxError"),
        ("app = 42\n", "neither an ASGI app"),
        ("raise SystemExit(3)\n", "SystemExit"),
    ],
)
def test_an_app_that_cannot_serve_is_the_error_it_was_here(tmp_path: Path, source: str, fragment: str) -> None:
    name = f"bad_app_{abs(hash(source))}"  # each its own: this process imports it below
    directory = app_dir(tmp_path, name, source)
    with pytest.raises(ConfigError) as apart:
        checked_app(f"{name}:app", app_dir=str(directory), factory=False, interface="auto")
    assert fragment in str(apart.value)
    if "SystemExit" not in source:  # imported here, it would end this test's process
        with pytest.raises(ConfigError) as here:
            load_app_target(f"{name}:app", app_dir=str(directory), factory=False, interface="auto")
        assert str(apart.value) == str(here.value)


def test_an_import_that_kills_its_process_is_one_line(tmp_path: Path) -> None:
    directory = app_dir(tmp_path, "killing_app", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(
        ServeError, match=r"importing the app killing_app:app ended the process that checked it \(signal 9\)"
    ):
        checked_app("killing_app:app", app_dir=str(directory), factory=False, interface="auto")


def test_a_plan_that_fails_meanwhile_ends_the_check(tmp_path: Path) -> None:
    """The plan goes on while the app imports; a config error found meanwhile kills the check's fork and reaps it."""
    directory = app_dir(tmp_path, "slow_app", "import time\ntime.sleep(60)\napp = None\n")
    checker = None
    with (
        pytest.raises(ConfigError, match=r"server\.workers"),
        app_check("slow_app:app", app_dir=str(directory), factory=False, interface="auto") as check,
    ):
        checker = check.pid
        raise ConfigError("server.workers", 0, "must be at least 1")
    assert checker is not None
    with pytest.raises(ChildProcessError):  # reaped: no longer this process's child
        os.waitpid(checker, os.WNOHANG)


def test_with_a_thread_running_the_app_is_imported_here(tmp_path: Path) -> None:
    directory = app_dir(tmp_path, "pid_app_thread", PID_APP)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        _, apart = checked_app("pid_app_thread:app", app_dir=str(directory), factory=False, interface="auto")
    finally:
        stop.set()
        thread.join()
    assert not apart and imported_by(directory) == [os.getpid()]


def spawned(pid: int) -> bool:
    """Whether the process was spawned (a fresh interpreter running multiprocessing's spawn_main), not forked."""
    return any("spawn_main" in part for part in psutil.Process(pid).cmdline())


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_the_first_workers_fork_and_import_the_app_a_roll_spawns(start_server, tmp_path: Path, server: str) -> None:
    """As a user runs it, from the app's directory: the runner never imports the app; its two workers fork
    (no second interpreter) and import it each; SIGHUP's new workers are spawned and import it too."""
    directory = app_dir(tmp_path, "main", PID_APP)
    running = start_server(f"server={server}", "server.workers=2", "app=main:app", cwd=directory, ready_path="/")
    runner = psutil.Process(running.process.pid)
    workers = {child.pid for child in runner.children() if child.pid in _answering(running, 2)}
    assert len(workers) == 2
    assert not any(spawned(pid) for pid in workers), [psutil.Process(pid).cmdline() for pid in workers]
    importers = imported_by(directory)
    assert runner.pid not in importers and workers <= set(importers)
    assert len(importers) == 3  # the check, then each worker

    running.process.send_signal(signal.SIGHUP)
    rolled = _answering(running, 2, avoiding=workers)
    assert all(spawned(pid) for pid in rolled) and rolled <= set(imported_by(directory))
    assert running.stop() == 0


def _answering(running, count: int, *, avoiding: set[int] = frozenset(), timeout: float = 30) -> set[int]:
    """The pids of ``count`` workers answering ``/`` (none of ``avoiding``), each on a new connection."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(seen) < count:
        try:
            pid = int(httpx.get(f"{running.url}/", timeout=5, headers={"connection": "close"}).text)
        except httpx.HTTPError:
            continue
        if pid not in avoiding:
            seen.add(pid)
    assert len(seen) == count, seen
    return seen
