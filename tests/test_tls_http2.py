"""HTTPS on every server with a test CA; HTTP/2 over TLS (ALPN h2) and cleartext (h2c) where supported."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import SERVERS, run_cli, tls_overrides


@pytest.mark.parametrize("server", SERVERS)
def test_https_on_every_server(start_server, tls, server: str) -> None:
    running = start_server(f"server={server}", *tls_overrides(tls), scheme="https", verify=tls[2])
    body = httpx.get(running.url + "/loop", verify=tls[2]).json()
    assert body["scheme"] == "https"
    assert body["server"] == server
    info = (running.run_dir / "server_info.json").read_text()
    assert '"tls": true' in info
    assert running.stop() == 0


@pytest.mark.parametrize("server", ["granian", "hypercorn"])
def test_http2_over_tls(start_server, tls, server: str) -> None:
    running = start_server(
        f"server={server}", "server.http=2", *tls_overrides(tls), scheme="https", verify=tls[2], http2_only=True
    )
    with httpx.Client(http2=True, verify=tls[2]) as client:
        response = client.get(running.url + "/loop")
    assert response.http_version == "HTTP/2"
    assert response.json()["http_version"] == "2"
    assert running.stop() == 0


@pytest.mark.parametrize("server", ["granian", "hypercorn"])
def test_http2_cleartext_prior_knowledge(start_server, server: str) -> None:
    running = start_server(f"server={server}", "server.http=2", http2_only=True)
    with httpx.Client(http1=False, http2=True) as client:
        response = client.get(running.url + "/loop")
    assert response.http_version == "HTTP/2"
    assert response.json()["http_version"] == "2"
    assert running.stop() == 0


def test_http2_on_uvicorn_is_refused() -> None:
    result = run_cli("server=uvicorn", "server.http=2")
    assert result.returncode == 2
    assert "server.http=2: uvicorn serves HTTP/1.1 only" in result.stderr
