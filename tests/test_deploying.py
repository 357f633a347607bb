"""Production keys on every server: unix sockets, inherited sockets, root_path, each server's own options."""

from __future__ import annotations

import contextlib
import grp
import importlib.metadata
import importlib.util
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.version import Version
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request, TextMessage

from pyfly_hydra.servers.uvicorn.adapter import WSPROTO_SETTINGS_SINCE
from tests.conftest import (
    ROOT,
    SERVERS,
    RunningServer,
    assert_one_line_error,
    child_env,
    launch_server,
    missing,
    run_cli,
)
from tests.keep_alive_clients import keep_alive_clients


@pytest.mark.parametrize("server", SERVERS)
def test_root_path_means_the_prefix_the_proxy_strips_on_every_server(start_server, server: str) -> None:
    """The proxy sent /things (it stripped /api): FastAPI's URLs, redirect and docs all carry /api, and
    the scope is the same on every server (the prefix in path and raw_path, and in root_path)."""
    running = start_server(f"server={server}", "app=fastapi_app:app", "server.root_path=/api")
    with httpx.Client(base_url=running.url) as client:
        redirect = client.get("/things")
        assert redirect.status_code == 307 and redirect.headers["location"] == f"{running.url}/api/things/"
        seen = client.get("/things/").json()
        assert seen == {
            "url": f"{running.url}/api/things/",
            "built": f"{running.url}/api/things/",
            "path": "/api/things/",
            "root_path": "/api",
        }
        assert "url: '/api/openapi.json'" in client.get("/docs").text
        assert client.get("/openapi.json").status_code == 200
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_root_path_reaches_a_wsgi_app_as_script_name(start_server, server: str) -> None:
    running = start_server(f"server={server}", "app=flask_app:app", "server.root_path=/api")
    seen = httpx.get(running.url + "/where").json()
    assert seen == {"script_root": "/api", "path": "/where", "url": f"{running.url}/api/where"}
    assert running.stop() == 0


@pytest.mark.parametrize(
    "server,option,check",
    [
        ("uvicorn", "+server.options.uvicorn.server_header=false", "server"),
        ("hypercorn", "+server.options.hypercorn.include_date_header=false", "date"),
    ],
)
def test_a_native_option_takes_effect(start_server, server: str, option: str, check: str) -> None:
    plain = start_server(f"server={server}")
    assert check in httpx.get(plain.url + "/").headers
    plain.stop()
    running = start_server(f"server={server}", option)
    assert check not in httpx.get(running.url + "/").headers
    assert running.stop() == 0


def test_a_native_granian_option_takes_effect(start_server, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("static hello")
    running = start_server("server=granian", f"+server.options.granian.static_path_mount={tmp_path}")
    response = httpx.get(running.url + "/static/hello.txt")
    assert running.stop() == 0
    assert (response.status_code, response.text) == (200, "static hello")


# granian's workers stop accepting and shut their connections down in the same step (``src/workers.rs``:
# the accept loop's stop notifies every connection, and hyper closes one whose request it has not read yet):
# a request racing that step is lost, a few per restart under back-to-back load (docs/guides/deploying.md).
RESTART_WITHOUT_LOSS = tuple(server for server in SERVERS if server != "granian")


@pytest.mark.parametrize("server", RESTART_WITHOUT_LOSS)
def test_a_restart_with_the_socket_held_by_systemd_loses_no_request(tmp_path: Path, server: str) -> None:
    """A configuration change deployed as systemd does with socket activation: the old runner drains while
    the socket stays open, the new one (2 workers instead of 1) takes over; keep-alive clients sending back
    to back throughout see no failed request, only a wait."""
    with listening_socket() as sock:
        port, fd = sock.getsockname()[1], sock.fileno()
        as_systemd_would = (sys.executable, "-c", SYSTEMD_LAUNCHER.format(fd=fd))

        def runner(name: str, workers: int) -> RunningServer:
            directory = tmp_path / name
            directory.mkdir()
            overrides = (f"server={server}", f"server.workers={workers}", "server.fd=3")
            return launch_server(*overrides, directory=directory, port=port, pass_fds=(fd,), launcher=as_systemd_would)

        old = runner("old", workers=1)
        try:
            with keep_alive_clients(old.url + "/loop") as traffic:
                time.sleep(2)
                restarted = time.monotonic()
                assert old.stop() == 0, old.log()
                new = runner("new", workers=2)
                try:
                    time.sleep(3)
                finally:
                    traffic.stop.set()
            assert traffic.failures == [], traffic.failures[:5]
            before = {json.loads(body)["pid"] for at, body in traffic.answers if at < restarted}
            last = {json.loads(body)["pid"] for at, body in traffic.answers if at > traffic.answers[-1][0] - 1}
            assert last and not last & before, "the new runner's workers answer at the end"
            stalled = max(b - a for (a, _), (b, _) in itertools.pairwise(sorted(traffic.answers)) if b > restarted)
            assert stalled < 10, stalled
            assert new.stop() == 0, new.log()
        finally:
            old.kill_group()


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["server=uvicorn", "+server.options.uvicorn.server_headr=false"], ["did you mean", "server_header"]),
        (["server=granian", "+server.options.granian.blocking_thread=4"], ["did you mean", "blocking_threads"]),
        (["server=uvicorn", "+server.options.uvicorn.backlog=10"], ["set server.backlog instead"]),
        (["server=granian", "+server.options.granian.url_path_prefix=/x"], ["set server.root_path instead"]),
        (["server=granian", "+server.options.granian.working_dir=/x"], ["pyfly-hydra sets it itself"]),
        (
            ["server=hypercorn", "+server.options.hypercorn.max_requests=5"],
            ["set server.max_requests_per_worker instead"],
        ),
        (["server=granian", "server.options.granian.websockets=false"], ["added with a +"]),
        (["server.root_path=api"], ["server.root_path=api", "must start with /"]),
    ],
)
def test_bad_native_options_are_one_line(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)


