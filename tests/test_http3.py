"""``server.http=3``: HTTP/3 over QUIC on hypercorn (aioquic), on UDP at the TCP listener's port, TLS required; the
TCP answers advertise it; every other server refuses it in one line."""

from __future__ import annotations

import json
import time
from importlib.metadata import version

import httpx
import pytest
from packaging.version import Version

from pyfly_hydra.servers.hypercorn.adapter import HTTP3_SINCE
from tests.conftest import assert_one_line_error, run_cli, tls_overrides
from tests.h3_client import h3_get, stop_with_an_idle_connection

WORKERS = 2
GRACEFUL_TIMEOUT = 30  # server.graceful_timeout's default


def refused_here(tls) -> bool:
    """On a hypercorn without working HTTP/3 (the oldest tier's), server.http=3 is refused in one line: True."""
    if Version(version("hypercorn")) >= HTTP3_SINCE:
        return False
    assert_one_line_error(run_cli("server=hypercorn", "server.http=3", *tls_overrides(tls)), "upgrade it")
    return True


@pytest.mark.parametrize("loop", ["uvloop", "trio"])
def test_hypercorn_answers_http3_on_the_tcp_port_and_tcp_advertises_it(start_server, tls, loop: str) -> None:
    if refused_here(tls):
        return
    running = start_server(
        "server=hypercorn", f"loop={loop}", "server.http=3", f"server.workers={WORKERS}", *tls_overrides(tls),
        scheme="https", verify=tls[2],
    )  # fmt: skip
    over_tcp = httpx.get(running.url + "/", verify=tls[2], timeout=5)
    assert over_tcp.status_code == 200
    assert f'h3=":{running.port}"' in over_tcp.headers["alt-svc"], over_tcp.headers
    cadata = (tls[0].parent / "ca.pem").read_text()
    answer = h3_get("127.0.0.1", running.port, "/", cadata=cadata)
    assert (answer.status, answer.body) == (200, b"Hello, world!"), answer
    pids = set()
    for _ in range(20):  # a new QUIC connection (and client port) each time: the workers' sockets share them
        reply = h3_get("127.0.0.1", running.port, "/loop", cadata=cadata)
        assert reply.status == 200, reply
        about = json.loads(reply.body)
        assert about["http_version"] == "3" and about["scheme"] == "https", about
        assert (about["loop"] == "trio") == (loop == "trio"), about
        pids.add(about["pid"])
    assert running.process.pid not in pids
    assert len(pids) == WORKERS, pids  # each worker's own socket on the port: P(one of them never) ~ 2e-6
    stopping = time.monotonic()
    # hypercorn's QUIC server looked at the stop only when a datagram came, and waited for every connection to
    # end, an idle one left open by its client too: it waited out graceful_timeout.
    assert stop_with_an_idle_connection("127.0.0.1", running.port, cadata=cadata, stop=running.stop) == 0, running.log()
    assert time.monotonic() - stopping < GRACEFUL_TIMEOUT / 2, running.log()


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["server=uvicorn", "server.http=3"], ("server.http=3", "uvicorn serves HTTP/1.1 only", "server=hypercorn")),
        (["server=granian", "server.http=3"], ("server.http=3", "granian serves HTTP/1.1 and HTTP/2")),
        (["server=hypercorn", "server.http=3"], ("server.http=3", "always TLS: set server.ssl_certfile")),
        (["mode=bench", "server.http=1", "bench.client=h3"], ("bench.client=h3", "speaks HTTP/3 only")),
    ],
)
def test_http3_where_it_cannot_run_is_one_line(overrides: list[str], fragments: tuple[str, ...]) -> None:
    assert_one_line_error(run_cli(*overrides), *fragments)


def test_mode_bench_measures_http3_with_the_h3_client(tmp_path, tls) -> None:
    """From the app's directory, as a user runs it: the h3 client, every answer checked, and its saturation said."""
    result = run_cli(
        "mode=bench", "server=hypercorn", "server.http=3", *tls_overrides(tls), "bench.duration=1",
        "bench.warmup=0.5", "bench.connections=4", "bench.client=wrk", cwd=tmp_path,
    )  # fmt: skip
    assert_one_line_error(result, "bench.client=wrk", "only bench.client=h3 speaks")
    if refused_here(tls):
        return
    result = run_cli(
        "mode=bench", "server=hypercorn", "server.http=3", *tls_overrides(tls), "bench.duration=1",
        "bench.warmup=0.5", "bench.connections=4", cwd=tmp_path, timeout=120, users_defaults=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    [record_path] = tmp_path.glob("outputs/*/*/bench.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok" and record["client"] == "h3" and record["http"] == "3", record
    assert record["requests"] > 0 and record["errors"] == 0, record
    assert "client_saturated" in record, record


@pytest.mark.slow
def test_a_sweep_over_http_1_2_and_3_completes_with_its_summary(tmp_path, tls) -> None:
    """Each row measured by a client that speaks its protocol (wrk, h2load, h3), every one clean."""
    if refused_here(tls):
        return
    sweep_dir = tmp_path / "sweep"
    result = run_cli(
        "-m", "mode=bench", "server=hypercorn", "server.http=1,2,3", *tls_overrides(tls), "bench.duration=1",
        "bench.warmup=1", "bench.connections=4", f"hydra.sweep.dir={sweep_dir}", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(path.read_text()) for path in sweep_dir.glob("*/bench.json")]
    assert {(r["http"], r["status"], r["errors"]) for r in records} == {("1", "ok", 0), ("2", "ok", 0), ("3", "ok", 0)}
    assert all(r["requests"] > 0 for r in records), records
    assert {r["http"]: r["client"] for r in records}["3"] == "h3", records
    assert (sweep_dir / "summary.md").exists() and (sweep_dir / "summary.csv").exists()
