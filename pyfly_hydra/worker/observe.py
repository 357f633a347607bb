"""One wrapper around the app that watches every HTTP request to its end: the access log, the metrics, the request id.

All three need the same moments (the call into the app, the response's start, its last byte), so they share
one layer: one extra ``send`` per message, whichever of them is on. The duration runs from the call into the
app to the end of its response; a request a server refuses before the app sees it (a malformed or oversized
head) is in neither log nor metrics: the server's error log says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from pyfly_hydra.worker.access_log import AccessLog, header_values, request_values
from pyfly_hydra.worker.metrics import WorkerMetrics
from pyfly_hydra.worker.request_id import HEADER, WSGI_KEY, asgi_request_id, kept_or_new
from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send, WSGIApp


class Counted:
    """ASGI middleware for the metrics alone (no access log, no request id): the leanest form of ``Observed``, as
    production runs it, for every request (0.5 us a request on top of the counting, docs/guides/metrics.md)."""

    def __init__(self, app: ASGIApp, *, metrics: WorkerMetrics) -> None:
        self.app, self.started, self.finished = app, metrics.started, metrics.finished

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.started()
        started, status, sent = perf_counter(), 500, 0

        def counted_send(message: Message) -> Awaitable[None]:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                sent += len(message.get("body", b""))
            return send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            self.finished(scope["method"], status, sent, perf_counter() - started)


class Observed:
    """ASGI middleware: every HTTP request counted in ``metrics``, logged by ``access_log`` when it is done, and
    given an X-Request-ID with ``request_id`` (websockets and lifespan pass through)."""

    def __init__(
        self, app: ASGIApp, *, metrics: WorkerMetrics | None, access_log: AccessLog | None, request_id: bool
    ) -> None:
        self.app, self.metrics, self.access_log, self.request_id = app, metrics, access_log, request_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        metrics, access_log = self.metrics, self.access_log
        started = perf_counter()
        status, sent = 500, 0  # 500: what the server answers if the app fails before it responds
        response_headers: Iterable[tuple[bytes, bytes]] = ()
        request_id: bytes | None = None
        if self.request_id:
            request_id, headers = asgi_request_id(scope["headers"])
            if headers is not None:
                scope = {**scope, "headers": headers}
        if metrics is not None:
            metrics.started()

        def observed_send(message: Message) -> Awaitable[None]:
            """Not a coroutine of its own: the app awaits the server's ``send`` directly (one frame less)."""
            nonlocal status, sent, response_headers
            kind = message["type"]
            if kind == "http.response.body":
                sent += len(message.get("body", b""))
            elif kind == "http.response.start":
                status, response_headers = message["status"], message.get("headers", ())
                if request_id is not None and all(name.lower() != HEADER for name, _ in response_headers):
                    response_headers = [*response_headers, (HEADER, request_id)]
                    message = {**message, "headers": response_headers}
            return send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            seconds = perf_counter() - started
            if metrics is not None:
                metrics.finished(scope["method"], status, sent, seconds)
            if access_log is not None and access_log.enabled():
                client = scope.get("client")
                values = request_values(
                    client=f"{client[0]}:{client[1]}" if client else "-",
                    method=scope["method"],
                    path=scope["path"],
                    query=scope.get("query_string", b"").decode("latin-1"),
                    protocol=scope.get("http_version", "1.1"),
                    status=status,
                    sent=sent,
                    seconds=seconds,
                    request_id=request_id.decode() if request_id is not None else None,
                )
                values |= header_values(scope["headers"], access_log.request_headers, "request.")
                values |= header_values(response_headers, access_log.response_headers, "response.")
                access_log.log(values)


class WSGIObserved:
    """WSGI middleware: the same, each request done once its response body has been sent (closed)."""

    def __init__(
        self, app: WSGIApp, *, metrics: WorkerMetrics | None, access_log: AccessLog | None, request_id: bool
    ) -> None:
        self.app, self.metrics, self.access_log, self.request_id = app, metrics, access_log, request_id

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        metrics, access_log = self.metrics, self.access_log
        started = perf_counter()
        status = [500]
        response_headers: list[list[tuple[str, str]]] = [[]]
        request_id: str | None = None
        if self.request_id:
            incoming = environ.get(WSGI_KEY)
            request_id = kept_or_new(incoming.encode("latin-1") if incoming is not None else None)[0].decode()
            environ[WSGI_KEY] = request_id
        if metrics is not None:
            with metrics.lock:
                metrics.started()

        def start_status(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(status_line[:3])
            if request_id is not None and all(name.lower() != "x-request-id" for name, _ in headers):
                headers = [*headers, ("X-Request-ID", request_id)]
            response_headers[0] = headers
            return start_response(status_line, headers, exc_info)

        def done(sent: int) -> None:
            seconds = perf_counter() - started
            method = environ["REQUEST_METHOD"]
            if metrics is not None:
                with metrics.lock:
                    metrics.finished(method, status[0], sent, seconds)
            if access_log is not None and access_log.enabled():
                address = environ.get("REMOTE_ADDR")
                values = request_values(
                    client=f"{address}:{environ.get('REMOTE_PORT', '')}" if address else "-",
                    method=method,
                    path=environ.get("PATH_INFO", ""),
                    query=environ.get("QUERY_STRING", ""),
                    protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1").removeprefix("HTTP/"),
                    status=status[0],
                    sent=sent,
                    seconds=seconds,
                    request_id=request_id,
                )
                values |= header_values(_wsgi_request_headers(environ), access_log.request_headers, "request.")
                encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response_headers[0]]
                values |= header_values(encoded, access_log.response_headers, "response.")
                access_log.log(values)

        try:
            body = self.app(environ, start_status)
        except BaseException:
            done(0)
            raise
        return _ObservedBody(body, on_close=done)


def _wsgi_request_headers(environ: dict[str, Any]) -> Iterator[tuple[bytes, bytes]]:
    """The request's headers as ASGI names them, from a WSGI environ (``HTTP_USER_AGENT``: ``user-agent``)."""
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key
        else:
            continue
        yield name.replace("_", "-").lower().encode("latin-1"), str(value).encode("latin-1", "replace")


class _ObservedBody:
    """A WSGI response body that counts what the server takes from it and calls ``on_close`` once, when the
    server closes it."""

    def __init__(self, body: Iterable[bytes], *, on_close: Callable[[int], None]) -> None:
        self.body = body
        self.on_close = on_close
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.on_close(self.sent)
