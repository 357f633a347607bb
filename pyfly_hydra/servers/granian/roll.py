"""SIGHUP on granian: a rolling restart that waits for each new worker to serve before an old one drains.

granian's own ``_reload`` starts a new worker, sleeps ``respawn_interval`` (3.5 s) and stops the old one
whether the new one serves or not: a deploy that does not import, or an app slower to start than that,
leaves no worker. Here the old worker is retired (``GroupSignalWorker.terminate``) only once the new one has
said it serves (``worker.tell_serving``); a new worker that does not serve stops the roll, is kept out of
the crash policy, and the workers not yet rolled serve on. Workers are always spawned (``adapter``), so each
new one imports the app's current code.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

from pyfly_hydra.supervision.rolls import Roll

logger = logging.getLogger("pyfly_hydra")

READY_SECONDS = 60.0  # how long a new worker may take to serve before the roll gives up on it
POLL_SECONDS = 0.1


class ServingReports:
    """The pids of the workers that serve, as each reports itself on a pipe (``worker.tell_serving``).

    A thread reads the pipe, so systemd hears ``READY=1`` once every worker of the start serves, whatever
    granian's main loop is doing."""

    def __init__(self) -> None:
        self._reader, self.writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
        self._serving: set[int] = set()
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="pyfly-hydra-serving-reports", daemon=True)
        self.on_report: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join()

    def _read(self) -> None:
        while not self._closed.is_set():
            if not self._reader.poll(POLL_SECONDS):
                continue
            pid = self._reader.recv()
            with self._changed:
                self._serving.add(pid)
                self._changed.notify_all()
            self.on_report()

    def all_serve(self, pids: list[int]) -> bool:
        """Whether every one of ``pids`` has said it serves."""
        with self._changed:
            return all(pid in self._serving for pid in pids)

    def wait(self, pid: int, *, alive: Callable[[], bool], stopping: Callable[[], bool]) -> str | None:
        """None once worker ``pid`` serves; else why it will not (it exited, the server stops, too slow)."""
        deadline = time.monotonic() + READY_SECONDS
        with self._changed:
            while pid not in self._serving:
                if stopping():
                    return "the server is stopping"
                if not alive():
                    return "exited before serving"
                if time.monotonic() > deadline:
                    return f"did not serve within {READY_SECONDS:.0f} s"
                self._changed.wait(POLL_SECONDS)
        return None


def roll(server: Any, spawn_target: Any, target_loader: Any, *, batch: int) -> None:
    """Replace ``server``'s workers by new ones, ``batch`` at a time, each batch serving before the old retire."""
    count = len(server.wrks)
    with Roll.begin("granian", count, server.record) as noted:
        for first in range(0, count, batch):
            slots = range(first, min(first + batch, count))
            new = {
                idx: server._spawn_worker(idx=idx, target=spawn_target, callback_loader=target_loader) for idx in slots
            }
            for worker in new.values():
                worker.on_trial = True  # its exit before serving is the roll's failure, not a crash (GroupSignalWorker)
                noted.start(worker.start)
            for worker in new.values():
                pid = worker.inner.pid
                failure = server.serving_reports.wait(pid, alive=worker.is_alive, stopping=server.stop_signal.is_set)
                if failure is not None:
                    for started in new.values():
                        if started.is_alive():
                            started.exit_reason = "stopped"
                        _stop(started, server)
                    if not server.stop_signal.is_set():
                        noted.stopped(f"granian worker pid {pid} did not come up ({failure})")
                    return
            for idx, worker in new.items():
                worker.on_trial = False
                old, server.wrks[idx] = server.wrks[idx], worker
                noted.replace(old.inner.pid, worker.inner.pid)
                old.exit_reason = "rolled"
                _stop(old, server)
        noted.done()


def _stop(worker: Any, server: Any) -> None:
    """Stop ``worker`` (an old one is retired first: ``GroupSignalWorker.terminate``), killed if it lingers."""
    worker.terminate()
    worker.join(server.workers_kill_timeout)
    if worker.is_alive():
        logger.warning("granian worker pid %s refused to stop gracefully: killed", worker.inner.pid)
        worker.kill()
        worker.join()
