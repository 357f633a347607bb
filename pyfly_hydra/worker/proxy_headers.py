"""X-Forwarded-For / X-Forwarded-Proto, trusted only from the peers in ``server.forwarded_allow_ips``.

One implementation on every server (granian, uvicorn and hypercorn each had their own reading), applied
in every worker by ``worker.app``; without ``server.proxy_headers=true`` no wrapper is involved at all.
A proxy may append its own header line next to one the client sent (HAProxy's ``option forwardfor``),
so every line of a header is read, joined in order, and the client is the rightmost address no trusted
proxy stands for: what the client wrote itself is never believed over what the proxy saw.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from pyfly_hydra.errors import ConfigError
from pyfly_hydra.worker.types import ASGIApp, Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = {"http": ("http", "https"), "websocket": ("ws", "wss")}
UNIX_PEER = "unix:"  # a peer on the server's unix socket, which has no address to list


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses, networks, ``unix:``, or ``*``."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        items = [item.strip() for item in spec.split(",") if item.strip()]
        if not items:
            raise ConfigError("server.forwarded_allow_ips", spec, "list at least one address, network, unix:, or *")
        self.everyone = "*" in items
        self.unix = UNIX_PEER in items
        try:
            self.networks: list[Network] = [
                ipaddress.ip_network(item, strict=False) for item in items if item not in ("*", UNIX_PEER)
            ]
        except ValueError as error:
            allowed = f"expected addresses, networks, unix: or *: {error}"
            raise ConfigError("server.forwarded_allow_ips", spec, allowed) from None

    def __contains__(self, host: object) -> bool:
        """Whether a peer is trusted; a peer without an address (None or '') is one on a unix socket."""
        if self.everyone:
            return True
        if not host:
            return self.unix
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def joined(values: Iterable[str]) -> list[str]:
    """The comma-separated items of every line of a header, in order, stripped, empty ones left out."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def forwarded_client(hops: list[str], trusted: TrustedProxies) -> str | None:
    """The client an ``X-Forwarded-For`` chain names: the rightmost hop that is not itself a trusted proxy
    (with ``*``, every hop is: the leftmost, as every server's own helper reads it)."""
    return next((hop for hop in reversed(hops) if hop not in trusted), hops[0] if hops else None)


def forwarded_proto(values: list[str]) -> str | None:
    """``http`` or ``https`` from ``X-Forwarded-Proto``: the last value, the one the nearest proxy set."""
    proto = values[-1].lower() if values else ""
    return proto if proto in ("http", "https") else None


def _header_lines(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == name]


class ProxyHeadersMiddleware:
    """Rewrites ``client`` and ``scheme`` from forwarding headers sent by a trusted proxy."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Apply the headers when the direct peer is trusted, then call the app."""
        peer = scope.get("client")
        if scope["type"] in SCHEMES and (peer[0] if peer else None) in self.trusted:
            proto = forwarded_proto(joined(_header_lines(scope, b"x-forwarded-proto")))
            if proto is not None:
                plain, secure = SCHEMES[scope["type"]]
                scope["scheme"] = secure if proto == "https" else plain
            client = forwarded_client(joined(_header_lines(scope, b"x-forwarded-for")), self.trusted)
            if client is not None:
                scope["client"] = (client, 0)
        await self.app(scope, receive, send)


class WSGIProxyHeadersMiddleware:
    """The same for a WSGI app: ``REMOTE_ADDR`` and ``wsgi.url_scheme`` from a trusted proxy's headers
    (every server joins a header's lines into one environ value with commas)."""

    def __init__(self, app: Callable[..., Any], trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Apply the headers when the direct peer is trusted, then call the app."""
        if environ.get("REMOTE_ADDR") in self.trusted:
            proto = forwarded_proto(joined([environ.get("HTTP_X_FORWARDED_PROTO", "")]))
            if proto is not None:
                environ["wsgi.url_scheme"] = proto
            client = forwarded_client(joined([environ.get("HTTP_X_FORWARDED_FOR", "")]), self.trusted)
            if client is not None:
                environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)
