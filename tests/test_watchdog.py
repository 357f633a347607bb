"""``server.worker_timeout``: a worker whose event loop stops turning is dumped, killed and replaced.

In-process: the watchdog (standard library, inside every worker) fires only when its loop stops turning,
with the stacks of every thread. End to end on every server: an async handler that blocks its loop (a sync
call) takes its worker down with one line and the stacks in the runner's log; the server serves on.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psutil
import pytest

from pyfly_hydra.registry import SERVER_NAMES
from pyfly_hydra.worker.watchdog import stuck_stacks

CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pyfly_hydra.worker.watchdog import Watchdog

    async def main(block: bool) -> None:
        watching = Watchdog(timeout=1, stacks_dir=sys.argv[1]).started()
        until = time.monotonic() + 3
        while time.monotonic() < until:  # the loop turns: the watchdog must not fire
            watching.beat()
            await asyncio.sleep(0.05)
        if block:
            def stuck_in_a_sync_call() -> None:
                time.sleep(30)
            stuck_in_a_sync_call()
        watching.stop()
        time.sleep(3)  # stopped: it must not fire either

    asyncio.run(main(sys.argv[2] == "block"))
    print("survived")
    """
)


@pytest.mark.parametrize("block", [True, False])
def test_the_watchdog_fires_only_when_the_loop_stops_turning(tmp_path: Path, block: bool) -> None:
    started = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), "block" if block else "turn"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    stacks = stuck_stacks(str(tmp_path), child_pid(tmp_path, child))
    if block:
        assert child.returncode == 1, child.stderr
        assert stacks is not None and "stuck_in_a_sync_call" in stacks, stacks
        assert time.monotonic() - started < 20, "it fired within the timeout, not at the end of the sleep"
    else:
        assert child.returncode == 0 and "survived" in child.stdout, child.stderr
        assert stacks is None
    assert not list(tmp_path.iterdir()), "the stacks file is removed once read"


def child_pid(directory: Path, child: subprocess.CompletedProcess[str]) -> int:
    """The pid in the child's stacks file name (it has exited: its pid is only there)."""
    files = list(directory.glob("stacks-*.txt"))
    assert len(files) == 1, (files, child.stderr)
    return int(files[0].stem.removeprefix("stacks-"))


APP = textwrap.dedent(
    """
    import os
    import time


    def block_the_loop() -> None:
        time.sleep(60)


    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/block":
            block_the_loop()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
    """
)


@pytest.mark.parametrize("server", SERVER_NAMES)
def test_a_worker_whose_loop_is_blocked_is_dumped_and_replaced(start_server, tmp_path: Path, server: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "main.py").write_text(APP)
    running = start_server(
        f"server={server}", "server.workers=2", "server.worker_timeout=3", "app=main:app", cwd=project, ready_path="/"
    )
    before = {child.pid for child in psutil.Process(running.process.pid).children(recursive=True)}
    blocked = time.monotonic()
    with pytest.raises(httpx.HTTPError):
        httpx.get(running.url + "/block", timeout=30)
    assert time.monotonic() - blocked < 8, "the stuck worker's request is ended within the timeout and a second"
    deadline = time.monotonic() + 20
    while "was stuck" not in running.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    log = running.log()
    stuck = [line for line in log.splitlines() if "was stuck" in line]
    assert len(stuck) == 1 and "server.worker_timeout" in stuck[0], log
    assert 'main.py", line 7 in block_the_loop' in log, "the stuck frame, file and line, is in the log"
    answers = [httpx.get(running.url + "/", timeout=10) for _ in range(20)]  # the other worker and the new one
    assert [answer.status_code for answer in answers] == [200] * 20
    assert {int(answer.text) for answer in answers} - before, "a new worker answers"
    assert running.stop() == 0, running.log()
    assert not [line for line in running.log().splitlines() if "was stuck" in line][1:], "one line per stuck worker"
