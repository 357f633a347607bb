"""The proxy-headers middlewares in process: every header line read, the rightmost untrusted hop, unix peers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pyfly_hydra.errors import ConfigError
from pyfly_hydra.worker.proxy_headers import ProxyHeadersMiddleware, TrustedProxies, WSGIProxyHeadersMiddleware


def seen_by_asgi(trusted: str, client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]]) -> tuple[Any, str]:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(client=scope["client"], scheme=scope["scheme"])

    scope = {"type": "http", "scheme": "http", "client": client, "headers": headers}
    asyncio.run(ProxyHeadersMiddleware(app, TrustedProxies(trusted))(scope, None, None))
    return seen["client"][0] if seen["client"] else None, seen["scheme"]


def seen_by_wsgi(trusted: str, remote: str, environ: dict[str, str]) -> tuple[str, str]:
    seen: dict[str, str] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(client=env["REMOTE_ADDR"], scheme=env["wsgi.url_scheme"])
        return []

    WSGIProxyHeadersMiddleware(app, TrustedProxies(trusted))(
        {"REMOTE_ADDR": remote, "wsgi.url_scheme": "http", **environ}, lambda *args: None
    )
    return seen["client"], seen["scheme"]


PROXY = ("127.0.0.1", 40000)
# HAProxy's `option forwardfor` adds its own line after the one the client forged.
HAPROXY_LINES = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.9")]


def test_every_line_is_read_and_the_rightmost_untrusted_hop_is_the_client() -> None:
    assert seen_by_asgi("127.0.0.1", PROXY, HAPROXY_LINES) == ("198.51.100.9", "http")
    # nginx's $proxy_add_x_forwarded_for: one line, the forged hop first.
    assert seen_by_asgi("127.0.0.1", PROXY, [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.9")])[0] == "198.51.100.9"
    # A chain of trusted proxies is walked back to the first address none of them stands for.
    chain = [(b"X-Forwarded-For", b"6.6.6.6, 198.51.100.9"), (b"x-forwarded-for", b"10.0.0.2, 10.0.0.3")]
    assert seen_by_asgi("127.0.0.1,10.0.0.0/8", PROXY, chain)[0] == "198.51.100.9"
    # '*' trusts every hop: the leftmost, as every server's own helper reads it.
    assert seen_by_asgi("*", PROXY, HAPROXY_LINES)[0] == "6.6.6.6"


def test_the_scheme_is_the_last_value_the_nearest_proxy_set() -> None:
    forged_then_set = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-proto", b"http")]
    assert seen_by_asgi("127.0.0.1", PROXY, forged_then_set)[1] == "http"
    assert seen_by_asgi("127.0.0.1", PROXY, [(b"x-forwarded-proto", b"http, https")])[1] == "https"
    assert seen_by_asgi("127.0.0.1", PROXY, [(b"x-forwarded-proto", b"gopher")])[1] == "http"


def test_an_untrusted_peer_changes_nothing() -> None:
    assert seen_by_asgi("10.0.0.0/8", PROXY, [*HAPROXY_LINES, (b"x-forwarded-proto", b"https")]) == (
        "127.0.0.1",
        "http",
    )


def test_a_unix_socket_peer_is_trusted_only_with_unix() -> None:
    forwarded = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.9"), (b"x-forwarded-proto", b"https")]
    for peer in (None, ("", 0)):  # what servers report for a unix socket's peer
        assert seen_by_asgi("unix:", peer, forwarded) == ("198.51.100.9", "https")
        assert seen_by_asgi("127.0.0.1", peer, forwarded)[1] == "http"
    assert seen_by_asgi("unix:", PROXY, forwarded) == ("127.0.0.1", "http")  # unix: is not a TCP peer


def test_wsgi_reads_the_joined_lines_the_same_way() -> None:
    environ = {"HTTP_X_FORWARDED_FOR": "6.6.6.6,198.51.100.9", "HTTP_X_FORWARDED_PROTO": "https,http"}
    assert seen_by_wsgi("127.0.0.1", "127.0.0.1", environ) == ("198.51.100.9", "http")
    assert seen_by_wsgi("unix:", "", environ) == ("198.51.100.9", "http")
    assert seen_by_wsgi("127.0.0.1", "", environ) == ("", "http")
    assert seen_by_wsgi("10.0.0.1", "127.0.0.1", environ) == ("127.0.0.1", "http")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [("", "list at least one"), ("unix", "expected addresses, networks, unix: or *"), ("10.0.0.300", "unix: or *")],
)
def test_a_bad_trusted_list_is_one_line(spec: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        TrustedProxies(spec)
