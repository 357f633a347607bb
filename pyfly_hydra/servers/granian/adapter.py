"""Granian adapter: Rust/tokio HTTP with Python workers, always spawned (never forked) as processes."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pyfly_hydra.errors import ConfigError, ServeError
from pyfly_hydra.servers.base import ServerAdapter, logger
from pyfly_hydra.servers.granian import worker as granian_worker
from pyfly_hydra.servers.granian.server import granian_server_class
from pyfly_hydra.servers.hooks import Hook
from pyfly_hydra.servers.keys import Support, in_every_worker, native, owner_of, pyfly, refused
from pyfly_hydra.supervision.stuck import StuckWorkers
from pyfly_hydra.supervision.supervisor import DRAIN_MARGIN_SECONDS
from pyfly_hydra.system.bind import parse_group, parse_permissions

if TYPE_CHECKING:
    from pyfly_hydra.ports import EventLoopPort, Serving
    from pyfly_hydra.worker.apps import AppTarget


CLEARTEXT_AUTO_NOTE = (
    "server.http=auto on granian without TLS serves HTTP/1.1 only: granian's auto mode (hyper-util's"
    " protocol detection) never times out a connection that sends nothing; h2c needs server.http=2"
)


GRANIAN_LOGGER = "_granian"
GRANIAN_MIN_LIFETIME = 60  # seconds: granian refuses a shorter workers_lifetime


class HeldLines(logging.Filter):
    """Keeps granian's lines of a dry run from the log; its errors are kept to say why it refused."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())
        return False


def dry_run(server: Any) -> Any:
    """``server`` whose ``serve`` runs granian's checks and stops where it would bind and spawn workers."""

    class DryRun(type(server)):  # type: ignore[misc]
        def _serve(self, spawn_target: Any, target_loader: Any) -> None:
            return None

        _serve_with_reloader = _serve

    server.__class__ = DryRun
    return server


def _app_dir(app: AppTarget) -> Path:
    """Where the app imports from: granian puts it first on sys.path in every worker."""
    return app.directory or Path(os.getcwd())


def served_http(http: str, *, tls: bool) -> str:
    """granian's ``http`` mode for ``server.http``: ``auto`` in cleartext is HTTP/1.1 (see CLEARTEXT_AUTO_NOTE)."""
    return "1" if http == "auto" and not tls else http


