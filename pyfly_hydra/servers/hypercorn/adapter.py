"""Hypercorn adapter: pure-Python HTTP/1.1 and HTTP/2, asyncio, uvloop or trio workers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from packaging.version import Version

from pyfly_hydra.config.resolvers import module_available
from pyfly_hydra.errors import ConfigError, ServeError
from pyfly_hydra.servers import TLS_HANDSHAKE_SECONDS
from pyfly_hydra.servers.base import ServerAdapter, bind_address
from pyfly_hydra.servers.hooks import Hook
from pyfly_hydra.servers.hypercorn.idle import WORKERS
from pyfly_hydra.servers.keys import Support, in_every_worker, native, pyfly, refused, supervised
from pyfly_hydra.system.bind import (
    ensure_bindable,
    parse_group,
    parse_permissions,
    remove_unix_socket,
    set_socket_access,
)

if TYPE_CHECKING:
    from hypercorn.config import Config

    from pyfly_hydra.ports import EventLoopPort, Serving

logger = logging.getLogger("pyfly_hydra")

# ALPN offered over TLS for each server.http value (3: on the TCP port, which advertises HTTP/3 on UDP).
ALPN: dict[str, list[str]] = {"auto": ["h2", "http/1.1"], "1": ["http/1.1"], "2": ["h2"], "3": ["h2", "http/1.1"]}
ALT_SVC_MAX_AGE = 86400  # seconds a client may remember that HTTP/3 answers on this port
HTTP3_SINCE = Version("0.17.2")  # before, hypercorn handed its HTTP/3 handler the wrong object: no request answered


class HypercornServer(ServerAdapter):
    """Runs the app through hypercorn's worker functions, always in explicit ASGI mode."""

    name: ClassVar[str] = "hypercorn"
    module: ClassVar[str] = "hypercorn"
    loops: ClassVar[tuple[str, ...]] = tuple(WORKERS)
    native_wsgi: ClassVar[bool] = True
    native_constructor: ClassVar[str] = "hypercorn.config:Config"
    # hypercorn Config's attributes pyfly-hydra keeps for itself, each with the key that decides it (None: no key).
    reserved_options: ClassVar[dict[str, str | None]] = {
        "application_path": None,
        "worker_class": None,
        "errorlog": None,
        "logconfig_dict": None,
        "ssl_handshake_timeout": None,
        "accesslog": "access_log",
        "root_path": "root_path",
        "max_requests": "max_requests_per_worker",
        "max_requests_jitter": "max_requests_per_worker",
        "use_reloader": "reload",
        "quic_bind": "http",  # server.http=3: each worker binds its own UDP socket (serve_supervised's quic)
        "alt_svc_headers": "http",  # server.http=3: the TCP answers advertise HTTP/3
    }
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
        Hook("hypercorn.asyncio.udp_server:UDPServer.run", "HTTP/3 workers that stop when told", key="http"),
        Hook("hypercorn.asyncio.udp_server:UDPServer.protocol_queue", "HTTP/3 workers that stop when told", key="http"),
        *(
            Hook(target, "HTTP/3 workers that close idle connections when told to stop", key="http")
            for target in (
                "hypercorn.protocol.quic:QuicProtocol.connections",
                "hypercorn.protocol.quic:QuicProtocol.send_all",
                "hypercorn.protocol.quic:_Connection.h3",
                "hypercorn.protocol.h3:H3Protocol.streams",
            )
        ),
    )
    support: ClassVar[dict[str, Support]] = {
        **in_every_worker(),
        **supervised("hypercorn's own count"),
        "host": native("bind"),
        "port": native("bind"),
        "workers": native(
            "workers", layer="Supervisor", note="workers > 1 run under pyfly-hydra's drain-first, respawning supervisor"
        ),
        "backlog": native("backlog"),
        "graceful_timeout": native("graceful_timeout"),
        "http": native(
            "alpn_protocols",
            note="hypercorn picks HTTP/1.1 or HTTP/2 per connection; server.http sets the ALPN offered over TLS,"
            " and cleartext keeps accepting both; 3 adds HTTP/3 (QUIC, aioquic) on the same port over UDP, each"
            " worker its own socket, and the TCP answers advertise it (Alt-Svc)",
        ),
        "ssl_certfile": native("certfile"),
        "ssl_keyfile": native("keyfile"),
        "keep_alive_timeout": native("keep_alive_timeout"),
        "max_concurrent_connections": refused("hypercorn has no connection limit"),
        "uds": native("bind"),
        "uds_permissions": pyfly("Listener"),
        "uds_group": pyfly("Listener"),
        "fd": native("bind"),
        "lifespan": pyfly("LifespanGuard"),
        "max_header_bytes": native(
            "h11_max_incomplete_size",
            "h2_max_header_list_size",
            layer="HeadLimit",
            note="and pyfly-hydra's HeadLimit: h11 misses a head that arrives whole, h2 any",
        ),
        "max_body_bytes": native(
            "wsgi_max_body_size",
            layer="BodyLimit",
            note="a WSGI app: hypercorn's wsgi_max_body_size, which answers 400",
        ),
        "body_timeout": pyfly(
            "BodyTimeout", note="a WSGI app: hypercorn reads its body itself; read_timeout closes a stalled one"
        ),
        "log_level": native("loglevel"),
        "websocket.ping_interval": native("websocket_ping_interval"),
        "websocket.ping_timeout": refused(
            "hypercorn sends pings but never times out a missing pong; use server=uvicorn"
        ),
        "websocket.max_size": native("websocket_max_message_size"),
    }

    @staticmethod
    def raw_command(*, app: str, port: int, loop: str) -> list[str]:
        """hypercorn's own command line serving ``app`` as the runner does (one worker): the yardstick
        ``benchmarks/compare.py`` measures the runner against."""
        hypercorn = str(Path(sys.executable).parent / "hypercorn")
        return [hypercorn, f"asgi:{app}", "--bind", f"127.0.0.1:{port}", "--worker-class", loop]

    def check(self, *, loop: EventLoopPort) -> None:
        """Besides the table: HTTP/3 runs over QUIC, which needs TLS, aioquic and a UDP port."""
        if self.properties.http == "3":
            self._check_http3()
        super().check(loop=loop)

    def _check_http3(self) -> None:
        p = self.properties
        if p.ssl_certfile is None:
            raise ConfigError(
                "server.http", "3", "HTTP/3 runs over QUIC, which is always TLS: set server.ssl_certfile and"
                " server.ssl_keyfile",
            )  # fmt: skip
        if p.uds is not None or p.fd is not None:
            key, value = ("server.uds", p.uds) if p.uds is not None else ("server.fd", p.fd)
            raise ConfigError(key, value, "server.http=3 listens on UDP at server.host:server.port; unset it")
        if not module_available("aioquic"):
            raise ConfigError("server.http", "3", "HTTP/3 needs aioquic: pip install 'pyfly-hydra[h3]'")
        version = self.version()
        if Version(version) < HTTP3_SINCE:
            raise ConfigError(
                "server.http", "3", f"hypercorn serves HTTP/3 from {HTTP3_SINCE} (its QUIC handler fails every"
                f" request before); this is hypercorn {version}: upgrade it",
            )  # fmt: skip

    def check_native(self, serving: Serving) -> None:
        """hypercorn's options are attributes of its ``Config``, checked as they are set (``native_options``)."""
        self.build_config(serving)

    def build_config(self, serving: Serving) -> Config:
        """Hypercorn's Config for ``serving``."""
        from hypercorn.config import Config

        config = Config()
        for name, value in self.native_settings(serving).items():
            setattr(config, name, value)
        return config

    def native_settings(self, serving: Serving) -> dict[str, Any]:
        """hypercorn ``Config``'s attributes, in the order they are set: from the properties (its key table),
        then the native options, then the logging pyfly-hydra keeps; ``asgi:``/``wsgi:`` so hypercorn never
        guesses. Reload is pyfly-hydra's supervisor's: ``reload_sources`` gives hypercorn nothing."""
        p, app, log_config = self.properties, serving.app, serving.log_config
        if p.uds is not None:
            bind = [f"unix:{p.uds}"]
        elif p.fd is not None:
            bind = [f"fd://{p.fd}"]
        else:
            bind = [bind_address(p.host, p.port)]
        settings: dict[str, Any] = {
            "application_path": f"{app.interface}:{app.import_string}{'()' if app.factory else ''}",
            "bind": bind,
            "worker_class": serving.loop.name,
            "workers": p.workers,
            "backlog": p.backlog,
            "graceful_timeout": float(p.graceful_timeout),
            "keep_alive_timeout": float(p.keep_alive_timeout),
            "root_path": "",  # server.root_path: pyfly-hydra's RootPath (worker.app), the same everywhere
        }
        if p.websocket.ping_interval is not None:
            settings["websocket_ping_interval"] = p.websocket.ping_interval
        if p.websocket.max_size is not None:
            settings["websocket_max_message_size"] = p.websocket.max_size
        if p.max_header_bytes is not None:
            settings["h11_max_incomplete_size"] = p.max_header_bytes
            settings["h2_max_header_list_size"] = p.max_header_bytes
        if p.max_body_bytes is not None:
            # hypercorn buffers a WSGI body before the app (and any wrapper) runs, refusing one above
            # its own cap with 400: that cap is the limit there. ASGI apps get BodyLimit's 413.
            settings["wsgi_max_body_size"] = p.max_body_bytes
        if p.http == "3":  # each worker binds its own UDP socket (servers.hypercorn.idle.serve_supervised)
            settings["alt_svc_headers"] = [f'h3=":{p.port}"; ma={ALT_SVC_MAX_AGE}']
        settings |= {
            "alpn_protocols": ALPN[p.http],
            "certfile": p.ssl_certfile,
            "ssl_handshake_timeout": TLS_HANDSHAKE_SECONDS,
            "keyfile": p.ssl_keyfile,
            "loglevel": p.log_level.upper(),
        }
        settings |= self.native_options()
        # pyfly-hydra's access log (worker.app) replaces hypercorn's, the same on every server.
        settings["accesslog"] = None
        if log_config is not None:
            # Its error log propagates to the job's logging: in the spawned workers, the same dictionary
            # applied by hypercorn (logconfig_dict). One line each.
            errorlog = logging.getLogger("hypercorn.error")
            errorlog.setLevel(settings["loglevel"])
            settings["errorlog"] = errorlog
            settings["logconfig_dict"] = log_config
        else:  # no job logging to share: hypercorn's own stream handler in each worker
            settings["errorlog"] = "-"
        return settings

    def connection_request_cap(self) -> tuple[str, int] | None:
        """hypercorn closes a connection (HTTP/2: GOAWAY) after keep_alive_max_requests, 1000 by default."""
        from hypercorn.config import Config

        option = "keep_alive_max_requests"
        return option, int(self.native_options().get(option, Config.keep_alive_max_requests))

    def run(self, serving: Serving) -> int:
        """Serve under pyfly-hydra's supervisor (``supervision.supervisor``), one worker or many: a parent that
        outlives its workers is what lets SIGHUP roll them onto new code, and recycling replace them."""
        from functools import partial

        from hypercorn.utils import LifespanFailureError

        from pyfly_hydra.servers.hypercorn.idle import serve_supervised

        config, loop = self.build_config(serving), serving.loop
        p = self.properties
        where = p.uds or (f"fd {p.fd}" if p.fd is not None else bind_address(p.host, p.port))
        quic = (p.host, p.port) if p.http == "3" else None
        try:
            if quic is not None:
                ensure_bindable(*quic, datagram=True)
            sockets = config.create_sockets()
            if p.uds is not None:
                set_socket_access(
                    p.uds, permissions=parse_permissions(p.uds_permissions), group=parse_group(p.uds_group)
                )
            listeners = [*sockets.secure_sockets, *sockets.insecure_sockets]
            target = partial(serve_supervised, loop.name, config, sockets, quic=quic)
            return self.supervisor(target, listeners=listeners, serving=serving).run()
        except LifespanFailureError as exc:
            raise ServeError(f"hypercorn stopped: the app's lifespan startup failed ({exc})") from None
        except OSError as exc:
            raise ServeError(f"hypercorn failed to start on {where}: {exc}") from None
        finally:
            remove_unix_socket(p.uds)
