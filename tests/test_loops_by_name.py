"""The loops chosen by name only (never by ``auto``): rloop on granian and uvicorn, trio on hypercorn; each in
every worker, refused in one line where a server cannot run it."""

from __future__ import annotations

import time
from importlib.metadata import version

import httpx
import pytest
import trio
from packaging.version import Version

from pyfly_hydra.servers.uvicorn.adapter import LOOP_FACTORIES_SINCE
from pyfly_hydra.worker.async_library import TrioDeadline, library_of
from tests.conftest import assert_one_line_error, run_cli
from tests.test_loops_per_worker import sample_workers

WORKERS = 2


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_rloop_runs_in_every_worker(start_server, server: str) -> None:
    if server == "uvicorn" and Version(version("uvicorn")) < LOOP_FACTORIES_SINCE:  # the oldest tier's uvicorn
        assert_one_line_error(run_cli("server=uvicorn", "loop=rloop"), "loop=rloop", "upgrade it")
        return
    running = start_server(f"server={server}", "loop=rloop", f"server.workers={WORKERS}")
    seen = sample_workers(running.url, want=WORKERS)
    assert len(seen) == WORKERS, f"only saw workers {seen} on {server}"
    assert set(seen.values()) == {"rloop.loop.RLoop"}, seen
    assert running.stop() == 0, running.log()


def test_a_trio_app_answers_from_both_hypercorn_workers(start_server) -> None:
    running = start_server("server=hypercorn", "loop=trio", f"server.workers={WORKERS}", "app=trio_app:app")
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < WORKERS and time.monotonic() < deadline:
        with httpx.Client(timeout=5) as client:  # a new connection each time, so the workers take turns
            answer = client.get(running.url + "/")
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"] == "Task", answer.text  # trio's own task: the app runs on trio
        pids.add(answer.json()["pid"])
    assert len(pids) == WORKERS, pids
    assert running.stop() == 0, running.log()


def test_the_demo_and_a_fastapi_app_serve_on_trio(start_server) -> None:
    """The demo says trio on /loop; FastAPI (anyio) serves on trio as it does on asyncio."""
    demo = start_server("server=hypercorn", "loop=trio")
    assert httpx.get(demo.url + "/loop", timeout=5).json()["loop"] == "trio"
    assert httpx.get(demo.url + "/io?ms=5", timeout=5).json() == {"waited_ms": 5.0}
    assert demo.stop() == 0, demo.log()
    fastapi = start_server("server=hypercorn", "loop=trio", "app=fastapi_app:app")
    answer = httpx.get(fastapi.url + "/whoami", timeout=5)
    assert answer.status_code == 200 and answer.json()["client"] == "127.0.0.1", answer.text
    assert fastapi.stop() == 0, fastapi.log()


@pytest.mark.parametrize(
    ("server", "loop", "runs_it"),
    [
        ("uvicorn", "trio", "server=hypercorn runs it"),
        ("granian", "trio", "server=hypercorn runs it"),
        ("hypercorn", "rloop", "server=granian or server=uvicorn runs it"),
    ],
)
def test_a_server_that_cannot_run_the_loop_is_one_line(server: str, loop: str, runs_it: str) -> None:
    result = run_cli(f"server={server}", f"loop={loop}")
    assert_one_line_error(result, f"loop={loop}", f"{server} cannot run this loop", runs_it)


def test_trios_deadline_raises_what_asyncios_does() -> None:
    async def waits(seconds: float) -> str:
        async with TrioDeadline(0.05):
            await trio.sleep(seconds)
        return "in time"

    assert trio.run(waits, 0) == "in time"
    with pytest.raises(TimeoutError):
        trio.run(waits, 5)
    assert (library_of("trio"), library_of("rloop"), library_of("uvloop")) == ("trio", "asyncio", "asyncio")
