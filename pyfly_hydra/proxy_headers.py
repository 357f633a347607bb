"""X-Forwarded-For / X-Forwarded-Proto, trusted only from the addresses in ``server.forwarded_allow_ips``.

uvicorn does this itself; for granian and hypercorn the runner serves the app behind one of these
middlewares (see ``worker_app``). Without ``server.proxy_headers=true`` no wrapper is involved at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pyfly_hydra.errors import ConfigError

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
SCHEMES = {"http": ("http", "https"), "websocket": ("ws", "wss")}


class TrustedProxies:
    """The set of peers whose forwarding headers are believed: addresses, networks, or ``*``."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        items = [item.strip() for item in spec.split(",") if item.strip()]
        self.everyone = "*" in items
        try:
            self.networks: list[Network] = [ipaddress.ip_network(item, strict=False) for item in items if item != "*"]
        except ValueError as error:
            allowed = f"expected addresses, networks or *: {error}"
            raise ConfigError("server.forwarded_allow_ips", spec, allowed) from None
        if not items:
            raise ConfigError("server.forwarded_allow_ips", spec, "list at least one address, network, or *")

    def __contains__(self, host: object) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(str(host))
        except ValueError:
            return False
        return any(address in network for network in self.networks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def forwarded_client(forwarded_for: str, trusted: TrustedProxies) -> str | None:
    """The client an ``X-Forwarded-For`` chain names: the nearest hop that is not itself a trusted proxy."""
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    return next((hop for hop in reversed(hops) if hop not in trusted), hops[0] if hops else None)


def forwarded_proto(value: str | None) -> str | None:
    """``http`` or ``https`` from an ``X-Forwarded-Proto`` value, None for anything else."""
    proto = (value or "").strip().lower()
    return proto if proto in ("http", "https") else None


class ProxyHeadersMiddleware:
    """Rewrites ``client`` and ``scheme`` from forwarding headers sent by a trusted proxy."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Apply the headers when the direct peer is trusted, then call the app."""
        if scope["type"] in SCHEMES and scope.get("client") and scope["client"][0] in self.trusted:
            proto = forwarded_proto(_header(scope, b"x-forwarded-proto"))
            if proto is not None:
                plain, secure = SCHEMES[scope["type"]]
                scope["scheme"] = secure if proto == "https" else plain
            forwarded_for = _header(scope, b"x-forwarded-for")
            if forwarded_for is not None:
                client = forwarded_client(forwarded_for, self.trusted)
                if client is not None:
                    scope["client"] = (client, 0)
        await self.app(scope, receive, send)


class WSGIProxyHeadersMiddleware:
    """The same for a WSGI app: ``REMOTE_ADDR`` and ``wsgi.url_scheme`` from a trusted proxy's headers."""

    def __init__(self, app: Callable[..., Any], trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Apply the headers when the direct peer is trusted, then call the app."""
        if environ.get("REMOTE_ADDR") in self.trusted:
            proto = forwarded_proto(environ.get("HTTP_X_FORWARDED_PROTO"))
            if proto is not None:
                environ["wsgi.url_scheme"] = proto
            forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
            if forwarded_for is not None:
                client = forwarded_client(forwarded_for, self.trusted)
                if client is not None:
                    environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)
