"""pyfly-hydra's supervisor for uvicorn's and hypercorn's worker processes, one or many: drain-first,
new-before-old.

Neither server's own supervisor does what a production team needs. hypercorn's ``run`` terminates
every worker once the first one exits (a SIGTERM cuts in-flight requests, a crash is never replaced,
and the exit code is 0); uvicorn's waits out a 5 s health check before replacing workers that reached
their request limit (both can be gone at once), exits 0 when the app cannot start, and neither
replaces a worker by lifetime or memory. This one runs each server's own worker function in processes on
shared listening sockets (the start's forked from the runner, which never imports the app: ``runner.app_check``;
every later one spawned):

- on SIGINT, SIGTERM or SIGQUIT it closes the listening sockets (new connections are refused at once) and
  waits for every worker to drain (up to ``graceful_timeout`` plus a margin); workers ignore the
  signals themselves, so a group signal (Ctrl-C, systemd) reaches them only as a drain;
- on SIGHUP it rolls the workers onto the app's current code: each is replaced by a new one (spawned, so it
  imports the app afresh), one at a time, the old one draining only once the new one serves; a new worker
  that does not come up (a deploy that does not import) stops the roll and the old workers go on serving;
- SIGUSR1 reopens the runner's log files (workers follow a rotated file by themselves), SIGUSR2 is logged and
  ignored (``pyfly_hydra.supervision.signals``);
- every worker dies with the supervisor, however it dies (``WorkerControl.attach``);
- a worker that exits before it serves at startup means the app cannot start: the others are
  stopped and ``run`` raises ``StartupFailed``;
- a worker that dies later is respawned as ``pyfly_hydra.supervision.crash_policy`` says; one whose event
  loop stood still for ``worker_timeout`` seconds killed itself after dumping its stacks
  (``pyfly_hydra.worker.watchdog``), which are logged (``pyfly_hydra.supervision.stuck``);
- systemd hears ``READY=1`` once every worker serves, around each roll and ``STOPPING=1`` at the drain;
- a worker past its lifetime, over its memory limit or past its request count is replaced: the new
  one starts and, once it serves, the old one drains; one replacement at a time;
- with ``sources`` (``server.reload``), a change of the app's sources drains the workers and starts
  new ones; a worker that then dies (the edit does not import) is reported, and the supervisor waits
  for the next change.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from pyfly_hydra.errors import ServeError
from pyfly_hydra.supervision.crash_policy import CRASH_LOOP_SECONDS, CrashPolicy
from pyfly_hydra.supervision.lifecycle import WORKER_EVENTS
from pyfly_hydra.supervision.recycling import Recycling, ReplacementRetry, WorkerClock
from pyfly_hydra.supervision.rolls import Roll
from pyfly_hydra.supervision.signals import IGNORED_SIGNALS, ROLL_SIGNAL, STOP_SIGNALS, log_ignored, start_blocked
from pyfly_hydra.supervision.stuck import StuckWorkers
from pyfly_hydra.system.forking import fork_is_safe
from pyfly_hydra.system.readiness import READINESS
from pyfly_hydra.worker.control import RequestLimit, WorkerControl

if TYPE_CHECKING:
    from pathlib import Path

    from pyfly_hydra.supervision.reload import WatchedSources

logger = logging.getLogger("pyfly_hydra")

DRAIN_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.2
READY_SECONDS = 30.0  # how long a new worker may take to serve
WATCHER_STOP_SECONDS = 5.0  # watchfiles checks its stop event every 50 ms
WATCH_START_SECONDS = 10.0  # how long watchfiles may take to watch a large tree before the workers start

# A worker: called in its own process with its control; a picklable callable (spawn sends it over).
WorkerTarget = Callable[[WorkerControl], None]


class StartupFailed(ServeError):
    """A worker exited before it served at startup: the app cannot start."""


@dataclass
class Worker:
    """One worker process and its control."""

    process: BaseProcess
    control: WorkerControl
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    @property
    def serving(self) -> bool:
        return self.control.ready.is_set()


@dataclass
class Slot:
    """Where one worker runs, and when a failing one is next started."""

    worker: Worker
    respawn_at: float | None = None


class Supervisor:
    """Runs ``workers`` processes of ``target`` on shared ``listeners`` until a stop signal or a crash loop."""

    def __init__(
        self,
        target: WorkerTarget,
        *,
        server: str,
        listeners: list[socket.socket],
        workers: int,
        graceful_timeout: float,
        sources: WatchedSources | None = None,
        recycling: Recycling | None = None,
        max_requests: int | None = None,
        worker_timeout: float | None = None,
        roll_batch: int = 1,
        record: Path | None = None,
        fork_first: bool = False,
    ) -> None:
        self.target, self.server, self.listeners, self.sources = target, server, listeners, sources
        self.stuck = StuckWorkers(server, worker_timeout) if worker_timeout is not None else None
        self.record = record  # the run's startup record, where each roll is noted
        self.fork_first = fork_first  # the first workers may fork from this process (see _spawn)
        self.roll_batch = roll_batch  # workers a SIGHUP replaces at once
        self.count = workers
        self.max_requests = max_requests
        self.drain_seconds = graceful_timeout + DRAIN_MARGIN_SECONDS
        self.clock = WorkerClock(recycling) if recycling and recycling.enabled else None
        self.context = multiprocessing.get_context("spawn")
        self.slots: list[Slot] = []
        self.retiring: list[Worker] = []  # replaced workers still draining
        self.stopping = False
        self.roll_asked = False  # SIGHUP came: roll the workers at the main loop's next turn
        self.exit_code = 0
        self.changed = threading.Event()
        self.retry = ReplacementRetry()
        self.crashes = CrashPolicy(workers)
        self.reported: set[int] = set()  # reload: slots whose failed worker was reported, waiting for a change
        # The stop signal's handler writes here, so the main loop wakes at once (see _on_stop_signal).
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_w, False)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        """Takes no lock: the main thread it interrupts may be inside a worker's ``shutdown.set()`` (a
        multiprocessing lock, not reentrant). The main loop, woken through the pipe, stops the workers."""
        self.stopping = True
        with contextlib.suppress(BlockingIOError):  # a byte already waits there
            os.write(self._wakeup_w, b"\0")

    def _on_roll_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: the main loop rolls the workers (no lock taken here, see ``_on_stop_signal``)."""
        self.roll_asked = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wakeup_w, b"\0")

    def _all_workers(self) -> list[Worker]:
        return [*(slot.worker for slot in self.slots), *self.retiring]

    def _spawn(self, *, first: bool = False) -> Worker:
        """A new worker, started with the supervisor's signals blocked (``signals.start_blocked``; ``attach``
        ignores them in the worker, then unblocks): a group signal reaches it as its shutdown event.

        Spawned (a fresh interpreter importing the app's current code), except the ``first`` workers when
        ``fork_first`` (the runner holds none of the app's state: ``runner.app_check``) and no other thread runs
        here: they fork, the server's modules imported already (a second interpreter importing them again was
        most of the runner's start-up above Hydra's own), and import the app themselves."""
        context = self.context
        if first and self.fork_first and fork_is_safe():
            context = multiprocessing.get_context("fork")
        limit = None if self.max_requests is None else RequestLimit.drawn(self.max_requests, context.Event())
        events = context.Event(), context.Event(), context.Event()
        watchdog = self.stuck.watchdog if self.stuck is not None else None
        control = WorkerControl(*events, supervisor_pid=os.getpid(), request_limit=limit, watchdog=watchdog)
        process = context.Process(target=self.target, args=(control,), name=f"{self.server}-worker")
        start_blocked(process.start, spawns=context.get_start_method() != "fork")
        WORKER_EVENTS.started()
        return Worker(process, control)

    def run(self) -> int:
        """Serve until a stop signal (drain every worker, exit 0) or a crash loop (exit 1)."""
        handlers = (
            dict.fromkeys(IGNORED_SIGNALS, log_ignored)
            | dict.fromkeys(STOP_SIGNALS, self._on_stop_signal)
            | {ROLL_SIGNAL: self._on_roll_signal}
        )
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
        stop_watching = threading.Event()
        watcher: threading.Thread | None = None
        try:
            if self.sources is not None:
                # Watching before the first worker starts: an edit made while it starts, or right after it
                # serves, is a change to reload on (the watch began after the workers served: CI23 missed one).
                watcher = _watch(self.sources, self.changed, stop_watching)
            self.slots = [Slot(self._spawn(first=True)) for _ in range(self.count)]
            self._wait_until_serving()
            READINESS.serving(self.server, self.count)
            while not self.stopping:
                self._wait()
                if self.stopping:
                    break
                if self.changed.is_set():
                    self._reload()
                    continue
                if self.roll_asked:
                    self._roll()
                    continue
                self._handle_exits()
                if not self.stopping:
                    self._recycle()
            # Refuse new connections at once: each worker closes its copy when it sees its shutdown event.
            READINESS.draining(self.server)
            self._close_listeners()
            WORKER_EVENTS.exited("stopped", len(self.slots))
            _stop(self._all_workers(), time.monotonic() + self.drain_seconds, self.server)
        finally:
            stop_watching.set()
            if watcher is not None:
                # watchfiles' Rust loop sees the stop event within one step; a daemon thread still inside it at
                # interpreter exit is unwound through Rust frames and aborts the process (SIGABRT).
                watcher.join(timeout=WATCHER_STOP_SECONDS)
            for worker in self._all_workers():
                worker.control.shutdown.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_listeners()
            if self.stuck is not None:
                self.stuck.close()
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
        return self.exit_code

    def _close_listeners(self) -> None:
        for sock in self.listeners:
            sock.close()

    def _wait_until_serving(self) -> None:
        """Wait for every first worker to serve; one that exits first means the app cannot start.

        Under reload a worker that fails to import the app is reported and the edit awaited instead."""
        for slot in self.slots:
            worker = slot.worker
            while not worker.control.ready.wait(POLL_SECONDS) and not self.stopping:
                if worker.process.exitcode is None:
                    continue
                if self.sources is not None:
                    break  # _handle_exits reports it and waits for a change
                _stop(self._all_workers(), time.monotonic() + self.drain_seconds, self.server)
                raise StartupFailed(
                    f"the app failed to start: {self.server} worker pid {worker.pid} exited"
                    f" (exit {worker.process.exitcode}) before serving; its log above says why"
                )

    def _wait(self) -> None:
        """Until a worker exits, the stop signal comes, or ``POLL_SECONDS`` (a change, a recycling check)."""
        alive = [w.process.sentinel for w in self._all_workers() if w.process.exitcode is None]
        wait([*alive, self._wakeup_r], timeout=POLL_SECONDS)
        for worker in [w for w in self.retiring if w.process.exitcode is not None]:
            worker.process.join()
            self.retiring.remove(worker)
            if self.stuck is not None:
                self.stuck.found(worker.pid)

    def _reload(self) -> None:
        self.changed.clear()
        WORKER_EVENTS.exited("reloaded", len(self.slots))
        _stop([slot.worker for slot in self.slots], time.monotonic() + self.drain_seconds, self.server)
        self.slots = [Slot(self._spawn()) for _ in range(self.count)]
        self.reported.clear()

    def _handle_exits(self) -> None:
        now = time.monotonic()
        for index, slot in enumerate(self.slots):
            worker = slot.worker
            if slot.respawn_at is not None:
                if now >= slot.respawn_at:
                    slot.worker, slot.respawn_at = self._spawn(), None
                continue
            if worker.process.exitcode is None:
                continue
            worker.process.join()
            code = worker.process.exitcode
            stuck = self.stuck.why if self.stuck is not None and self.stuck.found(worker.pid) else None
            if self.sources is not None:
                if index not in self.reported:
                    WORKER_EVENTS.exited("crashed")
                    why = "waiting for a change to reload"
                    logger.error("%s worker pid %s exited (exit %s); %s", self.server, worker.pid, code, why)
                    self.reported.add(index)
                continue
            WORKER_EVENTS.exited("stuck" if stuck else "crashed")
            backoff = self.crashes.died(
                index,
                lived=now - worker.started,
                served=worker.serving,
                others_serving=sum(_serves(other) for other in self.slots if other is not slot),
            )
            died = f"{self.server} worker pid {worker.pid} {stuck or f'died (exit {code})'}"
            if backoff is None:
                logger.error("%s, failing since its respawn, and no worker serves; stopping", died)
                self.exit_code, self.stopping = 1, True
                return
            if backoff == 0:
                logger.error("%s; respawning it", died)
                slot.worker = self._spawn()
                continue
            soon = f"before serving or within {CRASH_LOOP_SECONDS:.0f} s of its respawn"
            logger.error("%s %s; respawning it in %.0f s", died, soon, backoff)
            slot.respawn_at = now + backoff

    def _recycle(self) -> None:
        """Replace one worker that has served its requests, or is past its lifetime or memory limit."""
        if not self.retry.allowed:
            return
        for index, slot in enumerate(self.slots):
            limit = slot.worker.control.request_limit
            if limit is not None and limit.reached.is_set() and slot.respawn_at is None:
                key = f"server.max_requests_per_worker={self.max_requests}"
                why = f"reached its limit of {limit.requests} requests ({key} + jitter)"
                self._replace(index, why, reason="recycled_requests")
                return
        if self.clock is None:
            return
        serving = {slot.worker.pid: index for index, slot in enumerate(self.slots) if _serves(slot)}
        due = self.clock.due(list(serving))
        if due is not None:
            pid, why, reason = due
            self._replace(serving[pid], why, reason=reason)

    def _roll(self) -> None:
        """SIGHUP: every worker replaced by a new one importing the app's current code, ``roll_batch`` at a
        time, new before old. A new worker that does not come up ends the roll; the workers not yet rolled
        serve on, and the next SIGHUP tries again."""
        self.roll_asked = False
        with Roll.begin(self.server, len(self.slots), self.record) as roll:
            for first in range(0, len(self.slots), self.roll_batch):
                if self.stopping:
                    return
                batch = range(first, min(first + self.roll_batch, len(self.slots)))
                old = [self.slots[index].worker.pid for index in batch]
                failed = self._start_replacements(batch, spawn=lambda: roll.start(self._spawn))
                if failed is not None:
                    if not self.stopping:
                        roll.stopped(failed)
                    return
                WORKER_EVENTS.exited("rolled", len(batch))
                for index, old_pid in zip(batch, old, strict=True):
                    roll.replace(old_pid, self.slots[index].worker.pid)
            roll.done()

    def _replace(self, index: int, why: str, *, reason: str) -> None:
        """Start a new worker in slot ``index``; once it serves, the old one drains (the others serve throughout);
        ``reason``: its exit's label (``supervision.lifecycle``)."""
        old = self.slots[index].worker.pid
        failed = self._start_replacements([index], spawn=self._spawn)
        if failed is None:
            WORKER_EVENTS.exited(reason)
            logger.info("%s worker pid %s %s; replaced by pid %s", self.server, old, why, self.slots[index].worker.pid)
        elif not self.stopping:
            self.retry.failed(failed, kept_pid=old)

    def _start_replacements(self, indexes: Sequence[int], *, spawn: Callable[[], Worker]) -> str | None:
        """New workers for the slots ``indexes`` (from ``spawn``), all serving, and the old ones draining; else
        how one did not come up (the others of the batch stopped, the old ones serving on)."""
        new = {index: spawn() for index in indexes}
        deadline = time.monotonic() + READY_SECONDS
        for worker in new.values():
            while not worker.control.ready.wait(POLL_SECONDS):
                if self.stopping or worker.process.exitcode is not None or time.monotonic() > deadline:
                    _stop(list(new.values()), time.monotonic() + self.drain_seconds, self.server)
                    WORKER_EVENTS.exited("stopped" if self.stopping else "crashed")
                    WORKER_EVENTS.exited("stopped", len(new) - 1)
                    code = worker.process.exitcode
                    failure = f"exited with {code} before serving" if code is not None else "did not serve in time"
                    return f"{self.server} worker pid {worker.pid} did not come up ({failure})"
        for index, worker in new.items():
            old, self.slots[index].worker = self.slots[index].worker, worker
            old.control.retiring.set()
            old.control.shutdown.set()
            self.retiring.append(old)
        return None


