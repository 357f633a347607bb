"""One wrapper around the app that watches every HTTP request to its end, for the access log and the metrics.

Both need the same facts (the status, the body bytes sent, how long the app took), so they share one
layer: one extra ``send`` per message, whichever of them is on. The duration runs from the call into the
app to the end of its response; a request a server refuses before the app sees it (a malformed or
oversized head) is in neither: the server's error log says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pyfly_hydra.worker.access_log import log_request
from pyfly_hydra.worker.access_log import logger as access_logger
from pyfly_hydra.worker.metrics import WorkerMetrics
from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send, WSGIApp


class Observed:
    """ASGI middleware: every HTTP request counted in ``metrics`` and, with ``access_log``, logged when it is
    done (websockets and lifespan pass through)."""

    def __init__(self, app: ASGIApp, *, metrics: WorkerMetrics | None, access_log: bool) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._observed(scope, receive, send)

    async def _observed(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.metrics
        started = time.perf_counter()
        status, sent = 500, 0  # 500: what the server answers if the app fails before it responds
        if metrics is not None:
            metrics.started()

        async def observed_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if metrics is not None:
                metrics.finished(
                    method=scope["method"], status=status, sent=sent, seconds=time.perf_counter() - started
                )
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
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


class WSGIObserved:
    """WSGI middleware: the same, each request done once its response body has been sent (closed)."""

    def __init__(self, app: WSGIApp, *, metrics: WorkerMetrics | None, access_log: bool) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        metrics = self.metrics
        started = time.perf_counter()
        status = [500]
        if metrics is not None:
            with metrics.lock:
                metrics.started()

        def start_status(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(status_line[:3])
            return start_response(status_line, headers, exc_info)

        def done(sent: int) -> None:
            method = environ["REQUEST_METHOD"]
            if metrics is not None:
                with metrics.lock:
                    metrics.finished(method=method, status=status[0], sent=sent, seconds=time.perf_counter() - started)
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                query = environ.get("QUERY_STRING", "")
                address = environ.get("REMOTE_ADDR")
                log_request(
                    client=f"{address}:{environ.get('REMOTE_PORT', '')}" if address else "-",
                    method=method,
                    path=environ.get("PATH_INFO", "") + ("?" + query if query else ""),
                    protocol=environ.get("SERVER_PROTOCOL", "HTTP/1.1").removeprefix("HTTP/"),
                    status=status[0],
                    started=started,
                )

        try:
            body = self.app(environ, start_status)
        except BaseException:
            done(0)
            raise
        return _ObservedBody(body, on_close=done)


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
