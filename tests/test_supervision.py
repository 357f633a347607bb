"""Workers and their runner on every server: start failures, signals, a killed runner, missing hooks.

Nothing may be lost or left behind: an app that cannot start is a non-zero exit with one error line;
no worker outlives its runner however the runner dies; every signal a runner may get has one
behaviour (pyfly_hydra.supervision.signals); a server release without an internal pyfly-hydra replaces is refused
before serving.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from pyfly_hydra.bench.process import free_port, worker_pids
from pyfly_hydra.config.schema import ServerProperties
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.servers.hooks import Hook
from pyfly_hydra.servers.uvicorn.adapter import UvicornServer
from tests.conftest import APPS_DIR, ROOT, SERVERS, assert_one_line_error, child_env, run_cli

QUIET = "server.log_level=warning"


@pytest.mark.parametrize(
    "setting",
    ["server.workers=1", "server.workers=2", "env=prod"],
)
@pytest.mark.parametrize("server", SERVERS)
def test_an_app_that_cannot_start_is_a_non_zero_exit_with_one_error_line(server: str, setting: str) -> None:
    """From the app's directory, as a user runs it: the app's lifespan startup raises."""
    result = run_cli(
        f"server={server}",
        setting,
        "server.lifespan=on",
        "app=lifespan_app:failing_startup_app",
        f"server.port={free_port()}",
        cwd=APPS_DIR,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("pyfly-hydra: error: ")]
    assert len(errors) == 1, output
    assert len(output.splitlines()) < 60, output  # a summary, not a crash loop


def _children(pid: int) -> list[psutil.Process]:
    return [psutil.Process(child) for child in worker_pids(pid)]


def _wait_for_workers(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 20
    while len(children := _children(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(children) == count, children
    return children


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("server", SERVERS)
def test_no_worker_outlives_a_runner_killed_with_sigkill(start_server, server: str) -> None:
    """``kill -9`` (or the OOM killer) of the runner: its workers die with it within 2 s."""
    running = start_server(f"server={server}", "server.workers=2", QUIET)
    workers = _wait_for_workers(running.process.pid, 2)
    os.kill(running.process.pid, signal.SIGKILL)
    running.process.wait(timeout=5)
    deadline = time.monotonic() + 2
    while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [worker.pid for worker in workers if _alive(worker)], running.log()


@pytest.mark.parametrize("server", SERVERS)
def test_signals_that_do_not_stop_leave_the_runner_and_its_workers_serving(start_server, server: str) -> None:
    """SIGUSR2 is logged and ignored, SIGUSR1 reopens the log files (tests/test_log_rotation.py; SIGHUP rolls the
    workers: tests/test_rolling_restart.py); then SIGQUIT stops the server like SIGTERM: drained, exit 0."""
    running = start_server(f"server={server}", "server.workers=2")
    workers = _wait_for_workers(running.process.pid, 2)
    said = {signal.SIGUSR2: "SIGUSR2 received: ignored", signal.SIGUSR1: "SIGUSR1: log files reopened"}
    for sig in said:
        os.kill(running.process.pid, sig)
    deadline = time.monotonic() + 10
    while not all(line in running.log() for line in said.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    for line in said.values():
        assert line in running.log(), running.log()
    with running.client(timeout=5) as client:
        assert client.get(running.url + "/").status_code == 200
    assert all(_alive(worker) for worker in workers), running.log()
    assert running.stop(signal.SIGQUIT) == 0, running.log()
    assert not [worker.pid for worker in workers if _alive(worker)]


@pytest.mark.parametrize("server", SERVERS)
def test_sighup_orphans_nothing(start_server, server: str) -> None:
    """SIGHUP never ends the runner and leaves its workers behind: it rolls them, and a stop afterwards ends
    every one, old and new."""
    running = start_server(f"server={server}", "server.workers=2", QUIET)
    _wait_for_workers(running.process.pid, 2)
    os.kill(running.process.pid, signal.SIGHUP)
    time.sleep(1)
    assert running.process.poll() is None, running.log()
    with running.client(timeout=5) as client:
        assert client.get(running.url + "/").status_code == 200
    workers = _children(running.process.pid)
    assert running.stop() == 0, running.log()
    deadline = time.monotonic() + 2
    while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [worker.pid for worker in workers if _alive(worker)]


def test_a_missing_hook_is_refused_in_one_line(tmp_path: Path) -> None:
    """A server release without an internal pyfly-hydra replaces: the run is refused naming the server,
    its version, the hook and the tested range (here a made-up hook on the installed uvicorn)."""

    class FutureUvicorn(UvicornServer):
        hooks = (*UvicornServer.hooks, Hook("uvicorn.server:Server.renamed_in_a_future_release", "supervised workers"))

    from pyfly_hydra.loops.asyncio import AsyncioLoop

    with pytest.raises(ConfigError) as raised:
        FutureUvicorn(properties=ServerProperties()).check(loop=AsyncioLoop())
    message = str(raised.value)
    assert message.startswith("server=uvicorn: uvicorn "), message
    assert "has no uvicorn.server:Server.renamed_in_a_future_release" in message, message
    assert "for supervised workers (tested: uvicorn>=" in message, message
    assert all(hook.exists() for hook in UvicornServer.hooks)


def test_a_missing_hook_on_the_command_line(tmp_path: Path) -> None:
    """The same through the runner: one line, exit 2 (a user's own adapter stands in for a newer server)."""
    conf = tmp_path / "conf" / "server"
    conf.mkdir(parents=True)
    (conf / "future.yaml").write_text("_target_: future_adapter.FutureUvicorn\n")
    (tmp_path / "future_adapter.py").write_text(
        "from pyfly_hydra.servers.hooks import Hook\n"
        "from pyfly_hydra.servers.uvicorn.adapter import UvicornServer\n\n\n"
        "class FutureUvicorn(UvicornServer):\n"
        "    hooks = (*UvicornServer.hooks, Hook('uvicorn.server:Server.gone', 'supervised workers'))\n"
    )
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    result = run_cli("--config-dir", str(tmp_path / "conf"), "server=future", cwd=tmp_path, env=env)
    assert_one_line_error(result, "uvicorn.server:Server.gone", "tested: uvicorn>=")


def test_mode_info_shows_the_tested_range_pyproject_declares() -> None:
    """The ranges come from the installed package's metadata, i.e. pyproject.toml: one fact, shown as is."""
    import tomllib

    from pyfly_hydra.config.versions import declared_range
    from pyfly_hydra.info import render_info

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    report = render_info()
    for server in SERVERS:
        (requirement,) = [r for r in extras[server] if r.startswith(server)]
        upper = requirement.split(",<")[1].split('"')[0]
        assert declared_range(server).endswith(f",<{upper}"), (server, declared_range(server))
        assert f"tested: {server}{declared_range(server)}" in report, report
