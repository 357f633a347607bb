"""Oversized request heads and bodies on every server: each server's own defaults, and the two keys."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time

import httpx
import psutil
import pytest

from tests.conftest import SERVERS

# A 1 MB header with each server's own defaults: granian (417,792-byte read buffer) and hypercorn
# refuse it; uvicorn with httptools takes it whole.
DEFAULT_HUGE_HEADER_STATUS = {"granian": 431, "uvicorn": 200, "hypercorn": 431}
# hypercorn buffers a WSGI body itself first and refuses one above its cap (set to the key) with 400.
WSGI_TOO_LARGE_STATUS = {"granian": 413, "uvicorn": 413, "hypercorn": 400}
HEADER_LIMIT = 16 * 1024
BODY_LIMIT = 1024 * 1024


def status_of(port: int, *pieces: bytes) -> int | None:
    """The status the server answers the request sent in ``pieces`` with (None: closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.2)
        head = b""
        try:
            while b"\r\n" not in head:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                head += chunk
        except ConnectionResetError:
            pass
    return int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else None


def with_header(size: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * size + b"\r\n\r\n"


@pytest.mark.parametrize("server", SERVERS)
def test_each_servers_own_limits(start_server, server: str) -> None:
    running = start_server(f"server={server}")
    assert status_of(running.port, with_header(1_000_000)) == DEFAULT_HUGE_HEADER_STATUS[server]
    body = b"x" * (8 * 1024 * 1024)  # no server limits an ASGI body by default
    assert httpx.post(running.url + "/upload", content=body, timeout=30).json()["size"] == len(body)
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_max_header_bytes(start_server, server: str) -> None:
    running = start_server(f"server={server}", f"server.max_header_bytes={HEADER_LIMIT}")
    assert status_of(running.port, with_header(1024)) == 200
    assert status_of(running.port, with_header(4 * HEADER_LIMIT)) == 431
    assert status_of(running.port, with_header(2 * HEADER_LIMIT)) == 431  # whole in one read (h11 missed it)
    # A head under the limit that arrives in pieces is not counted twice.
    head = with_header(HEADER_LIMIT * 5 // 8)
    assert status_of(running.port, head[: len(head) // 2], head[len(head) // 2 :]) == 200
    assert running.stop() == 0


def statuses_until_closed(port: int, first: bytes, later: bytes = b"", *, after: float = 0.0) -> list[int]:
    """Send ``first``, then ``later`` after ``after`` seconds, on one connection: the status of every
    response until the server closes it."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(first)
        if later:
            time.sleep(after)
            with contextlib.suppress(OSError):
                sock.sendall(later)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]


def test_uvicorn_counts_a_pipelined_head_and_answers_431_after_the_earlier_response(start_server) -> None:
    """An oversized head in the same read as the request before it, or arriving while that request's
    response is still being made: the earlier response whole, then 431, and the app never sees it."""
    running = start_server("server=uvicorn", f"server.max_header_bytes={HEADER_LIMIT}", "server.access_log=true")
    oversized = b"GET /loop HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    small = b"GET /json HTTP/1.1\r\nHost: test\r\n\r\n"
    assert statuses_until_closed(running.port, small + oversized) == [200, 431]
    slow = b"GET /sleep?seconds=0.5 HTTP/1.1\r\nHost: test\r\n\r\n"
    assert statuses_until_closed(running.port, slow, oversized, after=0.1) == [200, 431]
    # Under the limit, pipelined both ways, every request is answered.
    last = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert statuses_until_closed(running.port, small + small + last) == [200] * 3
    assert statuses_until_closed(running.port, small, small + last, after=0.1) == [200] * 3
    assert running.stop() == 0
    assert "/loop" not in running.log(), running.log()


@pytest.mark.parametrize("app", ["pyfly_hydra.demo:app", "flask_app:app"])
def test_hypercorn_max_header_bytes_holds_over_http2_and_for_wsgi(start_server, app: str) -> None:
    """hypercorn advertises its HTTP/2 header-list limit but does not check it; pyfly-hydra's HeadLimit does."""
    running = start_server("server=hypercorn", f"app={app}", f"server.max_header_bytes={HEADER_LIMIT}")
    big = {"x-big": "a" * (2 * HEADER_LIMIT)}
    with httpx.Client(http1=False, http2=True, timeout=10) as client:  # h2c, prior knowledge
        assert client.get(running.url + "/", headers=big).status_code == 431
        assert client.get(running.url + "/").status_code == 200
    assert status_of(running.port, with_header(2 * HEADER_LIMIT)) == 431
    assert running.stop() == 0


def chunks(total: int, size: int = 64 * 1024):
    for _ in range(total // size):
        yield b"x" * size


@pytest.mark.parametrize("server", SERVERS)
def test_max_body_bytes_on_an_asgi_app(start_server, server: str) -> None:
    running = start_server(f"server={server}", f"server.max_body_bytes={BODY_LIMIT}")
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.post("/upload", content=b"x" * (BODY_LIMIT // 2)).json()["size"] == BODY_LIMIT // 2
        assert client.post("/upload", content=b"x" * (2 * BODY_LIMIT)).status_code == 413
        assert client.post("/upload", content=chunks(2 * BODY_LIMIT)).status_code == 413  # chunked: counted
        assert client.get("/").status_code == 200
    assert running.stop() == 0


@pytest.mark.parametrize("server", SERVERS)
def test_max_body_bytes_on_a_wsgi_app(start_server, server: str) -> None:
    running = start_server(f"server={server}", "app=flask_app:app", f"server.max_body_bytes={BODY_LIMIT}")
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.post("/upload", content=b"x" * (BODY_LIMIT // 2)).json()["size"] == BODY_LIMIT // 2
        assert client.post("/upload", content=b"x" * (2 * BODY_LIMIT)).status_code == WSGI_TOO_LARGE_STATUS[server]
    assert running.stop() == 0


def _chunked_upload(port: int, *, total: int, chunk: int = 1 << 20) -> bytes:
    """POST a chunked body of ``total`` bytes to /upload-raw from one thread while reading the answer in
    this one (a server that refuses early stops reading): the answer's head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)

    def send_body() -> None:
        piece = f"{chunk:x}\r\n".encode() + b"x" * chunk + b"\r\n"
        with contextlib.suppress(OSError):  # the server answered and closed: sending is over
            sock.sendall(b"POST /upload-raw HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(total // chunk):
                sock.sendall(piece)
            sock.sendall(b"0\r\n\r\n")

    sender = threading.Thread(target=send_body)
    sender.start()
    answer = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sender.join(timeout=60)
    sock.close()
    return answer


def _largest_rss(pid: int) -> int:
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return max(process.memory_info().rss for process in processes)


@pytest.mark.parametrize("server", SERVERS)
def test_an_endless_wsgi_body_is_refused_without_buffering_it(start_server, server: str) -> None:
    """300 MiB chunked to a WSGI app reading wsgi.input.read() with no size, max_body_bytes=1000: the
    limit's answer (hypercorn's own 400 where it buffers before any wrapper) and no worker grows 20 MiB."""
    running = start_server(f"server={server}", "app=flask_app:app", "server.max_body_bytes=1000")
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.post("/upload-raw", content=b"x" * 1000).json() == {"size": 1000}
        before = _largest_rss(running.process.pid)
        answer = _chunked_upload(running.port, total=300 << 20)
        assert answer.startswith(f"HTTP/1.1 {WSGI_TOO_LARGE_STATUS[server]} ".encode()), answer[:200]
        assert _largest_rss(running.process.pid) - before < 20 << 20
        assert client.get("/").status_code == 200
    assert running.stop() == 0


def _stalled_upload(port: int, *, sent: bytes, declared: int) -> tuple[bytes, float]:
    """POST /upload declaring ``declared`` bytes, send ``sent``, then nothing: what comes back, and when."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode()
        sock.sendall(head + sent)
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):  # until the server closes
            received += chunk
        return received, time.monotonic() - started


@pytest.mark.parametrize(
    ("server", "loop"),
    [*((server, "auto") for server in SERVERS), ("hypercorn", "trio")],  # trio: trio's deadline (worker.async_library)
)
def test_a_stalled_request_body_gets_408_within_the_body_timeout(start_server, server: str, loop: str) -> None:
    """server.body_timeout=2, 2 workers: a POST whose body stops after 10 bytes gets 408 and a close
    within 4 s, while an upload on another connection meanwhile succeeds."""
    running = start_server(f"server={server}", f"loop={loop}", "server.workers=2", "server.body_timeout=2")
    results: list[tuple[bytes, float]] = []
    stalled = threading.Thread(
        target=lambda: results.append(_stalled_upload(running.port, sent=b"x" * 10, declared=100))
    )
    stalled.start()
    time.sleep(0.3)
    with httpx.Client(timeout=10) as client:
        upload = client.post(running.url + "/upload", content=b"y" * 100_000)
    assert upload.status_code == 200, upload.text
    stalled.join(timeout=10)
    ((received, elapsed),) = results
    assert received.startswith(b"HTTP/1.1 408"), received
    assert 1.5 < elapsed < 4, elapsed
    assert running.stop() == 0, running.log()
