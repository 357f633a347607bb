"""Uvicorn adapter: the ecosystem-standard server; one process, or a supervisor with spawned workers."""

from __future__ import annotations

import importlib.util
import signal
import socket
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from packaging.version import Version

from pyfly_hydra.config.properties import keys_set
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.servers.base import ServerAdapter, logger
from pyfly_hydra.servers.hooks import Hook
from pyfly_hydra.servers.keys import Support, in_every_worker, native, pyfly, supervised
from pyfly_hydra.system.bind import (
    inherited_socket,
    listen_socket,
    parse_group,
    parse_permissions,
    remove_unix_socket,
    unix_socket,
)

if TYPE_CHECKING:
    from pyfly_hydra.ports import EventLoopPort, Serving

# The protocol class pyfly-hydra's own (uvicorn_protocol) extends: httptools', else h11's.
HTTP_PROTOCOL = (
    "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol"
    if importlib.util.find_spec("httptools")
    else "uvicorn.protocols.http.h11_impl:H11Protocol"
)
HTTP_CYCLE = HTTP_PROTOCOL.partition(":")[0] + ":RequestResponseCycle"  # a request's state: its scope, its response
# The first uvicorn whose wsproto websockets honour ws_ping_interval, ws_ping_timeout and ws_max_size.
WSPROTO_SETTINGS_SINCE = Version("0.46")
LOOP_FACTORIES_SINCE = Version("0.36")  # before, uvicorn's loop is one of its own names (a loop policy)
# uvicorn's own names for the loops it sets up itself; any other loop goes in as "module:factory".
NATIVE_LOOPS = ("uvloop", "asyncio")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UvicornServer(ServerAdapter):
    """Runs the app through ``uvicorn.run`` with an explicit loop and graceful-shutdown timeout."""

    name: ClassVar[str] = "uvicorn"
    module: ClassVar[str] = "uvicorn"
    loops: ClassVar[tuple[str, ...]] = NATIVE_LOOPS
    runs_loop_factories: ClassVar[bool] = True
    native_lifespan: ClassVar[tuple[str, ...]] = ("auto", "on", "off")
    native_constructor: ClassVar[str] = "uvicorn:Config"
    # uvicorn.Config's options pyfly-hydra keeps for itself, each with the key that decides it (None: no key).
    reserved_options: ClassVar[dict[str, str | None]] = {
        "app": None,
        "factory": None,
        "loop": None,
        "interface": None,
        "log_config": None,
        "workers": "workers",
        "limit_max_requests": "max_requests_per_worker",
        "reload": "reload",
        "reload_dirs": "reload_dirs",
        "reload_includes": "reload_includes",
        "reload_excludes": "reload_excludes",
        "uds": "uds",
        "fd": "fd",
        "access_log": "access_log",
        "proxy_headers": "proxy_headers",
        "forwarded_allow_ips": "forwarded_allow_ips",
        "root_path": "root_path",
    }
    hooks: ClassVar[tuple[Hook, ...]] = (
        *(
            Hook(f"uvicorn.server:Server.{name}", "supervised workers (pyfly_hydra.servers.uvicorn.worker)")
            for name in ("on_tick", "handle_exit", "started", "server_state")
        ),
        Hook("uvicorn.server:ServerState.total_requests", "server.max_requests_per_worker"),
        *(
            Hook(f"{HTTP_PROTOCOL}.{name}", "how connections end (pyfly_hydra.servers.uvicorn.protocol)")
            for name in (
                "connection_made",
                "data_received",
                "shutdown",
                "timeout_keep_alive_handler",
                "timeout_keep_alive_task",
                "cycle",
                "scope",
                "app",
                "pipeline",
                "flow",
                *(("on_url", "on_header") if HTTP_PROTOCOL.endswith("HttpToolsProtocol") else ()),
            )
        ),
        *(
            Hook(f"{HTTP_CYCLE}.{name}", "the request-head limit (pyfly_hydra.servers.uvicorn.protocol)")
            for name in ("scope", "on_response", "response_complete")
        ),
    )
    support: ClassVar[dict[str, Support]] = {
        **in_every_worker(),
        **supervised("uvicorn's own limit_max_requests"),
        "host": native("host"),
        "port": native("port"),
        "workers": pyfly("Supervisor"),
        "backlog": native("backlog"),
        "graceful_timeout": native("timeout_graceful_shutdown"),
        "http": native("http", note="HTTP/1.1 only (pyfly-hydra's protocol class): server.http=2 is refused"),
        "ssl_certfile": native("ssl_certfile"),
        "ssl_keyfile": native("ssl_keyfile"),
        "keep_alive_timeout": native("timeout_keep_alive"),
        "max_concurrent_connections": native("limit_concurrency", note="uvicorn answers 503 beyond the limit"),
        "uds": pyfly("Listener"),
        "uds_permissions": pyfly("Listener"),
        "uds_group": pyfly("Listener"),
        "fd": pyfly("Listener"),
        "lifespan": native("lifespan"),
        "max_header_bytes": native(
            "h11_max_incomplete_event_size", note="with httptools, counted by pyfly-hydra's protocol class"
        ),
        "max_body_bytes": pyfly("BodyLimit"),
        "body_timeout": pyfly("BodyTimeout"),
        "log_level": native("log_level"),
        "websocket.ping_interval": native("ws_ping_interval"),
        "websocket.ping_timeout": native("ws_ping_timeout"),
        "websocket.max_size": native("ws_max_size"),
    }

    @staticmethod
    def raw_command(*, app: str, port: int, loop: str) -> list[str]:
        """uvicorn's own command line serving ``app`` as the runner does (one worker, no access log): the
        yardstick ``benchmarks/compare.py`` measures the runner against."""
        uvicorn = str(Path(sys.executable).parent / "uvicorn")
        return [uvicorn, app, "--host", "127.0.0.1", "--port", str(port), "--loop", loop, "--no-access-log"]

    def check(self, *, loop: EventLoopPort) -> None:
        """Besides the table: uvicorn serves no HTTP/2, runs other loops (factories) from 0.36, and its wsproto
        websockets had no settings before 0.46."""
        if self.properties.http in ("2", "3"):
            raise ConfigError(
                "server.http",
                self.properties.http,
                "uvicorn serves HTTP/1.1 only; use server=granian or server=hypercorn for HTTP/2, server=hypercorn"
                " for HTTP/3, or server.http=1",
            )
        super().check(loop=loop)
        version = self.version()
        if loop.name not in NATIVE_LOOPS and not self._runs_loop_factories(version):
            raise ConfigError(
                "loop", loop.name, f"uvicorn runs loops other than uvloop and asyncio from {LOOP_FACTORIES_SINCE}"
                f" (a loop factory); this is uvicorn {version}: upgrade it, or loop=uvloop",
            )  # fmt: skip
        wsproto = not importlib.util.find_spec("websockets")
        if self._websocket_options() and wsproto and Version(version) < WSPROTO_SETTINGS_SINCE:
            key, value = next((k, v) for k, v in keys_set(self.properties).items() if k.startswith("websocket."))
            raise ConfigError(
                f"server.{key}",
                value,
                f"uvicorn {version} serves websockets through wsproto, which it gives no pings or size limit"
                f" before {WSPROTO_SETTINGS_SINCE}; upgrade uvicorn, or pip install websockets",
            )

    def served_http(self) -> str:
        """uvicorn speaks HTTP/1.1 only (``server.http=2`` is refused)."""
        return "1"

    @staticmethod
    def _runs_loop_factories(version: str) -> bool:
        return Version(version) >= LOOP_FACTORIES_SINCE

    def _websocket_options(self) -> dict[str, Any]:
        """``server.websocket.*`` that are set, under uvicorn's names (the rest keep uvicorn's defaults)."""
        ws = self.properties.websocket
        values = {"ws_ping_interval": ws.ping_interval, "ws_ping_timeout": ws.ping_timeout, "ws_max_size": ws.max_size}
        return {name: value for name, value in values.items() if value is not None}

    def _unix_or_inherited_socket(self) -> socket.socket | None:
        p = self.properties
        if p.uds is not None:
            return unix_socket(p.uds, permissions=parse_permissions(p.uds_permissions), group=parse_group(p.uds_group))
        if p.fd is not None:
            return inherited_socket(p.fd)
        return None

    def check_native(self, serving: Serving) -> None:
        """``uvicorn.Config(...)`` checks what it is given as it is built: built here once, before serving."""
        self._config(serving)

    def _config(self, serving: Serving) -> Any:
        """uvicorn's configuration for ``serving``."""
        import uvicorn

        return uvicorn.Config(**self.native_settings(serving))

    def native_settings(self, serving: Serving) -> dict[str, Any]:
        """``uvicorn.Config``'s keywords: from the properties (its key table) and the native options; reload
        is pyfly-hydra's supervisor's, so ``reload_sources`` gives uvicorn nothing."""
        from pyfly_hydra.servers.uvicorn.loops import TLS_LOOP_FACTORIES
        from pyfly_hydra.servers.uvicorn.protocol import IdleClosingHTTPProtocol

        p, app, loop = self.properties, serving.app, serving.loop
        factories = self._runs_loop_factories(self.version())
        if p.ssl_certfile is not None and loop.name in TLS_LOOP_FACTORIES and factories:
            uvicorn_loop = TLS_LOOP_FACTORIES[loop.name]  # the same loop, with a TLS handshake deadline
        else:
            uvicorn_loop = loop.name if loop.name in NATIVE_LOOPS else loop.factory
        return dict(
            app=app.import_string,
            factory=app.factory,
            host=p.host,
            port=p.port,
            loop=uvicorn_loop,
            interface="asgi3",  # a WSGI app reaches uvicorn already wrapped in a2wsgi (see worker.app)
            http=IdleClosingHTTPProtocol,
            backlog=p.backlog,
            timeout_graceful_shutdown=p.graceful_timeout,
            timeout_keep_alive=p.keep_alive_timeout,
            limit_concurrency=p.max_concurrent_connections,
            h11_max_incomplete_event_size=p.max_header_bytes,
            ssl_certfile=p.ssl_certfile,
            ssl_keyfile=p.ssl_keyfile,
            root_path="",  # server.root_path: pyfly-hydra's RootPath (worker.app), the same everywhere
            lifespan=p.lifespan,
            access_log=False,  # pyfly-hydra's access log (worker.app), the same on every server
            log_level=p.log_level,
            **({"log_config": serving.log_config} if serving.log_config is not None else {}),
            proxy_headers=False,  # pyfly-hydra's ProxyHeadersMiddleware (worker.app), the same on every server
            **self._websocket_options(),
            **self.native_options(),
        )

    def run(self, serving: Serving) -> int:
        """Serve under pyfly-hydra's supervisor (``supervision.supervisor``), one worker or many: a parent that
        outlives its workers is what lets SIGHUP roll them onto new code, and recycling replace them."""
        from pyfly_hydra.servers.uvicorn.worker import serve as serve_supervised

        p = self.properties
        config = self._config(serving)
        if p.ssl_certfile is not None and not self._runs_loop_factories(self.version()):
            logger.info(
                "uvicorn %s takes no loop factory: TLS handshakes keep the loop's own 60 s deadline (10 s from"
                " uvicorn %s)", self.version(), LOOP_FACTORIES_SINCE,
            )  # fmt: skip
        # A unix socket or an inherited fd is handed over as a socket object uvicorn serves as it is.
        listeners = [self._unix_or_inherited_socket() or listen_socket(p.host, p.port)]
        try:
            return self.supervisor(
                partial(serve_supervised, config, listeners), listeners=listeners, serving=serving
            ).run()
        finally:
            remove_unix_socket(p.uds)
