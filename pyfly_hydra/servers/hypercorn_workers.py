"""A drain-first, respawning supervisor for hypercorn's worker processes.

``hypercorn.run.run`` terminates every remaining worker as soon as the first one has exited, so with
workers > 1 a SIGTERM cuts in-flight requests, a crashed worker is never replaced, and the server
still ends in exit 0. This supervisor uses hypercorn's own sockets and worker functions, but:

- on SIGINT/SIGTERM it waits for every worker to drain (up to ``graceful_timeout`` plus a margin);
- a worker that dies is respawned, unless its slot was respawned less than ``CRASH_LOOP_SECONDS``
  before: that stops the server with exit code 1 rather than spin.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.typing import WorkerFunc

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


def serve_workers(config: Config, worker: WorkerFunc, *, workers: int, graceful_timeout: float) -> int:
    """Run ``workers`` hypercorn worker processes on shared sockets until a signal or a crash loop."""
    context = multiprocessing.get_context("spawn")
    sockets = config.create_sockets()
    shutdown = context.Event()
    stopping = False

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
    exit_code = 0
    try:
        processes = [spawn() for _ in range(workers)]
        while not stopping:
            wait([process.sentinel for process in processes], timeout=POLL_SECONDS)
            for slot, process in enumerate(processes):
                if stopping or process.exitcode is None:
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
        shutdown.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _close(sockets)
    return exit_code
