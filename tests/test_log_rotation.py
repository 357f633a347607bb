"""logrotate's ``create`` + ``postrotate kill -USR1``: the run's log file moved away, a new one at its path; every
line after the signal, the runner's and each worker's access lines, goes to the new file, none is lost."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from pyfly_hydra.registry import SERVER_NAMES


@pytest.mark.parametrize("server", SERVER_NAMES)
def test_the_log_file_reopens_after_logrotate(start_server, server: str) -> None:
    running = start_server(f"server={server}", "server.workers=2", "server.access_log=true")
    log_file = running.run_dir / "pyfly_hydra.log"
    for index in range(10):  # a connection each: both workers log
        assert httpx.get(f"{running.url}/?before={index}", timeout=5).status_code == 200
    rotated = log_file.with_name("pyfly_hydra.log.1")
    log_file.rename(rotated)
    log_file.touch()
    running.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "log files reopened" not in log_file.read_text():
        assert time.monotonic() < deadline, running.log()
        time.sleep(0.1)
    for index in range(20):  # access lines are the workers' own: a worker that wrote the old file writes the new
        assert httpx.get(f"{running.url}/?after={index}", timeout=5).status_code == 200
    assert running.stop() == 0, running.log()

    new, old = log_file.read_text(), rotated.read_text()
    assert all(f"/?after={index} " in new for index in range(20)), new
    assert all(f"/?before={index} " in old for index in range(10)), old
    assert "after=" not in old and "before=" not in new
    assert f"{server} stopped (exit code 0)" in new  # the runner's own lines follow too
