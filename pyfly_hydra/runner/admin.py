"""The admin listener (``server.metrics.port``): ``/metrics``, ``/healthz`` and ``/readyz``, never on the app's port.

A thread of the runner, which outlives every worker: ``/healthz`` is 200 while the runner lives, ``/readyz`` 200
only while every worker serves (503 while the server starts or drains, ``system.readiness``), ``/metrics`` the
numbers of every worker summed (``runner.metrics``). The app's port stays the app's: nothing here can shadow
one of its routes, and the admin port can be kept off the public interface.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pyfly_hydra.errors import ConfigError
from pyfly_hydra.runner.metrics import ServerMetrics
from pyfly_hydra.system.readiness import READINESS, SERVING

logger = logging.getLogger("pyfly_hydra")


class AdminHandler(BaseHTTPRequestHandler):
    """GET (or HEAD) of the three paths; another path is 404, another method 501 (the standard library's)."""

    server: AdminServer
    server_version = "pyfly-hydra-admin"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.path.partition("?")[0]
        if path == "/metrics":
            self._send(HTTPStatus.OK, generate_latest(self.server.registry), CONTENT_TYPE_LATEST, body=body)
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", body=body)
        elif path == "/readyz":
            state = READINESS.state
            status = HTTPStatus.OK if state == SERVING else HTTPStatus.SERVICE_UNAVAILABLE
            self._send(status, f"{state}\n".encode(), body=body)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: /metrics, /healthz or /readyz\n", body=body)

    def _send(self, status: HTTPStatus, content: bytes, content_type: str = "text/plain", *, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not news: debug only."""
        logger.debug("admin listener: %s - %s", self.address_string(), format % args)


class AdminServer(ThreadingHTTPServer):
    """One thread per scrape, none of which keeps the runner from exiting."""

    daemon_threads = True

    def __init__(self, *, host: str, port: int, registry: CollectorRegistry) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.registry = registry
        super().__init__((host, port), AdminHandler)


@contextmanager
def admin_listener(*, host: str, port: int, metrics: ServerMetrics) -> Iterator[str]:
    """The admin listener on ``host:port`` for the block; yields its URL. A port it cannot bind is one line."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    try:
        admin = AdminServer(host=host, port=port, registry=registry)
    except OSError as error:
        raise ConfigError("server.metrics.port", port, f"cannot listen on {host}:{port}: {error.strerror}") from None
    thread = threading.Thread(target=admin.serve_forever, name="pyfly-hydra-admin", daemon=True)
    thread.start()
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{port}"
    finally:
        admin.shutdown()
        admin.server_close()
