"""Range and cross-field checks on ``server.*``: what the schema's types alone cannot say."""

from __future__ import annotations

import logging
import os
import socket
import stat
from dataclasses import fields, is_dataclass, replace
from typing import Any

from pyfly_hydra.config.schema import GranianProperties, MetricsProperties, ServerProperties, WebsocketProperties
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.system.bind import parse_group, parse_permissions
from pyfly_hydra.system.cpus import usable_cpus
from pyfly_hydra.worker.access_log import AccessLogFormat
from pyfly_hydra.worker.lifespan import LIFESPAN_MODES
from pyfly_hydra.worker.proxy_headers import TrustedProxies

logger = logging.getLogger("pyfly_hydra")

HTTP_VERSIONS = ("auto", "1", "2", "3")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
GRANIAN_RUNTIME_MODES = ("auto", "st", "mt")
MAX_PORT = 65535


# Upper bounds keep absurd values from reaching the servers (granian's Rust side takes 32-bit numbers).
MAX_WORKERS = 1024
MAX_BACKLOG = 65535
MAX_SECONDS = 86400
MAX_KEEP_ALIVE_SECONDS = 3600
MAX_COUNT = 2**31 - 1
MAX_RUNTIME_THREADS = 256
MIN_HEADER_BYTES = 8192  # granian's (hyper's) smallest read buffer
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_BODY_BYTES = 2**40
MAX_FD = 65535
MAX_RSS_MIB = 2**20  # 1 TiB
RECYCLING_KEYS = ("worker_max_lifetime", "worker_max_rss_mib")


