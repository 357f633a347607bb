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
  for the next change.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.typing import WorkerFunc

    from pyfly_hydra.reload import WatchedSources

logger = logging.getLogger("pyfly_hydra")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DRAIN_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.2
CRASH_LOOP_SECONDS = 5.0


def _close(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()


def _stop(processes: list[BaseProcess], deadline: float) -> None:
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            logger.warning("hypercorn worker pid %s did not drain in time; killing it", process.pid)
            process.kill()
            process.join()


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


def serve_workers(
    config: Config,
    worker: WorkerFunc,
    *,
    sockets: Sockets,
    workers: int,
    graceful_timeout: float,
    sources: WatchedSources | None = None,
) -> int:
    """Run ``workers`` hypercorn worker processes on shared ``sockets`` until a signal or a crash loop."""
    context = multiprocessing.get_context("spawn")
    shutdown = context.Event()
    stopping = False
    changed, stop_watching = threading.Event(), threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        shutdown.set()

    def spawn() -> BaseProcess:
        # Workers start with SIGINT and SIGTERM ignored: a terminal's Ctrl-C or a service manager's
        # SIGTERM to the whole group reaches them only through `shutdown`, so they drain, never die.
        current = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            process = context.Process(
                target=worker, kwargs={"config": config, "sockets": sockets, "shutdown_event": shutdown}
            )
            process.start()
        finally:
            for sig, handler in current.items():
                signal.signal(sig, handler)
        return process

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    processes: list[BaseProcess] = []
    respawned_at: dict[int, float] = {}  # slot -> when its worker was last replaced
    reported: set[int] = set()  # reload: slots whose failed worker was reported, waiting for a change
    exit_code = 0
    try:
        if sources is not None:
            _watch(sources, changed, stop_watching)
        processes = [spawn() for _ in range(workers)]
        while not stopping:
            alive = [process.sentinel for process in processes if process.exitcode is None]
            if alive:
                wait(alive, timeout=POLL_SECONDS)
            else:  # reload: every worker failed to start, so only a change can wake us
                time.sleep(POLL_SECONDS)
            if changed.is_set() and not stopping:
                changed.clear()
                shutdown.set()
                _stop(processes, time.monotonic() + graceful_timeout + DRAIN_MARGIN_SECONDS)
                shutdown = context.Event()
                processes = [spawn() for _ in range(workers)]
                reported.clear()
                continue
            for slot, process in enumerate(processes):
                if stopping or process.exitcode is None:
                    continue
                if sources is not None:
                    if slot not in reported:
                        logger.error(
                            "hypercorn worker pid %s exited (exit %s); waiting for a change to reload",
                            process.pid,
                            process.exitcode,
                        )
                        reported.add(slot)
                    continue
                now = time.monotonic()
                if now - respawned_at.get(slot, -math.inf) < CRASH_LOOP_SECONDS:
                    logger.error(
                        "hypercorn worker pid %s died (exit %s) within %.0f s of being respawned; stopping",
                        process.pid,
                        process.exitcode,
                        CRASH_LOOP_SECONDS,
                    )
                    exit_code, stopping = 1, True
                    shutdown.set()
                    break
                logger.error("hypercorn worker pid %s died (exit %s); respawning it", process.pid, process.exitcode)
                process.join()
                processes[slot] = spawn()
                respawned_at[slot] = now
        # Refuse new connections at once: each worker closes its copy when it sees `shutdown`.
        _close(sockets)
        _stop(processes, time.monotonic() + graceful_timeout + DRAIN_MARGIN_SECONDS)
    finally:
        stop_watching.set()
        shutdown.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _close(sockets)
    return exit_code