def _serves(slot: Slot) -> bool:
    return slot.respawn_at is None and slot.worker.process.exitcode is None and slot.worker.serving


def _stop(workers: list[Worker], deadline: float, server: str) -> None:
    for worker in workers:
        worker.control.shutdown.set()
    for worker in workers:
        worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.process.is_alive():
            logger.warning("%s worker pid %s did not drain in time; killing it", server, worker.pid)
            worker.process.kill()
            worker.process.join()


def _watch(sources: WatchedSources, changed: threading.Event, stop: threading.Event) -> threading.Thread:
    """A thread that sets ``changed`` whenever the sources change, until ``stop`` is set; returned once
    watchfiles watches (its first look at ``stop`` comes after its watches are in place)."""
    import watchfiles

    watching = threading.Event()

    class StopOnceWatching:
        def is_set(self) -> bool:
            watching.set()
            return stop.is_set()

    def run() -> None:
        watch_filter = sources.filter_class()()
        for changes in watchfiles.watch(*sources.dirs, watch_filter=watch_filter, stop_event=StopOnceWatching()):
            files = ", ".join(sorted({path for _, path in changes}))
            logger.info("changes detected in %s; reloading the workers", files)
            changed.set()

    thread = threading.Thread(target=run, name="pyfly-hydra-reload", daemon=True)
    thread.start()
    if not watching.wait(WATCH_START_SECONDS):
        logger.warning("reload: watching the sources took over %.0f s; serving meanwhile", WATCH_START_SECONDS)
    return thread
