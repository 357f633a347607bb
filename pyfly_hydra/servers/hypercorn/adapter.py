"""Hypercorn adapter: pure-Python HTTP/1.1 and HTTP/2, asyncio or uvloop workers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from pyfly_hydra.errors import ServeError
from pyfly_hydra.servers import TLS_HANDSHAKE_SECONDS
from pyfly_hydra.servers.base import ServerAdapter, Support, bind_address
from pyfly_hydra.servers.hooks import Hook
from pyfly_hydra.system.bind import parse_group, parse_permissions, remove_unix_socket, set_socket_access

if TYPE_CHECKING:
    from hypercorn.config import Config

    from pyfly_hydra.ports import EventLoopPort
    from pyfly_hydra.worker.apps import AppTarget

logger = logging.getLogger("pyfly_hydra")

# ALPN offered over TLS for each server.http value.
ALPN: dict[str, list[str]] = {"auto": ["h2", "http/1.1"], "1": ["http/1.1"], "2": ["h2"]}


class HypercornServer(ServerAdapter):
    """Runs the app through hypercorn's worker functions, always in explicit ASGI mode."""

    name: ClassVar[str] = "hypercorn"
    module: ClassVar[str] = "hypercorn"
    loops: ClassVar[tuple[str, ...]] = ("uvloop", "asyncio")
    native_wsgi: ClassVar[bool] = True
    head_limit_in_worker: ClassVar[bool] = True
    native_constructor: ClassVar[str] = "hypercorn.config:Config"
    mapped_options: ClassVar[frozenset[str]] = frozenset(
        [
            "accesslog",
            "alpn_protocols",
            "application_path",
            "backlog",
            "bind",
            "certfile",
            "errorlog",
            "logconfig_dict",
            "graceful_timeout",
            "h11_max_incomplete_size",
            "h2_max_header_list_size",
            "keep_alive_timeout",
            "keyfile",
            "loglevel",
            "max_requests",
            "max_requests_jitter",
            "ssl_handshake_timeout",
            "worker_class",
            "workers",
            "wsgi_max_body_size",
            "use_reloader",
            "root_path",
            "websocket_ping_interval",
            "websocket_max_message_size",
        ]
    )
    hooks: ClassVar[tuple[Hook, ...]] = (
        Hook("hypercorn.asyncio.tcp_server:TCPServer._idle_timeout", "idle connections held through a stop"),
        Hook("hypercorn.asyncio.tcp_server:TCPServer._initiate_server_close", "idle connections held through a stop"),
        Hook("hypercorn.asyncio.tcp_server:TCPServer.reader", "idle connections held through a stop"),
        Hook("hypercorn.protocol.h11:H11Protocol.stream_send", "Connection: close on responses while stopping"),
        *(
            Hook(f"hypercorn.protocol.h11:H11Protocol.{name}", "no connection closed under a client not told")
            for name in ("_maybe_recycle", "_close_stream", "connection", "can_read")
        ),
        Hook("hypercorn.asyncio.worker_context:WorkerContext.mark_request", "server.max_requests_per_worker"),
        Hook("hypercorn.asyncio.run:asyncio_worker", "supervised workers"),
        Hook("hypercorn.utils:check_multiprocess_shutdown_event", "websockets closed with 1001 when a worker stops"),
        Hook("hypercorn.asyncio.run:uvloop_worker", "supervised workers"),
    )
    websocket_support: ClassVar[dict[str, Support]] = {
        "ping_interval": Support("websocket_ping_interval"),
        "ping_timeout": Support(None, "hypercorn sends pings but never times out a missing pong; use server=uvicorn"),
        "max_size": Support("websocket_max_message_size"),
    }
    support: ClassVar[dict[str, Support]] = {
        "host": Support("bind"),
        "port": Support("bind"),
        "workers": Support("workers", "workers > 1 run under pyfly-hydra's drain-first, respawning supervisor"),
        "backlog": Support("backlog"),
        "graceful_timeout": Support("graceful_timeout"),
        "http": Support(
            "alpn_protocols",
            "hypercorn picks HTTP/1.1 or HTTP/2 per connection; server.http sets the ALPN offered over TLS,"
            " and cleartext keeps accepting both",
        ),
        "ssl_certfile": Support("certfile"),
        "ssl_keyfile": Support("keyfile"),
        "keep_alive_timeout": Support("keep_alive_timeout"),
        "max_concurrent_connections": Support(None, "hypercorn has no connection limit"),
        "max_requests_per_worker": Support(
            "Supervisor (instead of max_requests)",
            "pyfly-hydra's supervisor, after about N requests (+ up to 10%), new worker before old"
            " (hypercorn's own count stops a worker before any replacement is up)",
        ),
        "worker_max_lifetime": Support("Supervisor", "pyfly-hydra's supervisor, new worker before old"),
        "worker_max_rss_mib": Support("Supervisor", "pyfly-hydra's supervisor, new worker before old"),
        "worker_rss_check_interval": Support("Supervisor"),
        "uds": Support("bind"),
        "uds_permissions": Support("bind"),
        "uds_group": Support("bind"),
        "fd": Support("bind"),
        "root_path": Support("RootPath", "pyfly-hydra's wrapper: the proxy strips the prefix, the app's path has it"),
        "lifespan": Support("LifespanGuard"),
        "max_header_bytes": Support(
            "h11_max_incomplete_size", "and pyfly-hydra's HeadLimit: h11 misses a head that arrives whole, h2 any"
        ),
        "max_body_bytes": Support("BodyLimit", "a WSGI app: hypercorn's wsgi_max_body_size, which answers 400"),
        "body_timeout": Support(
            "BodyTimeout", "a WSGI app: hypercorn reads its body itself; read_timeout closes a stalled one"
        ),
        "reload": Support("Supervisor"),
        "reload_dirs": Support("Supervisor"),
        "reload_includes": Support("Supervisor"),
        "reload_excludes": Support("Supervisor"),
        "access_log": Support("AccessLog"),
        "log_level": Support("loglevel"),
        "proxy_headers": Support("ProxyHeadersMiddleware", "X-Forwarded-* applied by pyfly-hydra's ASGI middleware"),
        "forwarded_allow_ips": Support("ProxyHeadersMiddleware"),
    }

    def check_native(self, *, app: AppTarget, loop: EventLoopPort) -> None:
        """hypercorn's options are attributes of its ``Config``, checked as they are set (``native_options``)."""
        self.build_config(app=app, loop=loop)

    def build_config(self, *, app: AppTarget, loop: EventLoopPort) -> Config:
        """Hypercorn's Config for these properties; ``asgi:``/``wsgi:`` so hypercorn never guesses."""
        from hypercorn.config import Config

        p = self.properties
        config = Config()
        config.application_path = f"{app.interface}:{app.import_string}{'()' if app.factory else ''}"
        if p.uds is not None:
            config.bind = [f"unix:{p.uds}"]
        elif p.fd is not None:
            config.bind = [f"fd://{p.fd}"]
        else:
            config.bind = [bind_address(p.host, p.port)]
        config.worker_class = loop.name
        config.workers = p.workers
        config.backlog = p.backlog
        config.graceful_timeout = float(p.graceful_timeout)
        config.keep_alive_timeout = float(p.keep_alive_timeout)
        config.root_path = ""  # server.root_path: pyfly-hydra's RootPath (worker_app), the same everywhere
        if p.websocket.ping_interval is not None:
            config.websocket_ping_interval = p.websocket.ping_interval
        if p.websocket.max_size is not None:
            config.websocket_max_message_size = p.websocket.max_size
        if p.max_header_bytes is not None:
            config.h11_max_incomplete_size = p.max_header_bytes
            config.h2_max_header_list_size = p.max_header_bytes
        if p.max_body_bytes is not None:
            # hypercorn buffers a WSGI body before the app (and any wrapper) runs, refusing one above
            # its own cap with 400: that cap is the limit there. ASGI apps get BodyLimit's 413.
            config.wsgi_max_body_size = p.max_body_bytes
        config.alpn_protocols = ALPN[p.http]
        config.certfile = p.ssl_certfile
        config.ssl_handshake_timeout = TLS_HANDSHAKE_SECONDS
        config.keyfile = p.ssl_keyfile
        config.loglevel = p.log_level.upper()
        for name, value in self.native_options().items():
            setattr(config, name, value)
        # pyfly-hydra's access log (worker_app) replaces hypercorn's, the same on every server.
        config.accesslog = None
        if self._serves_in_process or self.log_config is not None:
            # Its error log propagates to the job's logging: in this process the runner's, in spawned
            # workers the same dictionary applied by hypercorn (logconfig_dict). One line each.
            config.errorlog = logging.getLogger("hypercorn.error")
            config.errorlog.setLevel(config.loglevel)
            config.logconfig_dict = None if self._serves_in_process else self.log_config
        else:  # no job logging to share: hypercorn's own stream handler in each worker
            config.errorlog = "-"
        return config

    def connection_request_cap(self) -> tuple[str, int] | None:
        """hypercorn closes a connection (HTTP/2: GOAWAY) after keep_alive_max_requests, 1000 by default."""
        from hypercorn.config import Config

        option = "keep_alive_max_requests"
        return option, int(self.native_options().get(option, Config.keep_alive_max_requests))

    @property
    def _serves_in_process(self) -> bool:
        p = self.properties
        return p.workers == 1 and not p.reload and not self.recycling().enabled and p.max_requests_per_worker is None

    def run(self, *, app: AppTarget, loop: EventLoopPort) -> int:
        """One worker serves in this process; more, reload or recycling run under pyfly-hydra's supervisor."""
        from functools import partial

        from hypercorn.utils import LifespanFailureError

        from pyfly_hydra.servers.hypercorn.idle import serve_in_process, serve_supervised
        from pyfly_hydra.supervision.supervisor import Supervisor

        config = self.build_config(app=app, loop=loop)
        p = self.properties
        where = p.uds or (f"fd {p.fd}" if p.fd is not None else bind_address(p.host, p.port))
        try:
            sockets = config.create_sockets()
            if p.uds is not None:
                set_socket_access(
                    p.uds, permissions=parse_permissions(p.uds_permissions), group=parse_group(p.uds_group)
                )
            if self._serves_in_process:
                serve_in_process(loop.name, config, sockets)
                return 0
            supervisor = Supervisor(
                partial(serve_supervised, loop.name, config, sockets),
                server=self.name,
                listeners=[*sockets.secure_sockets, *sockets.insecure_sockets],
                workers=p.workers,
                graceful_timeout=p.graceful_timeout,
                sources=self.watched_sources() if p.reload else None,
                recycling=self.recycling(),
                max_requests=p.max_requests_per_worker,
            )
            return supervisor.run()
        except LifespanFailureError as exc:
            raise ServeError(f"hypercorn stopped: the app's lifespan startup failed ({exc})") from None
        except OSError as exc:
            raise ServeError(f"hypercorn failed to start on {where}: {exc}") from None
        finally:
            remove_unix_socket(p.uds)
