"""``server.max_body_bytes``: a request body limit no server has for ASGI apps, so the runner keeps it.

granian, uvicorn and hypercorn all stream a request body of any size to an ASGI app (hypercorn caps
only WSGI bodies). With the key set, every worker serves the app behind one of these wrappers:

- a declared ``Content-Length`` above the limit is answered ``413`` before the app runs;
- a chunked body is counted as the app reads it: past the limit the app is told the client went
  away (``http.disconnect``; a WSGI app gets ``BodyTooLarge`` from ``wsgi.input.read``), and the
  client gets ``413`` unless the app had already started its response.

Without the key no wrapper is involved.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOO_LARGE = b"Request body too large"
TOO_LARGE_HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send) -> None:
    length = [(b"content-length", str(len(TOO_LARGE)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": TOO_LARGE_HEADERS + length})
    await send({"type": "http.response.body", "body": TOO_LARGE})


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


class BodyTooLarge(ValueError):
    """Raised by ``wsgi.input`` reads past ``server.max_body_bytes``."""


class _LimitedInput:
    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def _count(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            raise BodyTooLarge("request body exceeds server.max_body_bytes")
        return data

    # "Everything" is asked for without an argument: granian's input refuses a negative size.
    def read(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.read(size) if size is not None and size >= 0 else self._stream.read())

    def readline(self, size: int | None = -1) -> bytes:
        return self._count(self._stream.readline(size) if size is not None and size >= 0 else self._stream.readline())

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = self._stream.readlines(hint) if hint is not None and hint >= 0 else self._stream.readlines()
        return [self._count(line) for line in lines]

    def __iter__(self) -> Any:
        return (self._count(line) for line in self._stream)


class WSGIBodyLimit:
    """WSGI wrapper refusing request bodies above ``limit`` bytes with 413."""

    def __init__(self, app: Callable[..., Any], *, limit: int) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Answer 413 for a declared length above the limit; count what the app reads otherwise."""
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > self.limit:
            headers = [(k.decode(), v.decode()) for k, v in TOO_LARGE_HEADERS]
            start_response("413 Content Too Large", [*headers, ("Content-Length", str(len(TOO_LARGE)))])
            return [TOO_LARGE]
        environ["wsgi.input"] = _LimitedInput(environ["wsgi.input"], self.limit)
        return self.app(environ, start_response)
