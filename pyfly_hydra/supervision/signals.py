"""What each signal does to a runner: one table, applied before the server starts.

- SIGINT, SIGTERM: drain and stop (each server's own handler, or pyfly-hydra's supervisor);
- SIGQUIT: the same as SIGTERM (its default action would dump core and orphan the workers);
- SIGHUP: a rolling restart onto the app's current code (``ROLL_SIGNAL``): pyfly-hydra's supervisor's for
  uvicorn and hypercorn, granian's handler with pyfly-hydra's roll (``servers.granian.roll``);
- SIGUSR1: the runner's log files reopened (logrotate; ``system.log_files``: workers follow by themselves);
- SIGUSR2: logged and ignored.

Without this, the default action of SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 ends the runner at once,
with no drain, leaving a unix socket file behind.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing import resource_tracker
from types import FrameType

from pyfly_hydra.system.log_files import on_reopen_signal
from pyfly_hydra.worker.control import SUPERVISOR_SIGNALS

logger = logging.getLogger("pyfly_hydra")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
ROLL_SIGNAL = signal.SIGHUP  # pyfly-hydra's supervisor: roll the workers (supervision.supervisor)
LOG_REOPEN_SIGNAL = signal.SIGUSR1  # the runner's log files reopened (system.log_files)
# The rest of the signals workers leave to their supervisor (``worker.control.SUPERVISOR_SIGNALS``).
IGNORED_SIGNALS = tuple(sig for sig in SUPERVISOR_SIGNALS if sig not in (*STOP_SIGNALS, ROLL_SIGNAL, LOG_REOPEN_SIGNAL))


def log_ignored(signum: int, frame: FrameType | None) -> None:
    """The handler of ``IGNORED_SIGNALS``: one line, nothing else."""
    logger.info("%s received: ignored (SIGINT, SIGTERM or SIGQUIT stop the server)", signal.Signals(signum).name)


def _quit_as_term(signum: int, frame: FrameType | None) -> None:
    os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def runner_signals() -> Iterator[None]:
    """SIGQUIT as SIGTERM and ``IGNORED_SIGNALS`` ignored while the server runs; servers then install their
    own handlers for the signals they handle (SIGINT and SIGTERM, granian's SIGHUP)."""
    handlers = (
        {signal.SIGQUIT: _quit_as_term, LOG_REOPEN_SIGNAL: on_reopen_signal}
        | dict.fromkeys(IGNORED_SIGNALS, log_ignored)
        | {ROLL_SIGNAL: log_ignored}
    )
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_blocked(start: Callable[[], None], *, spawns: bool) -> None:
    """``start()`` a worker process (or the threads that start them) with the supervisor's signals blocked: it
    inherits the mask (through a spawn's exec too) and unblocks them once it has its own handlers, so a group
    signal during its start is neither lost nor acted on by default. Blocked, not ignored: a stop signal that
    comes meanwhile reaches the supervisor right after (SIG_IGN dropped it: CI20).

    multiprocessing's resource tracker, started by the first spawn, unblocks SIGINT and SIGTERM once it has
    started (``ResourceTracker.ensure_running``): a first worker then started with them unblocked and died
    of a group SIGTERM while it imported the app (CI31). When the start ``spawns`` it is started before the
    signals are blocked; a fork needs none (its semaphores are unlinked at once), and the tracker, a fresh
    interpreter, would take a CPU from the forked workers' start."""
    if spawns:
        resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
    try:
        start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
