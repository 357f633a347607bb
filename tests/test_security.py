"""Security defaults: loopback only, proxy headers trusted only from the listed peers, TLS keys kept quiet."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import ROOT, SERVERS, assert_one_line_error, run_cli, tls_overrides
from tests.test_deploying import serving_on_unix_socket

FORWARDED = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}


def listening_addresses(pid: int, port: int) -> set[str]:
    addresses = set()
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a short-lived child that has gone meanwhile
            listening = process.net_connections(kind="tcp")
            addresses |= {c.laddr.ip for c in listening if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    return addresses


@pytest.mark.parametrize("server", SERVERS)
def test_default_listens_on_loopback_only(start_server, server: str) -> None:
    running = start_server(f"server={server}", "server.workers=2")
    assert listening_addresses(running.process.pid, running.port) == {"127.0.0.1"}
    assert running.stop() == 0


# Every option of every config group we ship (conf/GROUP/NAME.yaml), found on disk so a new one is covered.
CONFIG_OPTIONS = sorted(
    f"{path.parent.relative_to(ROOT / 'conf')}={path.stem}" for path in ROOT.joinpath("conf").glob("*/**/*.yaml")
)


@pytest.mark.parametrize("option", CONFIG_OPTIONS)
def test_only_env_prod_listens_on_every_interface(option: str) -> None:
    """The host each shipped option composes to: loopback, except env=prod's every interface."""
    result = run_cli("--cfg", "job", "--resolve", option)
    assert result.returncode == 0, result.stderr
    host = yaml.safe_load(result.stdout)["server"]["host"]
    if option == "env=prod":
        assert ipaddress.ip_address(host).is_unspecified, host
    else:
        assert ipaddress.ip_address(host).is_loopback, (option, host)


def test_every_config_group_option_is_composed() -> None:
    """The option list above is not empty by a wrong glob: every group we document is in it."""
    groups = {option.split("=")[0] for option in CONFIG_OPTIONS}
    assert groups >= {"server", "loop", "mode", "env", "log", "sweep", "bench/workload", "hydra/launcher"}, groups
    assert "env=prod" in CONFIG_OPTIONS


def seen_by_app(url: str) -> tuple[str, str]:
    body = httpx.get(url + "/loop", headers=FORWARDED).json()
    return body["client"], body["scheme"]


@pytest.mark.parametrize("server", SERVERS)
def test_proxy_headers_are_ignored_by_default(start_server, server: str) -> None:
    running = start_server(f"server={server}")
    assert seen_by_app(running.url) == ("127.0.0.1", "http")
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_proxy_headers_from_a_listed_peer_are_applied(start_server, server: str) -> None:
    running = start_server(f"server={server}", "server.workers=2", "server.proxy_headers=true")
    assert seen_by_app(running.url) == ("203.0.113.7", "https")
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_a_forged_line_before_the_proxys_own_is_never_the_client(start_server, server: str) -> None:
    """HAProxy's option forwardfor adds its own X-Forwarded-For line after the one the client wrote."""
    running = start_server(f"server={server}", "server.proxy_headers=true")
    lines = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7")]
    lines += [("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")]
    body = httpx.get(running.url + "/loop", headers=lines).json()
    assert (body["client"], body["scheme"]) == ("203.0.113.7", "http")
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_proxy_headers_over_a_unix_socket_trust_its_peer_with_unix(tmp_path: Path, server: str) -> None:
    trusted = ["server.proxy_headers=true", "server.forwarded_allow_ips=unix:"]
    with serving_on_unix_socket(tmp_path, f"server={server}", *trusted) as client:
        body = client.get("http://app/loop", headers=FORWARDED).json()
    assert (body["client"], body["scheme"]) == ("203.0.113.7", "https")


def test_proxy_headers_over_a_unix_socket_without_unix_are_refused(tmp_path: Path) -> None:
    """The peer of a unix socket has no address, so no address rule could ever trust the proxy."""
    result = run_cli(f"server.uds={tmp_path / 'app.sock'}", "server.proxy_headers=true")
    assert_one_line_error(result, "server.forwarded_allow_ips=127.0.0.1", "add unix: to trust it")
    assert not (tmp_path / "app.sock").exists()


@pytest.mark.parametrize("server", SERVERS)
def test_proxy_headers_from_an_unlisted_peer_are_ignored(start_server, server: str) -> None:
    running = start_server(
        f"server={server}", "server.proxy_headers=true", "server.forwarded_allow_ips='10.0.0.0/8,192.0.2.1'"
    )
    assert seen_by_app(running.url) == ("127.0.0.1", "http")
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_tls_private_key_is_never_logged(start_server, tls, server: str) -> None:
    running = start_server(f"server={server}", *tls_overrides(tls), scheme="https", verify=tls[2])
    assert httpx.get(running.url + "/", verify=tls[2]).status_code == 200
    assert running.stop() == 0
    key_lines = [line for line in Path(tls[1]).read_text().splitlines() if line and not line.startswith("-----")]
    recorded = running.log() + "".join(p.read_text() for p in running.run_dir.rglob("*") if p.is_file())
    assert "PRIVATE KEY" not in recorded
    assert not any(line in recorded for line in key_lines)
    assert json.loads((running.run_dir / "server_info.json").read_text())["tls"] is True


def test_a_key_readable_by_others_is_warned_about(start_server, tls, tmp_path: Path) -> None:
    loose = tmp_path / "loose-key.pem"
    loose.write_text(Path(tls[1]).read_text())
    loose.chmod(0o644)
    running = start_server(
        "server=uvicorn", f"server.ssl_certfile={tls[0]}", f"server.ssl_keyfile={loose}", scheme="https", verify=tls[2]
    )
    assert running.stop() == 0
    assert f"server.ssl_keyfile={loose}: the private key is readable by other users (mode 0644)" in running.log()
    strict = start_server("server=uvicorn", *tls_overrides(tls), scheme="https", verify=tls[2])
    assert strict.stop() == 0
    assert "readable by other users" not in strict.log()
