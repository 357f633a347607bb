"""``server.root_path``: the prefix the proxy in front strips, with one meaning on every server.

The three servers meant three things by it: uvicorn put the prefix in front of ``scope["path"]``;
granian and hypercorn only set ``scope["root_path"]``, so current Starlette and FastAPI built URLs
and redirects without the prefix. The servers are given no prefix; every worker applies it here as
the ASGI spec and uvicorn read it: the proxy strips the prefix, the app sees ``path`` and
``raw_path`` with it and ``root_path`` set to it (a WSGI app: ``SCRIPT_NAME`` set to it, ``PATH_INFO``
without it). A path that arrives with the prefix still on was not stripped, and gets it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyfly_hydra.worker.types import ASGIApp, Receive, Scope, Send


class RootPath:
    """ASGI wrapper: HTTP and websocket scopes mounted under ``root_path``."""

    def __init__(self, app: ASGIApp, *, root_path: str) -> None:
        self.app = app
        self.root_path = root_path
        self.raw_root_path = root_path.encode()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Any:
        if scope["type"] in ("http", "websocket"):
            scope["root_path"] = self.root_path
            scope["path"] = self.root_path + scope["path"]
            if scope.get("raw_path") is not None:
                scope["raw_path"] = self.raw_root_path + scope["raw_path"]
        return self.app(scope, receive, send)


class WSGIRootPath:
    """WSGI wrapper: ``SCRIPT_NAME`` is the prefix, ``PATH_INFO`` what follows it (as the proxy sent it)."""

    def __init__(self, app: Callable[..., Any], *, root_path: str) -> None:
        self.app = app
        self.root_path = root_path

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ["SCRIPT_NAME"] = self.root_path
        return self.app(environ, start_response)
