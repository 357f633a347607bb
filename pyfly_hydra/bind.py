"""Fail fast when the listen address cannot be bound, before any server starts.

Granian sets SO_REUSEPORT, so a second granian on a busy port silently *shares* it; probing with a
plain socket (SO_REUSEADDR only, as every server sets) catches a port held by anyone.
"""

from __future__ import annotations

import errno
import socket

from pyfly_hydra.errors import ConfigError


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound, inheritable TCP socket for servers whose workers share one listener.

    Created with ``proto=IPPROTO_TCP``: asyncio enables TCP_NODELAY only on sockets whose ``proto``
    says TCP, and uvicorn's own ``socket.socket(family)`` (proto 0) leaves its asyncio workers with
    Nagle on, stalling each response ~40 ms on the client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError("server.port", port, f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def ensure_bindable(host: str, port: int) -> None:
    """Raise ConfigError naming ``server.port`` or ``server.host`` when ``host:port`` cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError("server.host", host, f"cannot be resolved ({exc.strerror})") from None
    except (UnicodeError, ValueError):
        raise ConfigError("server.host", host, "is not a valid IP address or host name") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
            probe.listen(1)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError("server.port", port, f"{host}:{port} is already in use; choose a free port") from None
            if exc.errno == errno.EACCES:
                raise ConfigError("server.port", port, "permission denied; ports below 1024 need privileges") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError("server.host", host, "is not an address of this machine") from None
            raise ConfigError("server.host", host, f"cannot bind {host}:{port}: {exc.strerror}") from None
