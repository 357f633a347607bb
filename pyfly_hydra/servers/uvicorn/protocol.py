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
  Here the head must be complete within ``timeout_keep_alive`` of its first byte (granian's
  header-read timeout, which the same key sets, works the same way), or the connection is closed.
  The same head may be at most ``h11_max_incomplete_event_size`` bytes (``server.max_header_bytes``;
  uvicorn hands it only to h11): a larger one is answered 431 and closed, after the responses already
  due on the connection. A head is counted on the raw stream from the start of the read it begins
  in; one that begins in the middle of a read (pipelined after the end of the previous request) is
  measured once parsed, before it reaches the app.
  Both need httptools' parser callbacks; on the h11 fallback (PyPy) h11 enforces the size alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from pyfly_hydra.worker.control import WorkerControl, idle_hold

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HTTPProtocol

    HTTPTOOLS = True  # the head deadline and size limit below hang on httptools' parser callbacks
except ImportError:  # pragma: no cover - httptools is not installable everywhere
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HTTPProtocol  # type: ignore[assignment]

    HTTPTOOLS = False


CONNECTION_CLOSE = (b"connection", b"close")


def _saying_close(send: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """A cycle's ``send`` whose response says ``Connection: close``: uvicorn up to 0.50 closes after a
    response it was told not to keep alive without saying so (later ones add the header themselves)."""

    async def send_closing(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), CONNECTION_CLOSE]}
        await send(message)

    return send_closing


HEAD_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


async def _head_too_large(scope: Any, receive: Any, send: Any) -> None:
    """The app a parsed head above the limit gets instead of the user's: 431, and the connection closed."""
    headers = [(b"content-length", b"0"), CONNECTION_CLOSE]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class IdleClosingHTTPProtocol(_HTTPProtocol):
    """uvicorn's protocol (httptools when installed, else h11) that times out silent new connections."""

    _closing_after_response = False
    control: ClassVar[WorkerControl | None] = None  # set in a worker of pyfly-hydra's supervisor
    _head_deadline: asyncio.TimerHandle | None = None
    # Bytes of the request head being read, counted from the raw stream before the parser sees them
    # (httptools buffers an unfinished header itself, so its callbacks cannot bound it). Counting
    # starts with each request and stops at the head's blank line; a head that begins in the same
    # chunk as the end of a pipelined body is counted from its next chunk on.
    _reading_head = True
    _head_bytes = 0
    _head_tail = b""  # the last bytes seen, so a blank line split across two chunks is found
    _head_rejected = False  # a head above the limit: nothing more is read from the connection
    _refusal_due = False  # its 431 waits for the responses due before it
    _read_counted = False  # the read being parsed began in a head, so its first head was counted
    _began_in_read = False  # a request began in the read being parsed
    _head_uncounted = False  # the current head began mid-read: measured once parsed

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the keep-alive timer at once; data_received cancels it."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_message_begin(self) -> None:
        """The first byte of a request: its head must be complete within the keep-alive timeout."""
        self._head_uncounted = self._began_in_read or not self._read_counted
        self._began_in_read = True
        super().on_message_begin()
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.timeout_keep_alive, self._head_timed_out)

    def data_received(self, data: bytes) -> None:
        """Refuse a request head above ``server.max_header_bytes`` (431) before parsing it; parse the rest."""
        if self._head_rejected:
            return
        if HTTPTOOLS and self._reading_head and self._head_too_large(data):
            self._head_rejected = True
            self._cancel_head_deadline()
            if self.cycle is None or (self.cycle.response_complete and not self.pipeline):
                self._refuse_head()
            else:  # answered once the responses due before it are out (on_response_complete)
                self._refusal_due = True
                self.flow.pause_reading()
            return
        self._read_counted, self._began_in_read = self._reading_head, False
        super().data_received(data)

    def _refuse_head(self) -> None:
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()

    def on_response_complete(self) -> None:
        """A refused head's 431 goes out after the last response due before it."""
        super().on_response_complete()
        if self._refusal_due and not self.pipeline and not self.transport.is_closing():
            self._refuse_head()

    def _head_too_large(self, data: bytes) -> bool:
        limit = self.config.h11_max_incomplete_event_size
        if limit is None:
            return False
        window = self._head_tail + data
        end = window.find(b"\r\n\r\n")
        if end == -1:
            self._head_bytes += len(data)
            self._head_tail = window[-3:]
        else:
            self._head_bytes += end + 4 - len(self._head_tail)
        return self._head_bytes > limit

    def on_message_complete(self) -> None:
        """The next bytes begin the next request's head."""
        self._reading_head, self._head_bytes, self._head_tail = True, 0, b""
        super().on_message_complete()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head deadline with the connection."""
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        """A request on a connection that is being shut down is answered with ``Connection: close``."""
        self._cancel_head_deadline()
        self._reading_head = False
        limit = self.config.h11_max_incomplete_event_size
        if self._head_uncounted and limit is not None and self._parsed_head_bytes() > limit:
            # Answered in its turn by an app that says 431; the connection closes after it, so nothing
            # parsed after it is served.
            self._head_rejected = True
            user_app, self.app = self.app, _head_too_large
            try:
                super().on_headers_complete()
            finally:
                self.app = user_app
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        super().on_headers_complete()
        if self._closing_after_response and self.cycle is not None:
            self.cycle.keep_alive = False
            self.cycle.send = _saying_close(self.cycle.send)  # type: ignore[method-assign]

    def _parsed_head_bytes(self) -> int:
        """The size of the head just parsed: method, target, version and every header line with its CRLF."""
        request_line = len(self.parser.get_method()) + len(self.url) + len(" HTTP/1.1\r\n") + 1
        return request_line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    def shutdown(self) -> None:
        """Graceful shutdown without closing a connection under a client that may be sending: an idle
        one is kept ``idle_hold`` seconds (a request that arrives meanwhile is answered, then closed)."""
        self._closing_after_response = True
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
