"""uvicorn's supervisors, adjusted: the multiprocess one refuses new connections as soon as it stops
and recycles workers by lifetime and memory, and the reloader watches what ``pyfly_hydra.reload`` says.

uvicorn's parent keeps the listening socket open until every worker has drained, so after SIGTERM
the kernel still completes new connections that no worker will ever accept: they hang until the
drain ends. Closing the parent's copy first (each worker closes its own at once) refuses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from socket import socket

from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process
from uvicorn.supervisors.watchfilesreload import WatchFilesReload

from pyfly_hydra.recycling import Recycling, ReplacementRetry, WorkerClock
from pyfly_hydra.reload import WatchedSources

logger = logging.getLogger("pyfly_hydra")


class ClosingMultiprocess(Multiprocess):
    """Multiprocess that refuses new connections as soon as it starts stopping, and recycles workers."""

    def __init__(self, config: Config, *, sockets: list[socket], recycling: Recycling) -> None:
        super().__init__(config, sockets)
        self.clock = WorkerClock(recycling) if recycling.enabled else None
        self.retry = ReplacementRetry()

    def keep_subprocess_alive(self) -> None:
        """Respawn dead workers (uvicorn's own), then replace one worker that is due, if any."""
        super().keep_subprocess_alive()
        if self.clock is None or self.should_exit.is_set() or not self.retry.allowed:
            return
        due = self.clock.due([process.pid for process in self.processes if process.pid is not None])
        if due is not None:
            pid, why = due
            self._replace(next(i for i, process in enumerate(self.processes) if process.pid == pid), why)

    def _replace(self, index: int, why: str) -> None:
        """Bring a new worker into service (health-checked), then let the old one drain and exit."""
        old = self.processes[index]
        new = Process(self.config, self.sockets)
        new.start()
        if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
            new.kill()
            new.join()
            if not self.should_exit.is_set():
                self.retry.failed(f"uvicorn worker pid {new.pid} was not ready in time", kept_pid=old.pid)
            return
        logger.info("uvicorn worker pid %s %s; replaced by pid %s", old.pid, why, new.pid)
        self.processes[index] = new
        old.terminate()
        old.join()

    def terminate_all(self) -> None:
        """Close the listening sockets, then ask the workers to drain and stop."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


class SourceReload(WatchFilesReload):
    """uvicorn's watchfiles reloader with pyfly-hydra's rule for which changes reload."""

    def __init__(
        self,
        config: Config,
        *,
        target: Callable[[list[socket] | None], None],
        sockets: list[socket],
        sources: WatchedSources,
    ) -> None:
        super().__init__(config, target, sockets)
        self.watch_filter = self._accepts
        self.sources = sources

    def _accepts(self, path: Path) -> bool:
        return self.sources.accepts(path)
