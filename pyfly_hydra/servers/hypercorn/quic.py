"""``server.http=3`` in a hypercorn worker: its own UDP socket, and a QUIC server that stops when the worker does.

Each worker binds its own socket at the port (``system.bind.datagram_socket``, SO_REUSEPORT): the kernel keeps a
client's datagrams on one worker, where one socket shared by the workers would scatter a connection's packets
among them. Rolling the workers changes that set of sockets, so a QUIC connection open across a roll may be
handed to a worker that does not know it; the client opens a new one (or falls back to TCP, which Alt-Svc left
it).

hypercorn's QUIC server (``UDPServer.run``, asyncio's and trio's) checks whether the worker is stopping only when a
datagram arrives, and ends only once it holds no connection: a worker told to stop with no QUIC traffic, or with
a connection its client left open without a request (a client that went away without closing it), waited out
``graceful_timeout`` (30 s by default). Here, once the worker stops, a connection with no request in flight is
closed after ``idle_hold`` (as an idle keep-alive TCP connection is: ``worker.control.idle_hold``), one with a
request once that is answered, and the server is woken every ``STOP_POLL_SECONDS`` (asyncio) or cancelled (trio)
as soon as it holds none (checked on hypercorn 0.17-0.18).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from socket import socket
from typing import TYPE_CHECKING, Any

from pyfly_hydra.system.bind import datagram_socket

if TYPE_CHECKING:
    from hypercorn.asyncio.udp_server import UDPServer

STOP_POLL_SECONDS = 0.05


def quic_sockets(host: str, port: int) -> list[socket]:
    """This worker's QUIC socket at ``host:port``; aioquic's per-connection log lines kept at warnings."""
    logging.getLogger("quic").setLevel(logging.WARNING)
    return [datagram_socket(host, port)]


async def _close_idle(protocol: Any) -> None:
    """Close each of ``protocol``'s QUIC connections that has no request in flight (NO_ERROR)."""
    for connection in {id(c): c for c in protocol.connections.values()}.values():
        if connection.h3 is None or not connection.h3.streams:
            connection.quic.close()
            await protocol.send_all(connection)


def _woken_at_stop(run: Callable[[UDPServer], Awaitable[None]], hold: float) -> Callable[[UDPServer], Awaitable[None]]:
    from hypercorn.events import RawData

    async def woken(self: UDPServer) -> None:
        async def wake() -> None:
            await self.context.terminated.wait()
            closing = asyncio.get_running_loop().time() + hold
            while True:  # an empty datagram: QUIC ignores it, and the loop looks at its stop condition again
                if asyncio.get_running_loop().time() >= closing:
                    await _close_idle(self.protocol)
                with contextlib.suppress(asyncio.QueueFull):  # full: the loop is awake anyway
                    self.protocol_queue.put_nowait(RawData(data=b"", address=None))
                await asyncio.sleep(STOP_POLL_SECONDS)

        waker = asyncio.ensure_future(wake())
        try:
            await run(self)
        finally:
            waker.cancel()

    return woken


def _trio_woken_at_stop(run: Callable[..., Awaitable[None]], hold: float) -> Callable[..., Awaitable[None]]:
    import trio

    async def woken(self: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:

            async def end_when_idle() -> None:
                await self.context.terminated.wait()
                closing = trio.current_time() + hold
                while not self.protocol.idle:
                    if trio.current_time() >= closing:
                        await _close_idle(self.protocol)
                    await trio.sleep(STOP_POLL_SECONDS)
                nursery.cancel_scope.cancel()  # hypercorn's loop waits in recvfrom: cancelled there

            await nursery.start(run, self)
            task_status.started()
            nursery.start_soon(end_when_idle)

    return woken


def stop_quic_with_the_worker(*, trio: bool, hold: float) -> None:
    """Patch hypercorn's QUIC server, asyncio's or trio's, in this worker process (see the module docstring):
    ``hold``, the seconds an idle connection is kept once the worker stops."""
    if trio:  # not among the adapter's hooks, which every start checks: importing it needs trio
        from hypercorn.trio import udp_server

        if not hasattr(udp_server.UDPServer, "run"):
            logging.getLogger("pyfly_hydra").warning(
                "hypercorn has no hypercorn.trio.udp_server:UDPServer.run: an HTTP/3 worker on trio waits out"
                " server.graceful_timeout when told to stop"
            )
            return
        udp_server.UDPServer.run = _trio_woken_at_stop(udp_server.UDPServer.run, hold)  # type: ignore[method-assign]
        return
    from hypercorn.asyncio.udp_server import UDPServer

    UDPServer.run = _woken_at_stop(UDPServer.run, hold)  # type: ignore[method-assign]
