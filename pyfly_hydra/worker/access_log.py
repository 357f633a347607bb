"""The access log: one line per request, the same on every server (``server.access_log``).

granian, uvicorn and hypercorn each log requests in their own format, with their own fields (uvicorn
none for the duration). pyfly-hydra logs them itself instead, from inside each worker, on the
``pyfly_hydra.access`` logger: a text line like uvicorn's plus the fields a structured formatter
reads (``client``, ``method``, ``path``, ``protocol``, ``status``, ``duration_ms``), the duration
measured from the call into the app to the end of its response. A request a server refuses before
the app sees it (a malformed or oversized head) is not in it; the server's error log says so.

Every text field is escaped (``escaped``): a path is percent-decoded by the server, so ``%0d%0a``
would otherwise end the line and let a client write a second, well-formed one, and ``%1b`` would
reach a terminal as an escape sequence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send, WSGIApp

logger = logging.getLogger("pyfly_hydra.access")

ACCESS_FIELDS = ("client", "method", "path", "protocol", "status", "duration_ms")
FORMAT = '%s - "%s %s HTTP/%s" %d %.1f ms'
# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the quote and backslash that
# delimit and escape: written as Python-style escapes, so one request is one line that reads back.
_ESCAPES: dict[int, str] = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))},
    0x22: '\\"',
    0x5C: "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def escaped(text: str) -> str:
    """``text`` with control characters, line separators, quotes and backslashes escaped."""
    return text.translate(_ESCAPES)


def log_request(*, client: str, method: str, path: str, protocol: str, status: int, started: float) -> None:
    """Log one finished request on ``pyfly_hydra.access``, every text field escaped."""
    duration_ms = (time.perf_counter() - started) * 1000
    client, method, path, protocol = escaped(client), escaped(method), escaped(path), escaped(protocol)
    fields = {
        "client": client,
        "method": method,
        "path": path,
        "protocol": protocol,
        "status": status,
        "duration_ms": round(duration_ms, 3),
    }
    logger.info(FORMAT, client, method, path, protocol, status, duration_ms, extra=fields)


class AccessLog:
    """ASGI middleware: logs every HTTP request when it is done (websockets pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            return self.app(scope, receive, send)
        return self._logged(scope, receive, send)

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before it responds

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            query = scope.get("query_string", b"")
            log_request(
                client=f"{client[0]}:{client[1]}" if client else "-",
                method=scope["method"],
                path=scope["path"] + ("?" + query.decode("latin-1") if query else ""),
                protocol=scope.get("http_version", "1.1"),
                status=status,
                started=started,
            )


class WSGIAccessLog:
    """WSGI middleware: logs every request once its response body has been sent (closed)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not logger.isEnabledFor(logging.INFO):
            return self.app(environ, start_response)
        started = time.perf_counter()
        status = [500]

        def start_status(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(status_line[:3])
            return start_response(status_line, headers, exc_info)

        def log() -> None:
            query = environ.get("QUERY_STRING", "")
            address = environ.get("REMOTE_ADDR")
            log_request(
                client=f"{address}:{environ.get('REMOTE_PORT', '')}" if address else "-",
                method=environ["REQUEST_METHOD"],
                path=environ.get("PATH_INFO", "") + ("?" + query if query else ""),
                protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1").removeprefix("HTTP/"),
                status=status[0],
                started=started,
            )

        try:
            body = self.app(environ, start_status)
        except BaseException:
            log()
            raise
        return _LoggedBody(body, on_close=log)


class _LoggedBody:
    """A WSGI response body that calls ``on_close`` once, when the server closes it."""

    def __init__(self, body: Iterable[bytes], *, on_close: Callable[[], None]) -> None:
        self.body = body
        self.on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close()
