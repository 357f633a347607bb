"""A drain-first supervisor for hypercorn's worker processes.

``hypercorn.run.run`` terminates every remaining worker as soon as the first one has exited, so with
workers > 1 a SIGTERM cuts in-flight requests, and a crashed worker still ends in exit 0. This
supervisor uses hypercorn's own sockets and worker functions, but on SIGINT/SIGTERM it waits for
every worker to drain (up to ``graceful_timeout`` plus a margin) and a crashed worker stops the
server with a non-zero exit code.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import WorkerFunc

logger = logging.getLogger("pyfly_hydra")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
DRAIN_MARGIN_SECONDS = 5.0
POLL_SECONDS = 0.2


def _stop(processes: list[BaseProcess], deadline: float) -> None:
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            logger.warning("hypercorn worker pid %s did not drain in time; terminating it", process.pid)
            process.terminate()
            process.join(timeout=2)
        if process.is_alive():
            process.kill()
            process.join()


def serve_workers(config: Config, worker: WorkerFunc, *, workers: int, graceful_timeout: float) -> int:
    """Run ``workers`` hypercorn worker processes on shared sockets until a signal or a crash."""
    context = multiprocessing.get_context("spawn")
    sockets = config.create_sockets()
    shutdown = context.Event()
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        shutdown.set()

    # Workers inherit SIGINT ignored, so a terminal's Ctrl-C reaches them only through `shutdown`.
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    processes: list[BaseProcess] = []
    exit_code = 0
    try:
        for _ in range(workers):
            process = context.Process(
                target=worker, kwargs={"config": config, "sockets": sockets, "shutdown_event": shutdown}
            )
            process.start()
            processes.append(process)
        for sig in STOP_SIGNALS:
            signal.signal(sig, on_signal)
        while not stopping:
            exited = wait([process.sentinel for process in processes], timeout=POLL_SECONDS)
            if exited and not stopping:
                crashed = [p for p in processes if p.exitcode is not None]
                for process in crashed:
                    logger.error("hypercorn worker pid %s exited unexpectedly (code %s)", process.pid, process.exitcode)
                exit_code = 1
                shutdown.set()
                break
        _stop(processes, time.monotonic() + graceful_timeout + DRAIN_MARGIN_SECONDS)
    finally:
        shutdown.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
    return exit_code
