"""The embedded HTTP/1.1 load client: against real servers, and its response parser fed byte-split input."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from pyfly_hydra.bench.clients.base import SCHEDSTAT, LoadResult, LoadSpec, run_queue_wait
from pyfly_hydra.bench.clients.builtin import BuiltinClient
from pyfly_hydra.bench.clients.http1 import ResponseParser
from pyfly_hydra.bench.process import pinned
from tests.conftest import free_port, needs

DURATION = 1.0

CONTENT_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCONTENT-length: 13\r\n\r\nHello, world!"
CHUNKED = (
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nHello\r\n8\r\n, world!\r\n0\r\nX-Trailer: yes\r\n\r\n"
)
NOT_FOUND_CHUNKED = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: CHUNKED\r\n\r\n3\r\nNo!\r\n0\r\n\r\n"


def load(url: str, duration: float = DURATION, connections: int = 16, requests: int | None = None) -> LoadResult:
    return BuiltinClient().run(LoadSpec(url=url, duration=duration, connections=connections, requests=requests))


def feed_split(parser: ResponseParser, data: bytes, size: int) -> int:
    """Feed ``data`` in pieces of ``size`` bytes; the number of responses completed in total."""
    return sum(parser.feed(data[i : i + size]) for i in range(0, len(data), size))


# Against real servers.


@pytest.fixture
def serve(start_server):
    """start_server(server=NAME) without the access log."""

    def start(server: str, *overrides: str, **kwargs):
        return start_server(f"server={server}", "server.access_log=false", *overrides, **kwargs)

    return start


@pytest.mark.parametrize("server", ["granian", "uvicorn"])
def test_load_against_real_server(serve, server: str) -> None:
    running = serve(server)
    result = load(running.url + "/json")
    assert result.client == "builtin"
    assert result.requests > 0
    assert result.errors == 0
    assert result.rps == pytest.approx(result.requests / result.duration)
    assert result.rps > 0
    assert 0 < result.p50_ms <= result.p90_ms <= result.p99_ms
    assert result.duration == pytest.approx(DURATION, abs=0.05)
    assert result.client_threads == 1
    assert 0 < result.client_cpu <= 1.5


def test_requests_cap_is_exact(serve) -> None:
    running = serve("granian")
    result = load(running.url + "/", duration=30.0, requests=500)
    assert result.requests == 500
    assert result.errors == 0
    assert result.duration < 30.0


def test_non_2xx_responses_count_as_errors(serve) -> None:
    running = serve("uvicorn")
    result = load(running.url + "/missing?x=1")
    assert result.requests > 0
    assert result.errors == result.requests


def test_dead_port_counts_errors_and_returns() -> None:
    started = time.monotonic()
    result = load(f"http://127.0.0.1:{free_port()}/", duration=0.5)
    assert time.monotonic() - started < 2.0
    assert result.requests == 0
    assert result.errors > 0
    assert result.rps == 0


def test_progress_hook_and_a_thread_without_loop(serve) -> None:
    running = serve("granian")
    calls: list[tuple[float, int]] = []
    results: list[LoadResult] = []
    spec = LoadSpec(url=running.url + "/", duration=1.2, connections=4)
    thread = threading.Thread(
        target=lambda: results.append(BuiltinClient().run(spec, on_progress=lambda *c: calls.append(c)))
    )
    thread.start()
    thread.join(timeout=10)
    assert results, "run() failed in a thread without an event loop"
    assert len(calls) >= 3
    assert [elapsed for elapsed, _ in calls] == sorted(elapsed for elapsed, _ in calls)
    assert calls[0][0] == pytest.approx(0.5, abs=0.2)
    assert calls[-1] == (pytest.approx(results[0].duration), results[0].requests)


def test_https_with_an_untrusted_test_certificate(serve, tmp_path: Path) -> None:
    cert = trustme.CA().issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    running = serve("granian", f"server.ssl_certfile={certfile}", f"server.ssl_keyfile={keyfile}", scheme="https")
    result = load(running.url + "/", connections=4)
    assert result.requests > 0
    assert result.errors == 0


# The response parser, without a socket.


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
@pytest.mark.parametrize(("response", "status"), [(CONTENT_LENGTH, 200), (CHUNKED, 201), (NOT_FOUND_CHUNKED, 404)])
def test_parser_completes_a_response_split_anywhere(response: bytes, status: int, size: int) -> None:
    parser = ResponseParser()
    assert feed_split(parser, response, size) == 1
    assert parser.statuses == [status]
    assert parser.keep_alive


def test_parser_completes_only_at_the_last_byte() -> None:
    parser = ResponseParser()
    for response in (CHUNKED, CONTENT_LENGTH):
        assert [parser.feed(response[i : i + 1]) for i in range(len(response))] == [0] * (len(response) - 1) + [1]


def test_parser_several_responses_in_one_feed() -> None:
    parser = ResponseParser()
    assert parser.feed(CHUNKED + CONTENT_LENGTH + NOT_FOUND_CHUNKED + CONTENT_LENGTH[:20]) == 3
    assert parser.statuses == [201, 200, 404]
    assert parser.feed(CONTENT_LENGTH[20:]) == 1
    assert parser.statuses == [201, 200, 404, 200]


def test_parser_responses_without_body() -> None:
    parser = ResponseParser()
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    )
    assert feed_split(parser, data, 5) == 3
    assert parser.statuses == [204, 304, 200]


def test_parser_body_until_connection_end() -> None:
    parser = ResponseParser()
    assert parser.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome body") == 0
    assert parser.feed(b"more body") == 0
    assert not parser.keep_alive
    assert parser.feed_eof() == 1
    assert parser.statuses == [200]
    assert parser.feed_eof() == 0


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nconnection: Close\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", True),
        (b"HTTP/1.0 200 OK\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", True),
    ],
)
def test_parser_keep_alive(head: bytes, keep_alive: bool) -> None:
    parser = ResponseParser()
    assert parser.feed(head + b"Content-Length: 2\r\n\r\nok") == 1
    assert parser.keep_alive is keep_alive


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_parser_rejects_malformed_responses(data: bytes) -> None:
    with pytest.raises(ValueError):
        ResponseParser().feed(data)


@needs(not SCHEDSTAT.exists(), "no /proc/thread-self/schedstat on this kernel: client_waited_cores reads 0 here")
def test_a_client_starved_of_its_cpu_counts_as_saturated() -> None:
    """Busy processes on the client's only CPU: the client used little CPU, but waited for it, and that
    is no measure of the server (the CI run where another process held the core read 0.28 cores)."""
    with pinned(frozenset({min(os.sched_getaffinity(0))})):
        # Three busy processes on the same CPU (inherited affinity): the client gets about a quarter of it.
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
        try:
            time.sleep(0.2)  # the hog is spinning
            waited_start, cpu_start, started = run_queue_wait(), time.process_time(), time.perf_counter()
            while time.perf_counter() - started < 0.5:
                pass  # the client's work, sharing the CPU
            waited = run_queue_wait() - waited_start
            used = time.process_time() - cpu_start
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    assert waited > 0.2 and used < 0.2, (waited, used)
    starved = LoadResult("builtin", 1, 0, 0.5, 2.0, 1.0, 1.0, 1.0, used / 0.5, 1, saturation_share=0.45)
    assert not starved.saturated
    assert replace(starved, client_waited=waited / 0.5).saturated
