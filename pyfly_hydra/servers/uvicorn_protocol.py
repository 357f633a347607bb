"""uvicorn's HTTP/1.1 protocol, with its keep-alive timer also started when a connection opens.

uvicorn arms ``timeout_keep_alive`` only after a response, so a client that connects and never sends
a byte holds the connection (and a slot of ``limit_concurrency``) forever. Arming the same timer on
``connection_made`` closes it after ``server.keep_alive_timeout`` seconds; the first byte of a request
cancels it, exactly as on a kept-alive connection.
"""

from __future__ import annotations

import asyncio

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HTTPProtocol
except ImportError:  # pragma: no cover - httptools is not installable everywhere
    from uvicorn.protocols.http.h11_impl import H11Protocol as _HTTPProtocol  # type: ignore[assignment]


class IdleClosingHTTPProtocol(_HTTPProtocol):
    """uvicorn's protocol (httptools when installed, else h11) that times out silent new connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the keep-alive timer at once; data_received cancels it."""
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
