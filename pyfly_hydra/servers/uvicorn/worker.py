"""A uvicorn worker process run by pyfly-hydra's supervisor (``pyfly_hydra.supervision.supervisor``).

uvicorn's ``Server`` as it is, with three hooks (``on_tick``, ``handle_exit``, ``started``; checked on
uvicorn 0.34-0.55):

- every tick (0.1 s) it tells the supervisor once it serves, and how many requests it has served
  (the supervisor replaces it at ``server.max_requests_per_worker``, new worker first: uvicorn's own
  limit makes a worker exit before any replacement exists);
- it drains when the supervisor says so, and ignores SIGINT/SIGTERM itself: a group signal reaches it
  through the supervisor, never as a second, racing stop;
- an app that fails to start makes it exit non-zero (uvicorn's ``run`` returns normally then, so the
  exit code was 0).
"""

from __future__ import annotations

import sys
from socket import socket
from types import FrameType

from uvicorn import Config, Server

from pyfly_hydra.servers.uvicorn.protocol import IdleClosingHTTPProtocol
from pyfly_hydra.worker import drain
from pyfly_hydra.worker.control import WorkerControl

STARTUP_FAILED = 3  # uvicorn's own exit code for a startup failure


class DrainingServer(Server):
    """uvicorn's server, telling ``worker.drain`` when it starts to stop, one tick before it does: open
    websockets are closed with 1001 (going away) first, where uvicorn's own shutdown sends 1012."""

    _drain_told = False

    async def on_tick(self, counter: int) -> bool:
        if not await super().on_tick(counter):
            return False
        if not self._drain_told:
            self._drain_told = True
            drain.started()
            return False
        return True


class SupervisedServer(DrainingServer):
    """uvicorn's server, drained and counted by pyfly-hydra's supervisor."""

    def __init__(self, config: Config, *, control: WorkerControl) -> None:
        super().__init__(config)
        self.control = control

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop signals reach this worker as its shutdown event (see the module docstring)."""

    async def on_tick(self, counter: int) -> bool:
        if self.started:
            self.control.turned()
        self.control.served(self.server_state.total_requests)
        if self.control.shutdown.is_set():
            self.should_exit = True
        return await super().on_tick(counter)


def serve(config: Config, sockets: list[socket], control: WorkerControl) -> None:
    """Serve on ``sockets`` until the supervisor says stop; exit non-zero when the app cannot start."""
    control.attach()
    config.configure_logging()
    IdleClosingHTTPProtocol.control = control
    server = SupervisedServer(config, control=control)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILED)