def wait_for_unix_socket(process: subprocess.Popen[str], path: Path, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=1) as client:
                if client.get("http://app/health").status_code == 200:
                    return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"no answer on {path}:\n{log.read_text()}")


@contextlib.contextmanager
def serving_on_unix_socket(tmp_path: Path, *overrides: str) -> Iterator[httpx.Client]:
    """``python -m pyfly_hydra OVERRIDES`` on ``tmp_path/app.sock``: a client for it once it answers; on
    leaving, SIGTERM, exit 0, and the socket file gone."""
    path, log = tmp_path / "app.sock", tmp_path / "server.log"
    command = [sys.executable, "-m", "pyfly_hydra", *overrides, f"server.uds={path}"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, f"hydra.run.dir={tmp_path / 'run'}"],
            cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        wait_for_unix_socket(process, path, log)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            yield client
        assert f"at unix:{path}" in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0, log.read_text()
    assert not path.exists(), "the socket file outlived the server"


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
def test_unix_domain_socket(tmp_path: Path, server: str, workers: int) -> None:
    overrides = [f"server={server}", f"server.workers={workers}", "server.uds_permissions=660"]
    with serving_on_unix_socket(tmp_path, *overrides) as client:
        assert stat.S_IMODE((tmp_path / "app.sock").stat().st_mode) == 0o660
        pids = {client.get("http://app/loop").json()["pid"] for _ in range(20)}
    assert len(pids) >= 1


@pytest.mark.parametrize(
    "server,spelled", [("granian", "name"), ("uvicorn", "name"), ("hypercorn", "name"), ("uvicorn", "gid")]
)
def test_uds_group_gives_the_socket_to_that_group(
    tmp_path: Path, other_user: pwd.struct_passwd, server: str, spelled: str
) -> None:
    """What nginx running as another group needs: ``server.uds_group`` with ``uds_permissions=660``."""
    gid = other_user.pw_gid
    group = grp.getgrgid(gid).gr_name if spelled == "name" else str(gid)
    assert gid != os.getegid()
    path = tmp_path / "app.sock"
    overrides = (f"server={server}", "server.uds_permissions=660", f"server.uds_group={group}")
    with serving_on_unix_socket(tmp_path, *overrides) as client:
        info = path.stat()
        assert (info.st_gid, stat.S_IMODE(info.st_mode)) == (gid, 0o660)
        assert client.get("http://app/loop").json()["server"] == server


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    """A socket file nobody listens on (connect: ECONNREFUSED), as a crashed server leaves it."""
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    with serving_on_unix_socket(tmp_path, "server=uvicorn") as client:  # the stale file refused connections
        assert client.get("http://app/loop").json()["server"] == "uvicorn"


# Root passes every permission check; without these capabilities it meets them as any other user does.
WITHOUT_ROOTS_OVERRIDES = ("setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner")


