"""hypercorn's workers without its stop-time races on kept-alive connections.

When a hypercorn worker is told to stop, the idle timer of every kept-alive connection wakes at once and
closes it, racing a client that is sending its next request on it: that request is lost ("Server
disconnected without sending a response"; seen in the recycling test). And a response finished while
stopping is followed by a close the client was not told of, so a client that sends at once (wrk under
load) loses the next one. Here, as pyfly-hydra's uvicorn protocol does:

- an idle connection is kept a while: for its keep-alive timeout in a worker being replaced, for
  ``STOP_IDLE_GRACE`` when the whole server stops (``worker.control.idle_hold``); a request that arrives
  first is answered (a connection the client has already closed is closed at once, as hypercorn did);
- a response sent while the worker stops says ``Connection: close``, and hypercorn then closes.

A replacement waits at most the keep-alive timeout for idle clients; a stop, ``STOP_IDLE_GRACE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pyfly_hydra.servers.hypercorn.quic import quic_sockets, stop_quic_with_the_worker
from pyfly_hydra.servers.hypercorn.request_limit import report_request_limit
from pyfly_hydra.worker import drain
from pyfly_hydra.worker.apps import import_object
from pyfly_hydra.worker.control import WorkerControl, idle_hold

_control: WorkerControl | None = None  # this worker's, when pyfly-hydra's supervisor runs it
EOF_POLL_SECONDS = 0.05  # how soon a stopping worker notices that an idle connection's client has gone

if TYPE_CHECKING:
    from hypercorn.asyncio.tcp_server import TCPServer
    from hypercorn.config import Config, Sockets
    from hypercorn.protocol.events import Event
    from hypercorn.protocol.h11 import H11Protocol


async def _idle_timeout(self: TCPServer) -> None:
    """hypercorn's own, except when the worker stops: a connection whose client is still there is kept
    ``idle_hold`` seconds (a request may be on its way); one the client has closed is closed at once."""
    loop = asyncio.get_running_loop()
    keep_alive = self.config.keep_alive_timeout
    deadline = loop.time() + keep_alive
    # Not asyncio.wait_for (hypercorn's own): on Python 3.11 it can swallow the cancellation hypercorn sends
    # when a request arrives just as the worker is told to stop, so the timer ran on under an active
    # request, hypercorn's request handling waited for it, and the connection was closed under it.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(keep_alive):
            await self.context.terminated.wait()
    if self.context.terminated.is_set():
        deadline = min(deadline, loop.time() + idle_hold(_control, keep_alive))
    while not self.reader.at_eof() and (remaining := deadline - loop.time()) > 0:
        await asyncio.sleep(min(EOF_POLL_SECONDS, remaining))
    await asyncio.shield(self._initiate_server_close())


async def _trio_idle_timeout(self: Any) -> None:
    """The same, for hypercorn's trio worker (``hypercorn.trio.tcp_server.TCPServer``): a closed connection is told
    by its socket, closed already (trio's stream cannot be peeked at for the client's end, as asyncio's reader is)."""
    import trio

    keep_alive = self.config.keep_alive_timeout
    deadline = trio.current_time() + keep_alive
    with trio.move_on_at(deadline):
        await self.context.terminated.wait()
    if self.context.terminated.is_set():
        deadline = min(deadline, trio.current_time() + idle_hold(_control, keep_alive))
    stream = getattr(self.stream, "transport_stream", self.stream)  # TLS: the socket under it
    while stream.socket.fileno() != -1 and trio.current_time() < deadline:
        await trio.sleep(min(EOF_POLL_SECONDS, deadline - trio.current_time()))
    with trio.CancelScope(shield=True):
        await self._initiate_server_close()


def _closing_when_stopping(stream_send: Callable[[H11Protocol, Event], Awaitable[None]]) -> Callable[..., Any]:
    """hypercorn's ``H11Protocol.stream_send``, adding ``Connection: close`` to a response sent while stopping."""
    from hypercorn.protocol.events import Response

    async def send(self: H11Protocol, event: Event) -> None:
        if isinstance(event, Response) and event.status_code >= 200:
            if self.context.terminated.is_set():
                event = replace(event, headers=[*event.headers, (b"connection", b"close")])
            self._pyfly_told_close = any(  # type: ignore[attr-defined]
                name.lower() == b"connection" and b"close" in value.lower() for name, value in event.headers
            )
        await stream_send(self, event)

    return send


def _kept_unless_told(maybe_recycle: Callable[[H11Protocol], Awaitable[None]]) -> Callable[..., Any]:
    """hypercorn's ``H11Protocol._maybe_recycle``, except for a response that began before the worker was told
    to stop and ended after: hypercorn closed that connection without the client being told (no
    ``Connection: close``), so a client sending at once lost its next request. It goes idle instead, and
    the idle rule above applies (one more request answered with ``Connection: close``)."""
    import h11
    from hypercorn.events import Closed, Updated

    async def recycle(self: H11Protocol) -> None:
        if not self.context.terminated.is_set() or getattr(self, "_pyfly_told_close", True):
            await maybe_recycle(self)
            return
        await self._close_stream()
        if self.connection.our_state is h11.DONE and self.connection.their_state is h11.DONE:
            try:
                self.connection.start_next_cycle()
            except h11.LocalProtocolError:
                await self.send(Closed())
            else:
                self.response = None
                self.scope = None
                await self.can_read.set()
                await self.send(Updated(idle=True))
        else:
            await self.can_read.set()
            await self.send(Closed())

    return recycle


def hold_idle_connections_through_stop(*, trio: bool) -> None:
    """Patch hypercorn in this process (each worker process calls it before serving); ``trio``: its trio worker's
    connections, checked here (the adapter's hooks, checked at every start, cannot import trio)."""
    from hypercorn.protocol.h11 import H11Protocol

    if trio:
        from hypercorn.trio import tcp_server

        if hasattr(tcp_server.TCPServer, "_idle_timeout"):
            tcp_server.TCPServer._idle_timeout = _trio_idle_timeout  # type: ignore[method-assign]
        else:
            logging.getLogger("pyfly_hydra").warning(
                "hypercorn has no hypercorn.trio.tcp_server:TCPServer._idle_timeout: on trio, idle keep-alive"
                " connections are closed the moment a worker stops (a request racing that close is lost)"
            )
    else:
        from hypercorn.asyncio.tcp_server import TCPServer

        TCPServer._idle_timeout = _idle_timeout  # type: ignore[method-assign]
    H11Protocol.stream_send = _closing_when_stopping(H11Protocol.stream_send)  # type: ignore[method-assign]
    H11Protocol._maybe_recycle = _kept_unless_told(H11Protocol._maybe_recycle)  # type: ignore[method-assign]


@dataclass(frozen=True)
class ShutdownWatch:
    """A worker's shutdown event as hypercorn polls it (every 0.1 s). hypercorn starts polling once the
    worker's servers listen, so each poll is a turn of the serving worker's loop (``WorkerControl.turned``);
    the first poll that finds it set tells ``worker.drain``."""

    control: WorkerControl

    def is_set(self) -> bool:
        self.control.turned()
        if self.control.shutdown.is_set():
            drain.started()
            return True
        return False


# hypercorn's worker function for each loop it runs (``HypercornServer.loops``), imported in the worker.
WORKERS: dict[str, str] = {
    "uvloop": "hypercorn.asyncio.run:uvloop_worker",
    "asyncio": "hypercorn.asyncio.run:asyncio_worker",
    "trio": "hypercorn.trio.run:trio_worker",
}


def serve_supervised(
    loop_name: str, config: Config, sockets: Sockets, control: WorkerControl, *, quic: tuple[str, int] | None = None
) -> None:
    """The same, as a worker process of pyfly-hydra's supervisor: it drains on ``control.shutdown`` and
    counts its requests for the supervisor; with ``quic`` (``server.http=3``) it serves HTTP/3 on its own UDP
    socket there (``servers.hypercorn.quic``)."""
    from hypercorn.utils import LifespanFailureError

    global _control
    control.attach()
    _control = control
    hold_idle_connections_through_stop(trio=loop_name == "trio")
    if control.request_limit is not None:
        report_request_limit(control, trio=loop_name == "trio")
    worker = import_object(WORKERS[loop_name])
    if quic is not None:
        sockets = replace(sockets, quic_sockets=quic_sockets(*quic))
        stop_quic_with_the_worker(trio=loop_name == "trio", hold=idle_hold(control, config.keep_alive_timeout))
    try:
        worker(config, sockets=sockets, shutdown_event=ShutdownWatch(control))
    except LifespanFailureError as exc:  # one line, not a traceback per worker: the supervisor says the rest
        logging.getLogger("hypercorn.error").error("%s", exc)
        sys.exit(1)
