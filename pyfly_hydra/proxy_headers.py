"""X-Forwarded-For / X-Forwarded-Proto, trusted only from the addresses in ``server.forwarded_allow_ips``.

uvicorn does this itself; for granian and hypercorn the runner serves the app through ``wrapped_app``,
a factory that each worker calls (it reads the real app and the trusted addresses from the
environment the runner set). Without ``server.proxy_headers=true`` no wrapper is involved at all.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pyfly_hydra.apps import import_object
from pyfly_hydra.errors import ConfigError

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

APP_ENV = "PYFLY_HYDRA_PROXIED_APP"
FACTORY_ENV = "PYFLY_HYDRA_PROXIED_APP_FACTORY"
TRUSTED_ENV = "PYFLY_HYDRA_FORWARDED_ALLOW_IPS"
WRAPPED_APP = "pyfly_hydra.proxy_headers:wrapped_app"
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


class ProxyHeadersMiddleware:
    """Rewrites ``client`` and ``scheme`` from forwarding headers sent by a trusted proxy."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Apply the headers when the direct peer is trusted, then call the app."""
        if scope["type"] in SCHEMES and scope.get("client") and scope["client"][0] in self.trusted:
            proto = (_header(scope, b"x-forwarded-proto") or "").strip().lower()
            if proto in ("http", "https"):
                plain, secure = SCHEMES[scope["type"]]
                scope["scheme"] = secure if proto == "https" else plain
            forwarded_for = _header(scope, b"x-forwarded-for")
            if forwarded_for is not None:
                hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
                # The nearest hop that is not itself a trusted proxy is the client.
                client = next((hop for hop in reversed(hops) if hop not in self.trusted), hops[0] if hops else None)
                if client is not None:
                    scope["client"] = (client, 0)
        await self.app(scope, receive, send)


def wrapped_app() -> ASGIApp:
    """The factory workers call: the real app (from the environment) behind ProxyHeadersMiddleware."""
    app = import_object(os.environ[APP_ENV])
    if os.environ.get(FACTORY_ENV) == "1":
        app = app()
    return ProxyHeadersMiddleware(app, TrustedProxies(os.environ[TRUSTED_ENV]))
