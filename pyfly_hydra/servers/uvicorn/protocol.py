"""uvicorn's HTTP/1.1 protocol with three fixes to how connections end.

- uvicorn arms ``timeout_keep_alive`` only after a response, so a client that connects and never
  sends a byte holds the connection (and a slot of ``limit_concurrency``) forever. The same timer is
  armed on ``connection_made``; the first byte of a request cancels it, as on a kept-alive connection.
- When a worker stops uvicorn closes idle keep-alive connections at once, racing clients that are
  sending their next request on them: those requests fail. Here an idle connection is left to answer
  one more request with ``Connection: close``: a worker being replaced keeps it for its keep-alive
  timeout, so a client never loses a request it sent; a worker stopping with the whole server keeps it
  ``STOP_IDLE_GRACE`` seconds, so a stop with nothing in flight is quick whatever the keep-alive.
- uvicorn has no deadline for a request's head: a client that sends part of a request line or
  header block and stalls (or trickles a byte at a time: slowloris) holds the connection forever.
  Here a head that does not arrive whole in one read must be complete within ``timeout_keep_alive`` of
  that read (granian's header-read timeout, which the same key sets, works the same way), or the
  connection is closed. The same head may be at most ``h11_max_incomplete_event_size`` bytes
  (``server.max_header_bytes``; uvicorn hands it only to h11): a larger one is answered 431 and closed,
  after the responses already due on the connection.

A request costs next to nothing for this (uvicorn through pyfly-hydra against uvicorn alone:
docs/performance.md): nothing runs per request, only a check per read. A read that ends inside a head
(rare: a slow client, a head larger than a TCP segment) arms the deadline and starts counting the head on
the raw stream (from its target on), refusing it as soon as it is above the limit, before httptools buffers
more of it. A read larger than the limit is parsed with the app swapped for one that measures each head it
completed and answers 431 in the request's turn when it is too large; a smaller read cannot hold a head
above the limit. Both need httptools' parser; on the h11 fallback (PyPy) h11 enforces the size alone.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pyfly_hydra.worker.control import WorkerControl, idle_hold

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HTTPProtocol

    HTTPTOOLS = True  # the head deadline and size limit below need httptools' parser
except ImportError:  # pragma: no cover - httptools is not installable everywhere
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HTTPProtocol  # type: ignore[assignment]

    HTTPTOOLS = False


CONNECTION_CLOSE = (b"connection", b"close")
HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _closing(app: ASGIApp) -> ASGIApp:
    """The app of a connection being shut down: its responses say ``Connection: close``, which makes uvicorn
    close the connection after them (up to 0.50 it closed after a response it was told not to keep alive
    without saying so)."""

    async def closing_app(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), CONNECTION_CLOSE]}
            await send(message)

        await app(scope, receive, send_closing)

    return closing_app


def head_bytes(scope: Any) -> int:
    """The size of a parsed request head: request line and every header line with its CRLF, and the blank line."""
    query = scope["query_string"]
    target = len(scope["raw_path"]) + (len(query) + 1 if query else 0)
    request_line = len(scope["method"]) + 1 + target + len(" HTTP/1.1\r\n")
    return request_line + sum(len(name) + len(value) + 4 for name, value in scope["headers"]) + 2


def _measuring(app: ASGIApp, limit: int) -> ASGIApp:
    """The app of a read that may hold a head above ``limit``: such a request is answered 431 in its turn (after
    the responses due before it) and the connection closed after it, so nothing parsed after it is served."""

    async def measuring_app(scope: Any, receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http" or head_bytes(scope) <= limit:
            await app(scope, receive, send)
            return
        headers = [(b"content-length", b"0"), CONNECTION_CLOSE]
        await send({"type": "http.response.start", "status": 431, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    return measuring_app


class IdleClosingHTTPProtocol(_HTTPProtocol):
    """uvicorn's protocol (httptools when installed, else h11) that times out silent new connections and
    slow heads, and bounds a head's size."""

    control: ClassVar[WorkerControl | None] = None  # set in a worker of pyfly-hydra's supervisor
    _head_limit: float = math.inf  # server.max_header_bytes (inf: none)
    _watched_head: Any = None  # the scope of a head that spans reads, while it does
    _head_deadline: asyncio.TimerHandle | None = None
    _head_counted = 0  # bytes known to be in the watched head: at most its size
    _head_tail = b""  # the last bytes of the read before, so a blank line split across two reads is found
    _head_rejected = False  # a head above the limit: nothing more is read from the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the keep-alive timer at once (data_received cancels it); read the head limit once."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        limit = self.config.h11_max_incomplete_event_size
        if limit is not None and HTTPTOOLS:
            self._head_limit = limit

    def data_received(self, data: bytes) -> None:
        """Parse; only a read larger than the head limit, or one inside a head that spans reads, costs more."""
        if self._watched_head is not None or len(data) > self._head_limit:
            self._read_checked(data)
            return
        super().data_received(data)
        cycle = self.cycle
        if self.scope is not (cycle.scope if cycle is not None else None):  # the read ended inside a head
            self._watch_head(data)

    def _read_checked(self, data: bytes) -> None:
        if self._head_rejected:
            return
        if self._watched_head is not None and self._head_continues(data):
            return
        if self._head_limit != math.inf:
            user_app = self.app
            self.app = _measuring(user_app, int(self._head_limit))
            try:
                super().data_received(data)
            finally:
                self.app = user_app
        else:
            super().data_received(data)
        cycle = self.cycle
        if self.scope is not (cycle.scope if cycle is not None else None):
            self._watch_head(data)
        else:
            self._unwatch_head()

    def _watch_head(self, data: bytes) -> None:
        """The read ended inside a head: it must be complete within the keep-alive timeout, and is counted."""
        if self.transport.is_closing() or self.transport.get_protocol() is not self:  # a 400, a websocket
            return
        self._head_tail = data[-3:]
        if self._watched_head is self.scope:  # the same head as before this read: _head_continues counted it
            return
        self._unwatch_head()
        self._watched_head = self.scope
        self._head_deadline = self.loop.call_later(self.timeout_keep_alive, self._head_timed_out)
        # It began in this read: at least from its target on (a later copy of the target in the head itself
        # would only make this count smaller, never larger than the head).
        start = data.rfind(b" " + self.url) if self.url else -1
        self._head_counted = len(data) - start if start >= 0 else 0

    def _unwatch_head(self) -> None:
        self._watched_head = None
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_continues(self, data: bytes) -> bool:
        """A read that carries on the watched head: whether it took the head above the limit (then refused)."""
        if self._head_limit == math.inf:
            return False
        end = (self._head_tail + data).find(b"\r\n\r\n")
        self._head_counted += len(data) if end == -1 else end + 4 - len(self._head_tail)
        if self._head_counted <= self._head_limit:
            return False
        self._head_rejected = True
        self._unwatch_head()
        cycle = self.cycle
        if cycle is None or (cycle.response_complete and not self.pipeline):
            self._refuse_head()
        else:  # answered once the last response due before it is out
            last = self.pipeline[0][0] if self.pipeline else cycle
            on_response = last.on_response

            def then_refuse() -> None:
                on_response()
                if not self.transport.is_closing():
                    self._refuse_head()

            last.on_response = then_refuse
            self.flow.pause_reading()
        return True

    def _refuse_head(self) -> None:
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        self._watched_head = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head deadline with the connection."""
        self._unwatch_head()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Graceful shutdown without closing a connection under a client that may be sending: an idle
        one is kept ``idle_hold`` seconds (a request that arrives meanwhile is answered, then closed)."""
        self.app = _closing(self.app)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(self.idle_hold, self.timeout_keep_alive_handler)

    @property
    def idle_hold(self) -> float:
        """How long a stopping worker keeps an idle connection (``worker.control.idle_hold``)."""
        return idle_hold(IdleClosingHTTPProtocol.control, self.timeout_keep_alive)