def test_another_users_live_socket_is_left_alone(tmp_path: Path, other_user: pwd.struct_passwd) -> None:
    """A live socket we may not connect to (EACCES) is not stale: one line, and the socket keeps serving."""
    if shutil.which("setpriv") is None or subprocess.run([*WITHOUT_ROOTS_OVERRIDES, "true"]).returncode != 0:
        missing("setpriv(1) cannot drop root's permission overrides here")
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as theirs:
        theirs.bind(str(path))
        theirs.listen(8)
        os.chown(path, other_user.pw_uid, other_user.pw_gid)
        path.chmod(0o600)
        before = path.lstat()
        result = run_cli("server=uvicorn", f"server.uds={path}", launcher=WITHOUT_ROOTS_OVERRIDES, timeout=30)
        assert_one_line_error(result, f"server.uds={path}", "Permission denied", "left as it is")
        after = path.lstat()
        assert (after.st_ino, after.st_uid, stat.S_IMODE(after.st_mode)) == (before.st_ino, other_user.pw_uid, 0o600)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(str(path))
            theirs.settimeout(5)
            theirs.accept()[0].close()


def test_a_live_socket_is_in_use(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen(8)
        assert_one_line_error(run_cli("server=uvicorn", f"server.uds={path}"), "is in use by another server")


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("server", SERVERS)
def test_an_inherited_socket(start_server, server: str, workers: int) -> None:
    with listening_socket() as sock:
        port, fd = sock.getsockname()[1], sock.fileno()
        running = start_server(
            f"server={server}", f"server.workers={workers}", f"server.fd={fd}", port=port, pass_fds=(fd,)
        )
        assert httpx.get(running.url + "/loop").json()["server"] == server
        assert f"at fd://{fd}" in running.log()
        if server == "granian":  # its own "Listening at" line names the socket's address, not server.host/port
            assert f"Listening at: http://127.0.0.1:{port}" in running.log()
        assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_an_inherited_unix_socket(tmp_path: Path, server: str) -> None:
    path, log = tmp_path / "app.sock", tmp_path / "server.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(path))
        sock.listen(128)
        sock.set_inheritable(True)
        command = [sys.executable, "-m", "pyfly_hydra", f"server={server}", "server.workers=2"]
        command += [f"server.fd={sock.fileno()}", f"hydra.run.dir={tmp_path / 'run'}"]
        with log.open("w") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=child_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                pass_fds=(sock.fileno(),),
            )
    try:
        wait_for_unix_socket(process, path, log)
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
            assert client.get("http://app/loop").json()["server"] == server
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0, log.read_text()


# What systemd does before it starts a socket-activated service: the socket as fd 3, LISTEN_FDS and
# LISTEN_PID (the pid that will run the service: exec keeps it) in the environment.
SYSTEMD_LAUNCHER = (
    "import os, sys; os.dup2({fd}, 3); os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()));"
    " os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.mark.parametrize("server", SERVERS)
def test_systemd_socket_activation(start_server, server: str) -> None:
    """systemd passes its socket as fd 3 with LISTEN_FDS=1 and LISTEN_PID=<the service's pid>."""
    with listening_socket() as sock:
        port, fd = sock.getsockname()[1], sock.fileno()
        as_systemd_would = (sys.executable, "-c", SYSTEMD_LAUNCHER.format(fd=fd))
        running = start_server(
            f"server={server}", "server.workers=2", "server.fd=3", port=port, pass_fds=(fd,), launcher=as_systemd_would
        )
        assert httpx.get(running.url + "/health").status_code == 200
        assert running.stop() == 0


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["server.uds=/nonexistent/dir/app.sock"], ["server.uds=/nonexistent/dir/app.sock", "no such directory"]),
        (["server.uds=pyproject.toml"], ["exists and is not a socket"]),
        (["server=uvicorn", "server.fd=0"], ["server.fd=0", "is not a socket"]),
        (["server=uvicorn", "server.fd=999"], ["server.fd=999", "not an open file descriptor"]),
        (["server=granian", "server.fd=0"], ["server.fd=0", "is not a socket"]),
        (["server=uvicorn", "server.fd=-1"], ["server.fd=-1", "0..65535"]),
        (["server.uds_permissions=999", "server.uds=/tmp/x.sock"], ["server.uds_permissions=999", "octal"]),
        (["server.uds_permissions=660"], ["needs server.uds"]),
        (["server.uds=/tmp/x.sock", "server.uds_group=no-such-group"], ["server.uds_group=no-such-group", "no such"]),
        (["server.uds=/tmp/x.sock", "server.uds_group=4294967295"], ["server.uds_group=4294967295", "gid"]),
        (["server.uds_group=0"], ["server.uds_group=0", "needs server.uds"]),
        (["server=uvicorn", "server.uds=/tmp/x.sock", "server.fd=3"], ["not both"]),
    ],
)
def test_bad_listeners_are_one_line(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)


