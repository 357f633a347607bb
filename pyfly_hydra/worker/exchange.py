"""The one layer every HTTP request passes through in a worker: its body timeout, its counts, its access line, its id.

``server.body_timeout`` (nginx's ``client_body_timeout``): every server waits forever for the next chunk of a
request body that stops arriving, holding the connection and the app's task. Each wait of the app's ``receive``
is bounded while the body is incomplete: past it the client gets ``408`` with ``Connection: close`` (unless the
response had started) and the app is told the client went away. A request whose body is complete costs one
timer per ``receive`` the app makes; with only the body timeout on, an HTTP/1 request that has no body (neither
Content-Length nor Transfer-Encoding) goes straight to the app.

``server.metrics`` (``worker.metrics``), ``server.access_log`` (``worker.access_log``) and ``server.request_id``
(``worker.request_id``) need the same moments: the call into the app, the response's start, its last byte.

They share one coroutine and one ``send`` wrapper whichever are on: stacked as layers of their own, the counts
alone cost 1.6 us a request on top of the body timeout, merged 0.8 us (an ASGI app answering from memory,
measured in one process; docs/guides/metrics.md). The duration runs from the call into the app to the end of
its response; a request a server refuses before the app sees it (a malformed or oversized head) is in neither
log nor counts: the server's error log says so. The WSGI side is ``WSGIExchange``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

from pyfly_hydra.worker.access_log import AccessLog, header_values, request_values
from pyfly_hydra.worker.async_library import ASYNCIO, deadline_for
from pyfly_hydra.worker.limits import TIMED_OUT, send_error
from pyfly_hydra.worker.metrics import WorkerMetrics
from pyfly_hydra.worker.request_id import HEADER, WSGI_KEY, asgi_request_id, kept_or_new
from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send, WSGIApp

DISCONNECT: Message = {"type": "http.disconnect"}


async def _dropped() -> None:
    """What the app's ``send`` does once its request timed out and the 408 went out instead."""


BODY_HEADERS = (b"content-length", b"transfer-encoding")
HTTP1 = ("1.1", "1.0")


class HTTPExchange:
    """ASGI middleware: each HTTP request's body timed (``body_timeout``), counted in ``metrics``, logged by
    ``access_log`` when it is done, and given an X-Request-ID with ``request_id``; websockets and lifespan
    go straight to the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        body_timeout: float | None = None,
        metrics: WorkerMetrics | None = None,
        access_log: AccessLog | None = None,
        request_id: bool = False,
        async_library: str = ASYNCIO,
    ) -> None:
        self.app, self.body_timeout, self.metrics = app, body_timeout, metrics
        self.deadline = deadline_for(async_library)  # each wait of the body (worker.async_library)
        self.access_log, self.request_id = access_log, request_id
        self.observed = metrics is not None or access_log is not None or request_id

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """A plain function: what goes straight to the app costs one call, not another coroutine."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        # Only the body timeout is on: an HTTP/1 request without either body header has no body to time. HTTP/2
        # and HTTP/3 frame a body without either, so theirs are always timed. (A loop, not any(): every request.)
        if self.observed or scope.get("http_version") not in HTTP1:
            return self._exchange(scope, receive, send)
        for name, _ in scope["headers"]:
            if name in BODY_HEADERS:
                return self._exchange(scope, receive, send)
        return self.app(scope, receive, send)

    async def _exchange(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics, access_log, timeout, deadline = self.metrics, self.access_log, self.body_timeout, self.deadline
        request_id: bytes | None = None
        if self.request_id:
            request_id, headers = asgi_request_id(scope["headers"])
            if headers is not None:
                scope = {**scope, "headers": headers}
        if metrics is not None:
            metrics.started()
        started, status, sent = perf_counter(), 500, 0  # 500: what the server answers if the app fails first
        response_headers: Iterable[tuple[bytes, bytes]] = ()
        responded = complete = timed_out = False
        app_receive = receive

        if timeout is not None:  # no closure per request for what is not on

            async def timed_receive() -> Message:
                nonlocal complete, timed_out, status, sent
                if complete or timed_out:
                    return await receive() if complete else DISCONNECT
                try:
                    async with deadline(timeout):
                        message = await receive()
                except TimeoutError:
                    timed_out = True
                    if not responded:
                        status, sent = 408, len(TIMED_OUT)
                        await send_error(send, 408, TIMED_OUT)
                    return DISCONNECT
                complete = message["type"] != "http.request" or not message.get("more_body", False)
                return message

            app_receive = timed_receive

        def exchange_send(message: Message) -> Awaitable[None]:
            """Not a coroutine of its own: the app awaits the server's ``send`` directly (one frame less)."""
            nonlocal status, sent, response_headers, responded
            if timed_out and not responded:
                return _dropped()
            if message["type"] == "http.response.start":
                responded, status, response_headers = True, message["status"], message.get("headers", ())
                if request_id is not None and all(name.lower() != HEADER for name, _ in response_headers):
                    response_headers = [*response_headers, (HEADER, request_id)]
                    message = {**message, "headers": response_headers}
            else:
                sent += len(message.get("body", b""))
            return send(message)

        try:
            await self.app(scope, app_receive, exchange_send)
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


class WSGIExchange:
    """WSGI middleware: each request counted, logged and given its id, done once its response body has been
    sent (closed). A WSGI body's pace is the server's to bound (``server.body_timeout`` is not applied here)."""

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
        return _CountedBody(body, on_close=done)


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


class _CountedBody:
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
