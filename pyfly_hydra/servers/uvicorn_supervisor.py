"""uvicorn's supervisors, adjusted: the multiprocess one refuses new connections as soon as it stops,
and the reloader watches what ``pyfly_hydra.reload`` says.

uvicorn's parent keeps the listening socket open until every worker has drained, so after SIGTERM
the kernel still completes new connections that no worker will ever accept: they hang until the
drain ends. Closing the parent's copy first (each worker closes its own at once) refuses them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from socket import socket

from uvicorn.config import Config
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.watchfilesreload import WatchFilesReload

from pyfly_hydra.reload import WatchedSources


class ClosingMultiprocess(Multiprocess):
    """Multiprocess that refuses new connections as soon as it starts stopping."""

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
