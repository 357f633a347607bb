"""A drain-first, respawning (and, asked to, reloading) supervisor for hypercorn's worker processes.

``hypercorn.run.run`` terminates every remaining worker as soon as the first one has exited, so with
workers > 1 a SIGTERM cuts in-flight requests, a crashed worker is never replaced, and the server
still ends in exit 0. Its reloader polls every imported module and stops the server when the edited
code fails to import. This supervisor uses hypercorn's own sockets and worker functions, but:

- on SIGINT/SIGTERM it waits for every worker to drain (up to ``graceful_timeout`` plus a margin);
- a worker that dies is respawned, unless its slot was respawned less than ``CRASH_LOOP_SECONDS``
  before: that stops the server with exit code 1 rather than spin;
- with ``sources`` (``server.reload``), a change of the app's sources drains the workers and starts
  new ones; a worker that then dies (the edit does not import) is reported and the supervisor waits
  for the next change;
- with ``recycling``, a worker past its lifetime or over its memory limit is replaced, and with
  ``max_requests`` one that has served its requests (``hypercorn_request_limit``): the new one starts,
  and once it serves (at most ``READY_SECONDS``) the old one drains. Each worker has its own shutdown
  event, so one can drain while the others serve.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType
from typing import TYPE_CHECKING

from pyfly_hydra.recycling import Recycling, ReplacementRetry, WorkerClock
from pyfly_hydra.servers.hypercorn_request_limit import RequestLimit

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.typing import WorkerFunc

    from pyfly_hydra.reload import WatchedSources

logger = logging.getLogger("pyfly_hydra")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DRAIN_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.2
CRASH_LOOP_SECONDS = 5.0
READY_SECONDS = 30.0  # how long a replacement may take to serve before it is given up and the old one kept


@dataclass(frozen=True)
class Worker:
    """One hypercorn worker process, the event that tells it to drain and exit, the one it sets once it
    serves, and its request limit (if any)."""

    process: BaseProcess
    shutdown: Event
    ready: Event
    request_limit: RequestLimit | None = None

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid


@dataclass(frozen=True)
class ShutdownWatch:
    """A worker's shutdown event as hypercorn watches it. hypercorn starts polling it once the worker's
    servers listen, so the first poll also sets ``ready``: the worker serves."""

    shutdown: Event
    ready: Event

    def is_set(self) -> bool:
        self.ready.set()
        return self.shutdown.is_set()


def _close(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()


def _stop(workers: list[Worker], deadline: float) -> None:
    for worker in workers:
        worker.shutdown.set()
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.process.is_alive():
            logger.warning("hypercorn worker pid %s did not drain in time; killing it", worker.pid)
            worker.process.kill()
            worker.process.join()


def _watch(sources: WatchedSources, changed: threading.Event, stop: threading.Event) -> threading.Thread:
    """A thread that sets ``changed`` whenever the sources change, until ``stop`` is set."""
    import watchfiles

    def run() -> None:
        watch_filter = sources.filter_class()()
        for changes in watchfiles.watch(*sources.dirs, watch_filter=watch_filter, stop_event=stop):
            files = ", ".join(sorted({path for _, path in changes}))
            logger.info("changes detected in %s; reloading hypercorn's workers", files)
            changed.set()

    thread = threading.Thread(target=run, name="pyfly-hydra-reload", daemon=True)
    thread.start()
    return thread


class Supervisor:
    """Runs ``workers`` hypercorn worker processes on shared ``sockets`` until a signal or a crash loop."""

    def __init__(
        self,
        config: Config,
        worker: WorkerFunc,
        *,
        sockets: Sockets,
        workers: int,
        graceful_timeout: float,
        sources: WatchedSources | None = None,
        recycling: Recycling | None = None,
        max_requests: int | None = None,
    ) -> None:
        self.config, self.worker, self.sockets, self.sources = config, worker, sockets, sources
        self.count = workers
        self.max_requests = max_requests
        self.drain_seconds = graceful_timeout + DRAIN_MARGIN_SECONDS
        self.clock = WorkerClock(recycling) if recycling and recycling.enabled else None
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[Worker] = []
        self.retiring: list[Worker] = []  # replaced workers still draining
        self.stopping = False
        self.exit_code = 0
        self.changed = threading.Event()
        self.respawned_at: dict[int, float] = {}  # slot -> when its worker was last replaced
        self.retry = ReplacementRetry()
        self.reported: set[int] = set()  # reload: slots whose failed worker was reported, waiting for a change

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for worker in self.workers:
            worker.shutdown.set()

    def _spawn(self) -> Worker:
        # Workers start with SIGINT and SIGTERM ignored: a terminal's Ctrl-C or a service manager's
        # SIGTERM to the whole group reaches them only through their shutdown event, so they drain.
        shutdown, ready = self.context.Event(), self.context.Event()
        request_limit = (
            None if self.max_requests is None else RequestLimit.drawn(self.max_requests, self.context.Event())
        )
        current = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            process = self.context.Process(
                target=self.worker,
                kwargs={
                    "config": self.config,
                    "sockets": self.sockets,
                    "shutdown_event": ShutdownWatch(shutdown, ready),
                    "request_limit": request_limit,
                },
            )
            process.start()
        finally:
            for sig, handler in current.items():
                signal.signal(sig, handler)
        return Worker(process, shutdown, ready, request_limit)

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM (drain every worker, exit 0) or a crash loop (exit 1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        stop_watching = threading.Event()
        try:
            if self.sources is not None:
                _watch(self.sources, self.changed, stop_watching)
            self.workers = [self._spawn() for _ in range(self.count)]
            while not self.stopping:
                self._wait()
                if self.stopping:
                    break
                if self.changed.is_set():
                    self._reload()
                    continue
                self._handle_exits()
                if not self.stopping:
                    self._recycle()
            # Refuse new connections at once: each worker closes its copy when it sees its shutdown event.
            _close(self.sockets)
            _stop([*self.workers, *self.retiring], time.monotonic() + self.drain_seconds)
        finally:
            stop_watching.set()
            for worker in [*self.workers, *self.retiring]:
                worker.shutdown.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _close(self.sockets)
        return self.exit_code

    def _wait(self) -> None:
        alive = [w.process.sentinel for w in [*self.workers, *self.retiring] if w.process.exitcode is None]
        if alive:
            wait(alive, timeout=POLL_SECONDS)
        else:  # reload: every worker failed to start, so only a change can wake us
            time.sleep(POLL_SECONDS)
        for worker in [w for w in self.retiring if w.process.exitcode is not None]:
            worker.process.join()
            self.retiring.remove(worker)

    def _reload(self) -> None:
        self.changed.clear()
        _stop(self.workers, time.monotonic() + self.drain_seconds)
        self.workers = [self._spawn() for _ in range(self.count)]
        self.reported.clear()

    def _handle_exits(self) -> None:
        for slot, worker in enumerate(self.workers):
            if worker.process.exitcode is None:
                continue
            if self.sources is not None:
                if slot not in self.reported:
                    logger.error(
                        "hypercorn worker pid %s exited (exit %s); waiting for a change to reload",
                        worker.pid,
                        worker.process.exitcode,
                    )
                    self.reported.add(slot)
                continue
            now = time.monotonic()
            if now - self.respawned_at.get(slot, -math.inf) < CRASH_LOOP_SECONDS:
                logger.error(
                    "hypercorn worker pid %s died (exit %s) within %.0f s of being respawned; stopping",
                    worker.pid,
                    worker.process.exitcode,
                    CRASH_LOOP_SECONDS,
                )
                self.exit_code, self.stopping = 1, True
                return
            logger.error("hypercorn worker pid %s died (exit %s); respawning it", worker.pid, worker.process.exitcode)
            worker.process.join()
            self.workers[slot] = self._spawn()
            self.respawned_at[slot] = now

    def _recycle(self) -> None:
        """Replace one worker that has served its requests, or is past its lifetime or memory limit."""
        if not self.retry.allowed:
            return
        for slot, worker in enumerate(self.workers):
            if worker.request_limit is not None and worker.request_limit.reached.is_set():
                limit, key = worker.request_limit.requests, f"server.max_requests_per_worker={self.max_requests}"
                why = f"reached its limit of {limit} requests ({key} + jitter)"
                self._replace(slot, why)
                return
        if self.clock is None:
            return
        due = self.clock.due([w.pid for w in self.workers if w.process.exitcode is None])
        if due is not None:
            pid, why = due
            self._replace(next(i for i, w in enumerate(self.workers) if w.pid == pid), why)

    def _replace(self, slot: int, why: str) -> None:
        """Start a new worker in ``slot``; once it serves, the old one drains (the others serve throughout)."""
        old, new = self.workers[slot], self._spawn()
        deadline = time.monotonic() + READY_SECONDS
        while not new.ready.wait(POLL_SECONDS):
            if self.stopping or new.process.exitcode is not None or time.monotonic() > deadline:
                _stop([new], time.monotonic() + self.drain_seconds)
                if not self.stopping:
                    self.retry.failed(f"hypercorn worker pid {new.pid} did not come up", kept_pid=old.pid)
                return
        self.workers[slot] = new
        logger.info("hypercorn worker pid %s %s; replaced by pid %s", old.pid, why, new.pid)
        old.shutdown.set()
        self.retiring.append(old)