class GranianServer(ServerAdapter):
    """Runs the app through ``granian.Granian`` with an explicit interface (asgi, asginl or wsgi) and loop."""

    name: ClassVar[str] = "granian"
    module: ClassVar[str] = "granian"
    loops: ClassVar[tuple[str, ...]] = ("uvloop", "asyncio", "winloop", "rloop")
    native_wsgi: ClassVar[bool] = True
    native_constructor: ClassVar[str] = "granian:Granian"
    # granian.Granian's options pyfly-hydra keeps for itself, each with the key that decides it (None: no key).
    reserved_options: ClassVar[dict[str, str | None]] = {
        "target": None,
        "factory": None,
        "loop": None,
        "working_dir": None,
        "log_dictconfig": None,
        "log_access": "access_log",
        "log_access_format": "access_log",
        "url_path_prefix": "root_path",
        "reload_ignore_dirs": "reload_excludes",
        "reload_ignore_patterns": "reload_excludes",
        "reload_ignore_paths": "reload_excludes",
    }
    hooks: ClassVar[tuple[Hook, ...]] = (
        Hook("granian.server.mp:WorkerProcess._watcher", "clean stops on a group signal"),
        Hook("granian:Granian.signal_handler_interrupt", "clean stops on a group signal"),
        Hook("granian:Granian.signal_handler_reload", "SIGHUP taken without a lock"),
        Hook("granian:Granian.main_loop_interrupt", "clean stops on a group signal"),
        Hook("granian:Granian._spawn_worker", "clean stops on a group signal"),
        Hook("granian.server.mp:WorkerProcess._spawn_method", "the start's workers forked, later ones spawned"),
        Hook("granian.server.common:AbstractWorker._watch", "the start's workers forked, later ones spawned"),
        Hook("granian._internal:load_target", "workers that die with their runner and retire without a loss"),
        Hook("granian.server.mp:WorkerProcess.terminate", "workers replaced without a lost request"),
        Hook("granian.server.mp:WorkerProcess.start", "workers that keep a group signal while they start"),
        Hook("granian._signals:set_loop_signals", "websockets closed with 1001 when a worker stops"),
        Hook("granian._futures:_future_watcher_wrapper", "requests still running at server.graceful_timeout cancelled"),
        Hook("granian:Granian.http1_settings", "workers replaced without a lost request"),
        Hook("granian:Granian.bind_uds", "workers replaced without a lost request"),
        Hook("granian:Granian._reload", "a SIGHUP roll that waits for each new worker to serve"),
        Hook("granian:Granian.wrks", "a SIGHUP roll that waits for each new worker to serve"),
        Hook("granian:Granian._respawn_workers", "worker exits by reason in /metrics (server.metrics)"),
        Hook("granian:Granian._handle_rss_signal", "worker exits by reason in /metrics (server.metrics)"),
        Hook("granian:Granian._env_loader", "a SIGHUP roll that waits for each new worker to serve"),
        Hook("granian:Granian.hooks_reload", "a SIGHUP roll that waits for each new worker to serve"),
        Hook("granian:Granian.startup", "READY=1 to systemd once every worker serves"),
        Hook("granian:Granian.shutdown", "STOPPING=1 to systemd at the drain"),
        Hook("granian:Granian._serve", "server.options.granian.* checked before serving"),
        Hook("granian:Granian._serve_with_reloader", "server.options.granian.* checked before serving"),
        Hook("granian:Granian._init_shared_socket", "serving an inherited socket", key="fd"),
        Hook("granian:Granian._init_shared_socket", "the unix socket's group", key="uds_group"),
        Hook("granian._granian:SocketHolder", "serving an inherited socket", key="fd"),
    )
    support: ClassVar[dict[str, Support]] = {
        **in_every_worker(),
        "host": native("address"),
        "port": native("port"),
        "workers": native("workers"),
        "backlog": native("backlog", note="granian raises a backlog below 128 to 128"),
        "graceful_timeout": native("workers_kill_timeout"),
        "http": native("http"),
        "ssl_certfile": native("ssl_cert", "http"),  # http=auto is HTTP/1.1 in cleartext only
        "ssl_keyfile": native("ssl_key"),
        "keep_alive_timeout": native(
            "http1_settings.header_read_timeout",
            note="granian has no keep-alive timeout; the HTTP/1 header read timeout is set to it instead",
        ),
        "max_concurrent_connections": native(
            "backpressure", note="granian queues requests beyond the limit (backpressure) instead of answering 503"
        ),
        "max_requests_per_worker": refused(
            "granian has no per-worker request limit; use server.worker_max_lifetime or worker_max_rss_mib"
        ),
        "worker_max_lifetime": native(
            "workers_lifetime",
            note="granian's own: at least 60 s, checked once a minute; expired workers are replaced one at a time,"
            " the new one 3.5 s before the old one stops (respawn_interval), so they never recycle together",
        ),
        "worker_max_rss_mib": native("workers_max_rss", note="granian's own: replaced one at a time, new before old"),
        "worker_rss_check_interval": native("rss_sample_interval"),
        "uds": native("uds"),
        "uds_permissions": native("uds_permissions"),
        "uds_group": pyfly("ServerHook"),  # chowned once granian has bound it (_init_shared_socket)
        "roll_batch": pyfly("ServerHook"),  # pyfly-hydra's roll in granian's _reload (servers.granian.roll)
        "fd": pyfly("ServerHook"),  # a SocketHolder built from the inherited fd (_init_shared_socket)
        # interface asginl for off; auto and on go through the guard
        "lifespan": native("interface", layer="LifespanGuard", native_values=("off",)),
        "max_header_bytes": native(
            "http1_settings.max_buffer_size",
            "http2_settings.max_headers_size",
            note="granian also refuses a request with more than 100 headers",
        ),
        "max_body_bytes": pyfly("BodyLimit"),
        "body_timeout": pyfly("BodyTimeout", note="not for a WSGI app: granian reads its body itself, with no timer"),
        "reload": native("reload", "reload_paths", "reload_filter", "reload_ignore_worker_failure"),
        "reload_dirs": native("reload_paths", "reload_filter"),
        "reload_includes": native("reload_filter"),
        "reload_excludes": native("reload_filter"),
        "log_level": native("log_level"),
        **{
            f"websocket.{key}": refused(
                "granian has no websocket settings (only websockets on/off); use server=uvicorn or hypercorn"
            )
            for key in ("ping_interval", "ping_timeout", "max_size")
        },
        "granian.runtime_threads": native("runtime_threads"),
        "granian.runtime_mode": native("runtime_mode"),
        "granian.backpressure": native("backpressure"),
        "granian.respawn_failed_workers": native("respawn_failed_workers"),
    }

    @staticmethod
    def raw_command(*, app: str, port: int, loop: str) -> list[str]:
        """granian's own command line serving ``app`` as the runner does (one worker, no access log): the
        yardstick ``benchmarks/compare.py`` measures the runner against."""
        return [
            str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--loop", loop, "--no-access-log", app,
        ]  # fmt: skip

    def check(self, *, loop: EventLoopPort) -> None:
        """Besides the table: no HTTP/3, granian's shortest lifetime, and one limit for two keys."""
        if self.properties.http == "3":
            raise ConfigError(
                "server.http", "3", "granian serves HTTP/1.1 and HTTP/2; HTTP/3 (QUIC): server=hypercorn with TLS"
            )
        lifetime = self.properties.worker_max_lifetime
        if lifetime is not None and lifetime < GRANIAN_MIN_LIFETIME:
            raise ConfigError(
                "server.worker_max_lifetime",
                lifetime,
                f"granian recycles workers after at least {GRANIAN_MIN_LIFETIME} s; use {GRANIAN_MIN_LIFETIME} or"
                " more, or server=uvicorn or server=hypercorn for shorter lifetimes",
            )
        super().check(loop=loop)
        granian = self.properties.granian
        if granian.backpressure is not None and self.properties.max_concurrent_connections is not None:
            raise ConfigError(
                "server.granian.backpressure",
                granian.backpressure,
                "granian has one limit; set it or server.max_concurrent_connections, not both",
            )

    def check_native(self, serving: Serving) -> None:
        """granian checks its options in ``Granian(...)`` and at the start of ``serve``, each failure a logged
        line and a ``ConfigurationError`` naming the option: both run here, up to where serving would begin,
        with granian's lines held back and its reason given in one line naming the key."""
        from granian.errors import ConfigurationError

        held = HeldLines()
        granian_logger = logging.getLogger(GRANIAN_LOGGER)
        granian_logger.addFilter(held)
        try:
            dry_run(self._granian(serving)).serve()
        except ConfigurationError as exc:
            name = str(exc.args[0]) if exc.args else ""
            raise self._refused(name, reason=held.errors[-1] if held.errors else f"granian refuses {name}") from None
        finally:
            granian_logger.removeFilter(held)

    def _refused(self, name: str, *, reason: str) -> ConfigError:
        """The key behind granian's option ``name``: the server's own option, or the server.* key that sets it."""
        options = self.properties.options.get(self.name) or {}
        # granian names an option (blocking_threads) or the family it checks together (static_path_*).
        named = [option for option in options if option == name or option.startswith(f"{name}_")]
        if named:
            return ConfigError(f"server.options.granian.{named[0]}", options[named[0]], f"{reason} (granian)")
        owner = owner_of(self.support, self.reserved_options, name)
        if owner is not None:
            value = getattr(self.properties, owner) if "." not in owner else None
            return ConfigError(f"server.{owner}", value, f"{reason} (granian)")
        return ConfigError("server.options.granian", dict(options), f"{reason} (granian's {name})")

    def served_http(self) -> str:
        """Cleartext ``auto`` is HTTP/1.1 on granian (CLEARTEXT_AUTO_NOTE)."""
        return served_http(self.properties.http, tls=self.properties.ssl_certfile is not None)

    def run(self, serving: Serving) -> int:
        """Serve with granian's own supervisor; its workers set up the loop themselves."""
        p, app = self.properties, serving.app
        server = self._granian(serving)
        if served_http(p.http, tls=p.ssl_certfile is not None) != p.http:
            logger.info(CLEARTEXT_AUTO_NOTE)
        # granian calls the loader first thing in each worker: the app, dying with the runner, retirable,
        # telling the runner when it serves.
        from granian._internal import load_target

        if p.worker_timeout is not None and app.interface == "wsgi":
            logger.info(
                "server.worker_timeout=%s: not applied, granian runs a WSGI app on its own threads with no event loop"
                " to watch", p.worker_timeout,
            )  # fmt: skip
        elif p.worker_timeout is not None:
            server.stuck = StuckWorkers(self.name, p.worker_timeout)
        server.record, server.roll_batch, server.fork_first = serving.record, p.roll_batch, serving.workers_may_fork
        in_worker = partial(
            granian_worker.load,
            parent_pid=os.getpid(),
            loader=partial(load_target, app.import_string, wd=_app_dir(app), factory=app.factory),
            interface=server.interface.value,
            graceful_timeout=p.graceful_timeout,
            serving=server.serving_reports.writer,
            watchdog=server.stuck.watchdog if server.stuck is not None else None,
        )
        try:
            server.serve(target_loader=in_worker, wrap_loader=False)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        except RuntimeError as exc:
            raise ServeError(f"granian failed to start on {p.host}:{p.port}: {exc}") from None
        finally:
            server.serving_reports.close()
            if server.stuck is not None:
                server.stuck.close()
        if server.stopped_by_policy is not None:
            raise ServeError(f"{server.stopped_by_policy}; stopped (its log above says why)")
        return 0

    def _granian(self, serving: Serving) -> Any:
        """granian's server for ``serving``."""
        p = self.properties
        # A worker is a fresh interpreter importing the app's current code, for a roll (SIGHUP) or a reload; only
        # the start's workers fork, when this process holds none of the app's state (GroupSignalAwareGranian).
        multiprocessing.set_start_method("spawn", force=True)
        return granian_server_class(fd=p.fd, uds_group=parse_group(p.uds_group))(**self.native_settings(serving))

    def native_settings(self, serving: Serving) -> dict[str, Any]:
        """``granian.Granian``'s keywords: from the properties (its key table) and the native options."""
        from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
        from granian.http import HTTP1Settings, HTTP2Settings
        from granian.log import LogLevels

        p, app = self.properties, serving.app
        http = served_http(p.http, tls=p.ssl_certfile is not None)
        reload_options: dict[str, Any] = {}
        if p.reload:
            sources = serving.reload_sources
            if sources is None:
                raise ValueError("server.reload=true: the runner hands over what to watch (reload_sources)")
            # A worker that fails to import the edited code (a syntax error) leaves the server waiting
            # for the next change instead of stopping it.
            reload_options = {
                "reload_paths": list(sources.dirs),
                "reload_filter": sources.filter_class(),
                "reload_ignore_worker_failure": True,
            }
        http1_limits: dict[str, Any] = {}
        http2_limits: dict[str, Any] = {}
        if p.max_header_bytes is not None:
            http1_limits["max_buffer_size"] = p.max_header_bytes
            http2_limits["max_headers_size"] = p.max_header_bytes
        if app.interface == "wsgi":
            interface = Interfaces.WSGI
        else:
            interface = Interfaces.ASGINL if p.lifespan == "off" else Interfaces.ASGI
        return dict(
            target=app.import_string,
            factory=app.factory,
            address=p.host,
            port=p.port,
            interface=interface,
            workers=p.workers,
            loop=Loops(serving.loop.name),
            http=HTTPModes(http),
            backlog=p.backlog,
            backpressure=p.granian.backpressure or p.max_concurrent_connections,
            # The workers cancel what still runs at the graceful timeout and run lifespan shutdown (granian_worker);
            # granian kills one that has not stopped a margin later.
            workers_kill_timeout=p.graceful_timeout + DRAIN_MARGIN_SECONDS,
            http1_settings=HTTP1Settings(header_read_timeout=p.keep_alive_timeout * 1000, **http1_limits),
            http2_settings=HTTP2Settings(**http2_limits),
            ssl_cert=Path(p.ssl_certfile) if p.ssl_certfile else None,
            ssl_key=Path(p.ssl_keyfile) if p.ssl_keyfile else None,
            runtime_threads=p.granian.runtime_threads,
            runtime_mode=RuntimeModes(p.granian.runtime_mode),
            respawn_failed_workers=p.granian.respawn_failed_workers,
            reload=p.reload,
            **reload_options,
            log_access=False,  # pyfly-hydra's access log (worker.app), the same on every server
            log_level=LogLevels(p.log_level),
            log_dictconfig=serving.log_config,
            url_path_prefix=None,  # server.root_path: pyfly-hydra's RootPath (worker.app), the same everywhere
            uds=Path(p.uds) if p.uds else None,
            uds_permissions=parse_permissions(p.uds_permissions),
            workers_lifetime=p.worker_max_lifetime,
            workers_max_rss=p.worker_max_rss_mib,
            rss_sample_interval=p.worker_rss_check_interval,
            working_dir=_app_dir(app),
            **self.native_options(),
        )
