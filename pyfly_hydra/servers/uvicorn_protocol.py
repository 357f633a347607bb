"""uvicorn's HTTP/1.1 protocol with two fixes to how connections end.

- uvicorn arms ``timeout_keep_alive`` only after a response, so a client that connects and never
  sends a byte holds the connection (and a slot of ``limit_concurrency``) forever. The same timer is
  armed on ``connection_made``; the first byte of a request cancels it, as on a kept-alive connection.
- When a worker stops (SIGTERM, or ``limit_max_requests`` reached) uvicorn closes idle keep-alive
  connections at once, racing clients that are sending their next request on them: those requests
  fail. Here an idle connection is left to answer one more request with ``Connection: close`` (or
  to reach its keep-alive timeout), so a client never loses a request it sent.
"""

from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HTTPProtocol
except ImportError:  # pragma: no cover - httptools is not installable everywhere
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HTTPProtocol  # type: ignore[assignment]


class IdleClosingHTTPProtocol(_HTTPProtocol):
    """uvicorn's protocol (httptools when installed, else h11) that times out silent new connections."""

    _closing_after_response = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the keep-alive timer at once; data_received cancels it."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_headers_complete(self) -> None:
        """A request on a connection that is being shut down is answered with ``Connection: close``."""
        super().on_headers_complete()
        if self._closing_after_response and self.cycle is not None:
            self.cycle.keep_alive = False

    def shutdown(self) -> None:
        """Graceful shutdown without closing a connection under a client that may be sending."""
        self._closing_after_response = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif self.timeout_keep_alive_task is None:  # idle with no timer: a request is arriving
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
