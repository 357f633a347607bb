"""In-process: a granian worker's stop signal is never lost, whenever it arrives during start-up.

granian sets its worker's signal handlers before the worker's loop runs; uvloop drops a signal that arrives
between ``add_signal_handler`` and the loop's start. A group SIGTERM in that window (CI17: the second of two
workers, 3 ms before it served) left the worker serving until the test gave up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import uvloop

from pyfly_hydra.servers.granian import worker as granian_worker
from pyfly_hydra.worker import drain
from tests.conftest import child_env

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RecordedSignal:
    """granian's WorkerSignal as the Rust side sees it: set once the worker is to stop."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()

    def set(self) -> None:
        self.stopped.set()


@pytest.fixture
def worker_signals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as a granian worker's, then back: its handlers, granian's hook, the drain state."""
    import granian._granian
    import granian._signals

    monkeypatch.setattr(granian._signals, "set_loop_signals", granian._signals.set_loop_signals)
    monkeypatch.setattr(granian._granian, "WorkerSignal", RecordedSignal)
    monkeypatch.setattr(drain, "_draining", False)
    monkeypatch.setattr(granian_worker, "_stop_came_early", False)
    monkeypatch.setattr(granian_worker, "_retiring", False)
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("new_loop", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"])
@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_between_the_handlers_and_the_loop_stops_the_worker(worker_signals, new_loop, sig) -> None:
    import granian._signals

    loop = new_loop()
    try:
        granian_worker._tell_drain_on_stop(graceful_timeout=5.0, started_with_loop=None)
        event = granian._signals.set_loop_signals(loop)  # what granian's worker calls, before its loop runs
        os.kill(os.getpid(), sig)
        loop.run_until_complete(asyncio.wait_for(event.stopped.wait(), timeout=5.0))
        assert drain.draining()
    finally:
        loop.close()


def test_a_stop_signal_while_the_app_loads_is_acted_on_once_the_handlers_are_set(worker_signals) -> None:
    import granian._signals

    loop = uvloop.new_event_loop()
    try:
        granian_worker._keep_early_stop(signal.SIGTERM, None)  # the handler take_signals sets, signalled
        granian_worker._tell_drain_on_stop(graceful_timeout=5.0, started_with_loop=None)
        event = granian._signals.set_loop_signals(loop)
        loop.run_until_complete(asyncio.wait_for(event.stopped.wait(), timeout=5.0))
    finally:
        loop.close()


TAKE_SIGNALS = """
    import os, signal
    from pyfly_hydra.servers.granian import worker
    from pyfly_hydra.worker.control import SUPERVISOR_SIGNALS

    signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)  # as a spawned worker starts (start_blocked)
    os.kill(os.getpid(), signal.SIGTERM)  # a group SIGTERM while it starts: pending
    worker.take_signals()
    print(worker._stop_came_early)
"""


def test_a_stop_signal_pending_when_the_worker_takes_its_signals_is_kept() -> None:
    """Setting SIG_IGN discards a pending signal even while it is blocked (POSIX): take_signals set every
    supervisor signal to SIG_IGN before its own handlers, and a group SIGTERM that came while the worker
    started was lost; the worker served on (CI32)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TAKE_SIGNALS)],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True", result.stdout
