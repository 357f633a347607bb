"""The deploying recipes (docs/recipes) run as written, in front of every server, by the real nginx and HAProxy.

Each proxy listens on 127.0.0.1 and reaches the app over TCP or over a unix socket its own user may use
(nginx's workers run as www-data, HAProxy as haproxy: ``server.uds_group``). The client connects from
127.0.0.2, so the address the app must see is not the proxy's own, and it forges ``X-Forwarded-*``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tests.conftest import ROOT, SERVERS, free_port, missing
from tests.test_deploying import serving_on_unix_socket, websocket_events

RECIPES = ROOT / "docs" / "recipes"
CLIENT = "127.0.0.2"  # the client's own address, which no proxy stands for
PROXY_USER = {"nginx": "www-data", "haproxy": "haproxy"}
FORGERIES = {
    "one line": [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")],
    "two lines": [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")],
    "a chain": [("X-Forwarded-For", "6.6.6.6, 127.0.0.1"), ("X-Forwarded-Proto", "https, https")],
}


def rendered(proxy: str, *, port: int, upstream: str) -> str:
    """The recipe as the docs print it, on this port and upstream (``host:port`` or a socket path)."""
    text = (RECIPES / ("nginx.conf" if proxy == "nginx" else "haproxy.cfg")).read_text()
    if proxy == "nginx":
        address = upstream if ":" in upstream else f"unix:{upstream}"
        return text.replace("listen 80;", f"listen 127.0.0.1:{port};").replace(
            "server unix:/run/myapp/app.sock;", f"server {address};"
        )
    return text.replace("bind :80", f"bind 127.0.0.1:{port}").replace(
        "server app /run/myapp/app.sock", f"server app {upstream}"
    )


@contextlib.contextmanager
def running_proxy(proxy: str, directory: Path, *, port: int, upstream: str) -> Iterator[None]:
    """The real proxy, running the recipe in the foreground until the block ends."""
    recipe = directory / f"{proxy}-recipe.conf"
    recipe.write_text(rendered(proxy, port=port, upstream=upstream))
    if proxy == "nginx":
        main = directory / "nginx.conf"
        temp = directory / "nginx-temp"
        temp.mkdir(mode=0o777, exist_ok=True)
        main.write_text(
            f"user www-data;\npid {directory}/nginx.pid;\nerror_log {directory}/nginx-error.log;\nevents {{}}\n"
            f"http {{\n access_log off;\n client_body_temp_path {temp}/body;\n proxy_temp_path {temp}/proxy;\n"
            f" fastcgi_temp_path {temp}/fastcgi;\n uwsgi_temp_path {temp}/uwsgi;\n scgi_temp_path {temp}/scgi;\n"
            f" include {recipe};\n}}\n"
        )
        command = ["nginx", "-c", str(main), "-g", "daemon off;"]
    else:
        command = ["haproxy", "-db", "-f", str(recipe)]
    log = directory / f"{proxy}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"{proxy} exited: {log.read_text()}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert time.monotonic() < deadline, f"{proxy} never listened: {log.read_text()}"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def from_the_client() -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=CLIENT), timeout=10)


def websocket_echo(port: int, path: str) -> str:
    """One text message through a websocket on ``path``, from the client's address: the reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.bind((CLIENT, 0))
        sock.connect(("127.0.0.1", port))
        connection = WSConnection(ConnectionType.CLIENT)
        sock.sendall(connection.send(Request(host=f"127.0.0.1:{port}", target=path)))
        assert any(isinstance(e, AcceptConnection) for e in websocket_events(sock, connection, until=AcceptConnection))
        sock.sendall(connection.send(TextMessage(data="hello")))
        replies = websocket_events(sock, connection, until=TextMessage)
        return next(e.data for e in replies if isinstance(e, TextMessage))


@pytest.fixture
def shared_directory() -> Iterator[Path]:
    """A directory the proxy's own user may enter (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="pyfly-proxy-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("proxy", ["nginx", "haproxy"])
def test_the_recipe_serves_the_real_client_under_the_prefix(
    start_server: Callable[..., object], shared_directory: Path, proxy: str, server: str, transport: str
) -> None:
    if shutil.which(proxy) is None:
        missing(f"{proxy} is not installed (.ci/run installs it)")
    if os.geteuid() != 0:
        missing(f"{proxy} runs its workers as {PROXY_USER[proxy]}: needs root")
    serve = [f"server={server}", "app=fastapi_app:app", "server.root_path=/api", "server.proxy_headers=true"]
    port = free_port()
    with contextlib.ExitStack() as stack:
        if transport == "tcp":
            app = start_server(*serve)
            upstream = f"127.0.0.1:{app.port}"  # type: ignore[attr-defined]
        else:
            socket_access = ["server.uds_permissions=660", f"server.uds_group={PROXY_USER[proxy]}"]
            trusted = ["server.forwarded_allow_ips=unix:"]
            stack.enter_context(serving_on_unix_socket(shared_directory, *serve, *socket_access, *trusted))
            upstream = str(shared_directory / "app.sock")
        stack.enter_context(running_proxy(proxy, shared_directory, port=port, upstream=upstream))
        base = f"http://127.0.0.1:{port}"
        with from_the_client() as client:
            for name, headers in FORGERIES.items():
                seen = client.get(f"{base}/api/whoami", headers=headers).json()
                assert seen == {"client": CLIENT, "scheme": "http"}, (name, seen)
            redirect = client.get(f"{base}/api/things")
            assert redirect.status_code == 307 and redirect.headers["location"] == f"{base}/api/things/"
            things = client.get(f"{base}/api/things/").json()
            assert things["url"] == things["built"] == f"{base}/api/things/", things
            assert "url: '/api/openapi.json'" in client.get(f"{base}/api/docs").text
            assert client.get(f"{base}/api/openapi.json").status_code == 200
        assert websocket_echo(port, "/api/ws") == "echo: hello"


def test_the_manual_prints_the_recipes_that_are_tested() -> None:
    deploying = (ROOT / "docs" / "guides" / "deploying.md").read_text()
    assert f"```nginx\n{(RECIPES / 'nginx.conf').read_text()}```" in deploying
    assert f"```haproxy\n{(RECIPES / 'haproxy.cfg').read_text()}```" in deploying
