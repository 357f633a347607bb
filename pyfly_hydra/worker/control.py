"""What a worker run by pyfly-hydra's supervisor gets from it, and does with it (standard library only).

The supervisor (``pyfly_hydra.supervision.supervisor``) hands each worker process a ``WorkerControl``: an event
that tells it to drain and exit, one it sets once it serves, and its own request limit. The worker
also dies with its supervisor: a worker left behind by a runner that was killed (``kill -9``, the OOM
killer) would keep the listening socket and serve old code with nothing to stop it.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import sys
import threading
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event

from pyfly_hydra.worker.watchdog import LoopWatchdog, Watchdog

REQUESTS_JITTER = 0.10  # a worker serves server.max_requests_per_worker x (1 + up to this)
PARENT_POLL_SECONDS = 0.5  # where the kernel cannot signal a parent's death, how often the worker looks
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# When a worker stops with the whole server (not replaced), how long an idle keep-alive connection is
# kept for a request its client may be sending: a stop with nothing in flight ends this soon, whatever
# the keep-alive timeout. A worker being replaced keeps idle connections for their keep-alive timeout.
# The signals a supervised worker leaves to its supervisor: a group signal (Ctrl-C, systemd) reaches the worker
# as its shutdown event, never as a second, racing stop (``pyfly_hydra.supervision.signals`` says what each does).
SUPERVISOR_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
STOP_IDLE_GRACE = 0.25  # seconds


@dataclass(frozen=True)
class RequestLimit:
    """One worker's request limit (jitter included) and the event it sets on reaching it."""

    requests: int
    reached: Event

    @staticmethod
    def drawn(limit: int, reached: Event) -> RequestLimit:
        """``limit`` plus up to ``REQUESTS_JITTER`` more, so workers started together retire apart."""
        return RequestLimit(limit + random.randint(0, int(limit * REQUESTS_JITTER)), reached)


@dataclass
class WorkerControl:
    """A supervised worker's side of its supervisor: drain on ``shutdown``, set ``ready`` once serving.

    ``retiring`` is set before ``shutdown`` when the worker is being replaced while the server goes on:
    then its idle keep-alive connections are kept until their timeout or one more request."""

    shutdown: Event
    ready: Event
    retiring: Event
    supervisor_pid: int
    request_limit: RequestLimit | None = None
    watchdog: Watchdog | None = None
    _serving: bool = field(default=False, repr=False)
    _watching: LoopWatchdog | None = field(default=None, repr=False)
    _limit_told: bool = field(default=False, repr=False)

    def attach(self) -> None:
        """Leave the supervisor's signals to it and die with it, however it dies; call first thing in the
        worker process (it starts with those signals blocked: one that came meanwhile is dropped now)."""
        for sig in SUPERVISOR_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)
        die_with_parent(self.supervisor_pid)

    def turned(self) -> None:
        """Each turn of a serving worker's loop (a server's tick): the supervisor hears once that it serves;
        the watchdog is re-armed until the worker drains, then disarmed (its drain has its own deadline)."""
        if not self._serving:
            self._serving = True
            self.ready.set()
            if self.watchdog is not None:
                self._watching = self.watchdog.started()
        if self._watching is not None:
            if self.shutdown.is_set():
                self._watching.stop()
                self._watching = None
            else:
                self._watching.beat()

    def served(self, requests: int) -> None:
        """Tell the supervisor once this worker has served its share of requests."""
        limit = self.request_limit
        if limit is not None and not self._limit_told and requests >= limit.requests:
            self._limit_told = True
            limit.reached.set()


def idle_hold(control: WorkerControl | None, keep_alive: float) -> float:
    """How long a stopping worker keeps an idle keep-alive connection: its keep-alive timeout when it is
    being replaced, ``STOP_IDLE_GRACE`` when the whole server stops (or it runs in the runner itself)."""
    if control is not None and control.retiring.is_set():
        return keep_alive
    return min(STOP_IDLE_GRACE, keep_alive)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when ``parent_pid`` ends: the kernel's parent-death signal on Linux, a watcher
    thread elsewhere. A parent that is already gone ends this process at once."""
    # The process's own symbols (libc is loaded): ctypes.util.find_library("c") runs `ldconfig -p` in a
    # child process, in every worker, which then showed up as one more process under the server.
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform.startswith("linux") else None
    if prctl is not None and prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        if os.getppid() != parent_pid:  # it died before the signal was armed
            os._exit(1)
        return
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="pyfly-hydra-parent", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    stopped = threading.Event()
    while not stopped.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent_pid:
            os._exit(1)
