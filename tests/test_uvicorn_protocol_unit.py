"""pyfly-hydra's uvicorn protocol in-process: the request-head deadline and size limit, fed read by read.

The end-to-end checks (real sockets, every server) are in test_limits and test_slow_clients; these pin down
what happens at each read, including that a head arriving whole costs no timer.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from uvicorn import Config
from uvicorn.server import ServerState

from pyfly_hydra.servers.uvicorn.protocol import HTTPTOOLS, IdleClosingHTTPProtocol, head_bytes

pytestmark = pytest.mark.skipif(not HTTPTOOLS, reason="the head deadline and limit need httptools")

TIMEOUT = 0.2


class Transport(asyncio.Transport):
    """What the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Connection:
    """A protocol on a fake transport, and the paths its app was asked for."""

    def __init__(self, *, limit: int | None = None) -> None:
        self.paths: list[str] = []

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            self.paths.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})

        config = Config(
            app=app, interface="asgi3", proxy_headers=False, access_log=False, lifespan="off", log_config=None,
            timeout_keep_alive=TIMEOUT, h11_max_incomplete_event_size=limit,
        )  # fmt: skip
        config.load()
        loop = asyncio.get_running_loop()
        self.protocol = IdleClosingHTTPProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        self.transport = Transport()
        self.transport.protocol = self.protocol
        self.protocol.connection_made(self.transport)

    async def send(self, *reads: bytes) -> None:
        for data in reads:
            self.protocol.data_received(data)
            await asyncio.sleep(0.01)  # the app's task runs

    def statuses(self) -> list[int]:
        return [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", self.transport.written)]


def run(test: Any) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def request(path: str = "/", *, header: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: t\r\n" + header + b"\r\n"


def test_a_head_that_arrives_whole_is_served_and_arms_no_timer() -> None:
    async def scenario() -> None:
        connection = Connection(limit=1024)
        await connection.send(request("/a"), request("/b") + request("/c"))
        assert connection.paths == ["/a", "/b", "/c"] and connection.statuses() == [200] * 3
        assert connection.protocol._head_deadline is None

    run(scenario)


def test_a_head_that_stalls_is_closed_after_the_keep_alive_timeout() -> None:
    async def scenario() -> None:
        connection = Connection()
        await connection.send(b"GET / HTTP/1.1\r\nHo")
        assert not connection.transport.closed
        await asyncio.sleep(TIMEOUT * 2)
        assert connection.transport.closed and connection.transport.written == b""

    run(scenario)


def test_a_head_trickled_a_byte_at_a_time_is_closed_at_its_deadline() -> None:
    async def scenario() -> None:
        connection = Connection()
        started = asyncio.get_running_loop().time()
        for byte in request(header=b"X-Slow: " + b"a" * 200 + b"\r\n"):
            if connection.transport.closed:
                break
            await connection.send(bytes([byte]))
        elapsed = asyncio.get_running_loop().time() - started
        assert connection.transport.closed and connection.paths == []
        assert TIMEOUT <= elapsed < TIMEOUT * 3

    run(scenario)


def test_a_head_completed_in_a_later_read_is_served_and_its_deadline_dropped() -> None:
    async def scenario() -> None:
        connection = Connection(limit=1024)
        head = request("/split")
        await connection.send(head[:10], head[10:])
        assert connection.paths == ["/split"] and connection.protocol._head_deadline is None
        # A blank line split across two reads is found.
        await connection.send(request("/crlf")[:-3], b"\r\n\r\n"[-3:])
        assert connection.paths == ["/split", "/crlf"]

    run(scenario)


def test_a_head_above_the_limit_across_reads_is_refused_before_the_app() -> None:
    async def scenario() -> None:
        connection = Connection(limit=1024)
        await connection.send(b"GET /big HTTP/1.1\r\nX-Big: " + b"a" * 600, b"a" * 600)
        assert connection.statuses() == [431] and connection.transport.closed and connection.paths == []

    run(scenario)


def test_a_head_under_the_limit_across_reads_is_not_counted_twice() -> None:
    async def scenario() -> None:
        connection = Connection(limit=1024)
        head = request("/ok", header=b"X-Fill: " + b"a" * 600 + b"\r\n")
        await connection.send(head[:400], head[400:])
        assert connection.paths == ["/ok"] and connection.statuses() == [200]

    run(scenario)


def test_an_oversized_head_in_one_read_is_answered_431_in_its_turn() -> None:
    async def scenario() -> None:
        connection = Connection(limit=1024)
        oversized = request("/big", header=b"X-Big: " + b"a" * 2000 + b"\r\n")
        await connection.send(request("/first") + oversized + request("/after"))
        assert connection.statuses() == [200, 431] and connection.paths == ["/first"]
        assert connection.transport.closed

    run(scenario)


def test_head_bytes_is_the_size_on_the_wire() -> None:
    wire = b"GET /p?q=1 HTTP/1.1\r\nhost: t\r\nx-a: bc\r\n\r\n"
    scope = {"method": "GET", "raw_path": b"/p", "query_string": b"q=1", "headers": [(b"host", b"t"), (b"x-a", b"bc")]}
    assert head_bytes(scope) == len(wire)