def _between(key: str, value: int | None, minimum: int, maximum: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or not minimum <= value <= maximum:
        extra = " or null (no limit)" if optional else ""
        raise ConfigError(key, value, f"must be an integer {minimum}..{maximum}{extra}")


def _host(key: str, value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ConfigError(key, value, "must be an IP address or host name, e.g. 127.0.0.1")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"must be one of {', '.join(allowed)}")


def _tls(properties: ServerProperties) -> None:
    cert, key = properties.ssl_certfile, properties.ssl_keyfile
    if cert and not key:
        raise ConfigError("server.ssl_keyfile", key, "a private key file is required when server.ssl_certfile is set")
    if key and not cert:
        raise ConfigError("server.ssl_certfile", cert, "a certificate file is required when server.ssl_keyfile is set")
    for name, path in (("server.ssl_certfile", cert), ("server.ssl_keyfile", key)):
        if path is None:
            continue
        if not os.path.isfile(path):
            raise ConfigError(name, path, f"no such file ({os.path.abspath(path)})")
        if not os.access(path, os.R_OK):
            raise ConfigError(name, path, "file is not readable by this user")
    if key:
        _warn_if_key_readable_by_others(key)


def _warn_if_key_readable_by_others(keyfile: str) -> None:
    mode = stat.S_IMODE(os.stat(keyfile).st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "server.ssl_keyfile=%s: the private key is readable by other users (mode %04o); chmod 600 it",
            keyfile,
            mode,
        )


RELOAD_LISTS = ("reload_dirs", "reload_includes", "reload_excludes")


def _reload(properties: ServerProperties) -> None:
    for key in RELOAD_LISTS:  # an interpolation can still hand a list key a string
        value = getattr(properties, key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"server.{key}", value, "must be a list of strings, e.g. [a,b]")
    for directory in properties.reload_dirs:
        if not os.path.isdir(directory):
            raise ConfigError("server.reload_dirs", directory, f"no such directory ({os.path.abspath(directory)})")
    if not properties.reload_includes:
        raise ConfigError("server.reload_includes", [], "list at least one file-name pattern, e.g. ['*.py']")
    for key in ("reload_includes", "reload_excludes"):
        for pattern in getattr(properties, key):
            if not pattern.strip():
                raise ConfigError(f"server.{key}", pattern, "patterns must be non-empty, e.g. '*.py' or 'tests'")
    if not properties.reload:
        defaults = ServerProperties()
        for key in RELOAD_LISTS:
            if getattr(properties, key) != getattr(defaults, key):
                logger.warning("server.%s is only read when server.reload=true; it has no effect", key)


def _recycling(properties: ServerProperties) -> None:
    _between("server.worker_max_lifetime", properties.worker_max_lifetime, 1, MAX_SECONDS, optional=True)
    _between("server.worker_max_rss_mib", properties.worker_max_rss_mib, 1, MAX_RSS_MIB, optional=True)
    _between("server.worker_rss_check_interval", properties.worker_rss_check_interval, 1, MAX_SECONDS)
    recycled = [key for key in RECYCLING_KEYS if getattr(properties, key) is not None]
    if properties.reload and recycled:
        key = recycled[0]
        raise ConfigError(
            f"server.{key}", getattr(properties, key), "reload replaces the worker on every change; not with reload"
        )
    interval = properties.worker_rss_check_interval
    if properties.worker_max_rss_mib is None and interval != ServerProperties.worker_rss_check_interval:
        logger.warning("server.worker_rss_check_interval is only read with server.worker_max_rss_mib; no effect")


def _websocket(websocket: WebsocketProperties) -> None:
    for key in ("ping_interval", "ping_timeout"):
        value = getattr(websocket, key)
        if value is not None and not 0 < value <= MAX_SECONDS:
            raise ConfigError(f"server.websocket.{key}", value, f"must be seconds > 0 and <= {MAX_SECONDS}, or null")
    _between("server.websocket.max_size", websocket.max_size, 1, MAX_COUNT, optional=True)


def _metrics(metrics: MetricsProperties, *, app_port: int) -> None:
    """The admin listener is its own port: /metrics and /readyz are never answered on the app's."""
    if metrics.port is not None and not 1 <= metrics.port <= MAX_PORT:
        raise ConfigError("server.metrics.port", metrics.port, f"must be a port 1..{MAX_PORT}, or null (no listener)")
    if metrics.port is not None and metrics.port == app_port:
        raise ConfigError("server.metrics.port", metrics.port, "must not be the app's port (server.port)")
    _host("server.metrics.host", metrics.host)


def _access_log(properties: ServerProperties) -> None:
    try:
        access_format = AccessLogFormat.parse(properties.access_log_format)
    except ValueError as error:
        raise ConfigError("server.access_log_format", properties.access_log_format, str(error)) from None
    if "request_id" in access_format.names and not properties.request_id:
        raise ConfigError(
            "server.access_log_format", properties.access_log_format, "names {request_id}: set server.request_id=true"
        )


def _granian(granian: GranianProperties) -> None:
    _between("server.granian.runtime_threads", granian.runtime_threads, 1, MAX_RUNTIME_THREADS)
    _one_of("server.granian.runtime_mode", granian.runtime_mode, GRANIAN_RUNTIME_MODES)
    _between("server.granian.backpressure", granian.backpressure, 1, MAX_COUNT, optional=True)


def _on_unix_socket(properties: ServerProperties) -> bool:
    """Whether the server listens on a unix socket: ``server.uds``, or an inherited ``server.fd`` of that family."""
    if properties.uds is not None:
        return True
    if properties.fd is None:
        return False
    try:
        probe = socket.socket(fileno=properties.fd)
    except OSError:
        return False  # not a socket: check_listener says so in its own line
    try:
        return probe.family == socket.AF_UNIX
    finally:
        probe.detach()


def _proxy_headers(properties: ServerProperties) -> None:
    """A unix socket's peer has no address, so only ``unix:`` (or ``*``) can trust the proxy in front."""
    trusted = TrustedProxies(properties.forwarded_allow_ips)
    if properties.proxy_headers and _on_unix_socket(properties) and not (trusted.unix or trusted.everyone):
        raise ConfigError(
            "server.forwarded_allow_ips", properties.forwarded_allow_ips,
            "the proxy connects over the unix socket, whose peer has no address: add unix: to trust it",
        )  # fmt: skip


def validate_properties(properties: ServerProperties) -> ServerProperties:
    """Check every ``server.*`` value; return the properties with ``workers=0`` resolved to the CPU count."""
    _host("server.host", properties.host)
    if not 1 <= properties.port <= MAX_PORT:
        raise ConfigError("server.port", properties.port, f"must be an integer 1..{MAX_PORT}")
    _between("server.workers", properties.workers, 0, MAX_WORKERS)
    _between("server.fd", properties.fd, 0, MAX_FD, optional=True)
    parse_permissions(properties.uds_permissions)
    if properties.uds is not None and properties.fd is not None:
        raise ConfigError("server.fd", properties.fd, "set server.uds or server.fd, not both")
    if properties.uds_permissions is not None and properties.uds is None:
        raise ConfigError("server.uds_permissions", properties.uds_permissions, "needs server.uds")
    parse_group(properties.uds_group)
    if properties.uds_group is not None and properties.uds is None:
        raise ConfigError("server.uds_group", properties.uds_group, "needs server.uds")
    if properties.uds is not None and not properties.uds.strip():
        raise ConfigError("server.uds", properties.uds, "must be a path, e.g. /run/myapp/app.sock")
    _between("server.backlog", properties.backlog, 1, MAX_BACKLOG)
    _between("server.graceful_timeout", properties.graceful_timeout, 0, MAX_SECONDS)
    _between("server.keep_alive_timeout", properties.keep_alive_timeout, 1, MAX_KEEP_ALIVE_SECONDS)
    _between("server.max_concurrent_connections", properties.max_concurrent_connections, 1, MAX_COUNT, optional=True)
    _between("server.max_requests_per_worker", properties.max_requests_per_worker, 1, MAX_COUNT, optional=True)
    _between("server.max_header_bytes", properties.max_header_bytes, MIN_HEADER_BYTES, MAX_HEADER_BYTES, optional=True)
    _between("server.max_body_bytes", properties.max_body_bytes, 1, MAX_BODY_BYTES, optional=True)
    _between("server.body_timeout", properties.body_timeout, 1, MAX_SECONDS, optional=True)
    _between("server.worker_timeout", properties.worker_timeout, 1, MAX_SECONDS, optional=True)
    _between("server.roll_batch", properties.roll_batch, 1, MAX_WORKERS)
    _one_of("server.http", properties.http, HTTP_VERSIONS)
    _one_of("server.log_level", properties.log_level, LOG_LEVELS)
    _one_of("server.lifespan", properties.lifespan, LIFESPAN_MODES)
    if properties.root_path and (not properties.root_path.startswith("/") or properties.root_path.endswith("/")):
        raise ConfigError("server.root_path", properties.root_path, "must start with / and not end with one, e.g. /api")
    _reload(properties)
    _tls(properties)
    _proxy_headers(properties)
    _granian(properties.granian)
    _websocket(properties.websocket)
    _metrics(properties.metrics, app_port=properties.port)
    _access_log(properties)
    _recycling(properties)
    workers = properties.workers
    if workers == 0:
        workers = usable_cpus()
        logger.info("server.workers=0: using %d workers, one per usable CPU (affinity and cgroup quota)", workers)
    if properties.reload and workers > 1:
        raise ConfigError("server.reload", True, f"reload runs one worker; set server.workers=1 (got {workers})")
    return replace(properties, workers=workers)


def key_values(properties: ServerProperties) -> dict[str, Any]:
    """``{key: value}`` of every key, named as under ``server.`` (``port``, ``websocket.max_size``,
    ``granian.runtime_threads``); ``options`` are the server's own, not keys."""
    values: dict[str, Any] = {}
    for f in fields(properties):
        value = getattr(properties, f.name)
        if is_dataclass(value):  # a group: server.granian.*, server.websocket.*
            values |= {f"{f.name}.{g.name}": getattr(value, g.name) for g in fields(value)}
        elif f.name != "options":
            values[f.name] = value
    return values


def keys_set(properties: ServerProperties) -> dict[str, Any]:
    """``key_values`` that differ from the schema's defaults."""
    defaults = key_values(ServerProperties())
    return {key: value for key, value in key_values(properties).items() if value != defaults[key]}
