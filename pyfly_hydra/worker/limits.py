"""Request bodies no server bounds for ASGI apps, so the runner does: their size and their pace.

``server.max_body_bytes``:

granian, uvicorn and hypercorn all stream a request body of any size to an ASGI app (hypercorn caps
only WSGI bodies). With the key set, every worker serves the app behind one of these wrappers:

- a declared ``Content-Length`` above the limit is answered ``413`` before the app runs;
- a chunked body is counted as the app reads it: past the limit the app is told the client went
  away (``http.disconnect``; a WSGI app gets ``BodyTooLarge`` from ``wsgi.input.read``, which never
  reads more than one byte past the limit), and the client gets ``413`` unless the app had already
  started its response.

Without the key no wrapper is involved.

``server.max_header_bytes`` on hypercorn: h11 checks its limit only while a head is incomplete, so a
larger head that arrives in one read passes, and the HTTP/2 header-list size is advertised but not
checked. ``HeadLimit`` measures every parsed head there (method, target and header lines, as they
were on the wire, give or take whitespace) and answers 431 before the app runs.

``server.body_timeout``, the body's pace, is bounded in ``worker.exchange``, the layer every request passes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send

TOO_LARGE = b"Request body too large"
TOO_LARGE_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
TIMED_OUT = b"Request body timed out"
TOO_LARGE_STATUS = "413 Content Too Large"
READ_CHUNK = 64 * 1024  # wsgi.input.read() of "everything": read and counted this much at a time


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def send_error(send: Send, status: int, body: bytes) -> None:
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": TOO_LARGE_HEADERS + length})
    await send({"type": "http.response.body", "body": body})


async def _send_413(send: Send) -> None:
    await send_error(send, 413, TOO_LARGE)


class BodyLimit:
    """ASGI wrapper refusing request bodies above ``limit`` bytes with 413."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """HTTP requests go through the limit; every other scope straight to the app."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _declared_length(scope.get("headers", ()))
        if declared is not None and declared > self.limit:
            await _send_413(send)
            return
        received = 0
        started = exceeded = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    exceeded = True
                    if not started:
                        await _send_413(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the 413 went out instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


HEAD_TOO_LARGE = b"Request header fields too large"
HEAD_LINE_OVERHEAD = len(" HTTP/1.1\r\n") + 1 + 2  # the request line's spaces and version, the blank line


def head_bytes(method: str, target: int, headers: Iterable[tuple[bytes | str, bytes | str]]) -> int:
    """A request head's size on the wire: request line, every header line with its CRLF, the blank line."""
    return len(method) + target + HEAD_LINE_OVERHEAD + sum(len(name) + len(value) + 4 for name, value in headers)


class HeadLimit:
    """ASGI wrapper answering 431 to a request whose head is above ``limit`` bytes (websockets: closed)."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Measure an HTTP or websocket head; hand every other scope straight to the app."""
        if scope["type"] in ("http", "websocket"):
            target = len(scope.get("raw_path") or scope["path"]) + len(scope.get("query_string", b"")) + 1
            if head_bytes(scope.get("method", "GET"), target, scope.get("headers", ())) > self.limit:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1009})
                else:
                    await send_error(send, 431, HEAD_TOO_LARGE)
                return
        await self.app(scope, receive, send)


class WSGIHeadLimit:
    """The same for a WSGI app, measured from the environ's request line and ``HTTP_*`` values."""

    def __init__(self, app: Callable[..., Any], *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """431 above the limit, else the app."""
        target = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", "")) + 1
        headers = [(name, value) for name, value in environ.items() if name.startswith("HTTP_")]
        if head_bytes(environ.get("REQUEST_METHOD", "GET"), target, headers) > self.limit:
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(HEAD_TOO_LARGE)))]
            start_response("431 Request Header Fields Too Large", headers)
            return [HEAD_TOO_LARGE]
        return self.app(environ, start_response)


class BodyTooLarge(ValueError):
    """Raised by ``wsgi.input`` reads past ``server.max_body_bytes``."""


class _LimitedInput:
    """``wsgi.input``, read at most one byte past what is left, so an unbounded body is never buffered:
    a read that would go past the limit raises ``BodyTooLarge`` after that one byte, and ``exceeded``
    records it for the wrapper's 413 even when the app catches the error (Flask answers 500)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit
        self.exceeded = False

    def _count(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            self.exceeded = True
            raise BodyTooLarge("request body exceeds server.max_body_bytes")
        return data

    def _bounded(self, size: int | None) -> int:
        return self._left + 1 if size is None or size < 0 else min(size, self._left + 1)

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self._count(self._stream.read(self._bounded(size)))
        parts = []  # "everything": in pieces, each counted before the next is read
        while part := self._count(self._stream.read(min(READ_CHUNK, self._left + 1))):
            parts.append(part)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.readline(self._bounded(size)))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class WSGIBodyLimit:
    """WSGI wrapper refusing request bodies above ``limit`` bytes with 413."""

    def __init__(self, app: Callable[..., Any], *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """413 for a declared length above the limit; otherwise count what the app reads, and answer 413
        instead of whatever the app answers once a read went past the limit (unless it already had)."""
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > self.limit:
            return _refuse(start_response)
        body = environ["wsgi.input"] = _LimitedInput(environ["wsgi.input"], self.limit)
        answered: list[str] = []  # the status line the app's start_response sent, once it has

        def start_or_refuse(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if body.exceeded:
                status, headers = TOO_LARGE_STATUS, _wsgi_too_large_headers()
            answered.append(status)
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, start_or_refuse)
        except BodyTooLarge:
            if answered:
                raise
            return _refuse(start_response)
        if not body.exceeded or (answered and answered[-1] != TOO_LARGE_STATUS):
            return result  # within the limit, or the app had started its answer before going past it
        close = getattr(result, "close", None)
        if close is not None:
            close()
        return [TOO_LARGE] if answered else _refuse(start_response)


def _wsgi_too_large_headers() -> list[tuple[str, str]]:
    headers = [(name.decode(), value.decode()) for name, value in TOO_LARGE_HEADERS]
    return [*headers, ("Content-Length", str(len(TOO_LARGE)))]


def _refuse(start_response: Callable[..., Any]) -> list[bytes]:
    start_response(TOO_LARGE_STATUS, _wsgi_too_large_headers())
    return [TOO_LARGE]