def test_env_prod_takes_the_port_from_the_environment() -> None:
    result = run_cli("env=prod", "--cfg", "job", "--resolve", env=child_env(PORT="9123"), users_defaults=True)
    assert result.returncode == 0 and "port: 9123" in result.stdout, result.stdout
    without = child_env()
    without.pop("PORT", None)
    result = run_cli("env=prod", "--cfg", "job", "--resolve", env=without, users_defaults=True)
    assert "port: 8000" in result.stdout


@pytest.mark.parametrize("server", SERVERS)
def test_a_keep_alive_longer_than_a_load_balancers_idle_timeout(start_server, server: str) -> None:
    """75 s behind a 60 s balancer; granian's CLI caps its header-read timeout at 60 s, its API does not."""
    running = start_server(f"server={server}", "server.keep_alive_timeout=75")
    assert httpx.get(running.url + "/health").status_code == 200
    assert running.stop() == 0


def websocket(port: int) -> tuple[socket.socket, WSConnection]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection = WSConnection(ConnectionType.CLIENT)
    sock.sendall(connection.send(Request(host="127.0.0.1", target="/ws")))
    assert any(
        isinstance(event, AcceptConnection) for event in websocket_events(sock, connection, until=AcceptConnection)
    )
    return sock, connection


def websocket_events(sock: socket.socket, connection: WSConnection, *, until: type, seconds: float = 5) -> list[object]:
    """Events from the server until one of type ``until`` arrives (or ``seconds`` pass, or it closes)."""
    events: list[object] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        connection.receive_data(data or None)
        for event in connection.events():
            events.append(event)
            if isinstance(event, until):
                return events
        if not data:
            break
    return events


def _uvicorn_refuses_websocket_settings(setting: str) -> bool:
    """On uvicorn before 0.46 (its floor is 0.34) without the websockets package, wsproto has no websocket
    settings: the key is refused in one line, which is what is checked there."""
    if Version(importlib.metadata.version("uvicorn")) >= WSPROTO_SETTINGS_SINCE or importlib.util.find_spec(
        "websockets"
    ):
        return False
    assert_one_line_error(run_cli("server=uvicorn", setting), "wsproto", f"before {WSPROTO_SETTINGS_SINCE}")
    return True


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_websocket_max_size_closes_with_1009(start_server, server: str) -> None:
    if server == "uvicorn" and _uvicorn_refuses_websocket_settings("server.websocket.max_size=1024"):
        return
    running = start_server(f"server={server}", "server.websocket.max_size=1024")
    sock, connection = websocket(running.port)
    with sock:
        sock.sendall(connection.send(Message(data="small")))
        echoed = websocket_events(sock, connection, until=TextMessage)
        assert any(isinstance(e, TextMessage) and e.data == "small" for e in echoed), echoed
        sock.sendall(connection.send(Message(data=b"x" * 4096)))
        closing = websocket_events(sock, connection, until=CloseConnection)
    assert any(isinstance(e, CloseConnection) and e.code == 1009 for e in closing), closing
    assert running.stop() == 0


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn"])
def test_websocket_pings_are_sent_at_the_interval(start_server, server: str) -> None:
    if server == "uvicorn" and _uvicorn_refuses_websocket_settings("server.websocket.ping_interval=0.5"):
        return
    running = start_server(f"server={server}", "server.websocket.ping_interval=0.5")
    sock, connection = websocket(running.port)
    with sock:
        events = websocket_events(sock, connection, until=Ping, seconds=4)
    assert any(isinstance(e, Ping) for e in events), events
    assert running.stop() == 0


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["server=granian", "server.websocket.max_size=1024"], ["server.websocket.max_size=1024", "granian cannot"]),
        (["server=hypercorn", "server.websocket.ping_timeout=5"], ["server.websocket.ping_timeout=5", "hypercorn"]),
        (["server=uvicorn", "server.websocket.ping_interval=-1"], ["server.websocket.ping_interval=-1", "> 0"]),
        (["server=uvicorn", "server.websocket.max_size=0"], ["server.websocket.max_size=0", "1.."]),
        (["server=uvicorn", "+server.options.uvicorn.ws_max_size=10"], ["set server.websocket.max_size instead"]),
    ],
)
def test_bad_websocket_settings_are_one_line(overrides: list[str], fragments: list[str]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)


def test_mode_info_lists_the_websocket_keys_by_name_and_no_group_as_refused() -> None:
    from pyfly_hydra.info import support_matrix

    rows = {line.split()[0]: line.split()[1:] for line in support_matrix() if line.startswith("  server.")}
    assert "server.websocket" not in rows and "server.options" not in rows, rows
    assert rows["server.websocket.max_size"] == ["-", "(refused)", "ws_max_size", "websocket_max_message_size"]
