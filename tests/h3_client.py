"""A minimal HTTP/3 client on aioquic for the tests: one GET per QUIC connection, the answer's status, headers
and body (tests/test_http3.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent


@dataclass
class H3Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.answer = H3Answer()
        self.done: asyncio.Future[H3Answer] = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            for name, value in event.headers:
                if name == b":status":
                    self.answer.status = int(value)
                else:
                    self.answer.headers[name.decode()] = value.decode()
        elif isinstance(event, DataReceived):
            self.answer.body += event.data
        if getattr(event, "stream_ended", False) and not self.done.done():
            self.done.set_result(self.answer)


async def _get(host: str, port: int, path: str, cadata: str, timeout: float) -> H3Answer:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    configuration.load_verify_locations(cadata=cadata.encode())
    async with connect(host, port, configuration=configuration, create_protocol=_Client) as client:
        assert isinstance(client, _Client)
        stream = client._quic.get_next_available_stream_id()
        headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]
        headers.append((b":path", path.encode()))
        client.h3.send_headers(stream, headers, end_stream=True)
        client.transmit()
        return await asyncio.wait_for(client.done, timeout)


def h3_get(host: str, port: int, path: str, *, cadata: str, timeout: float = 10) -> H3Answer:
    """GET ``path`` over HTTP/3 (a new QUIC connection), verifying the server against the CA PEM ``cadata``."""
    return asyncio.run(_get(host, port, path, cadata, timeout))


async def _stop_with_an_idle_connection(host: str, port: int, cadata: str, stop: Any) -> Any:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    configuration.load_verify_locations(cadata=cadata.encode())
    async with connect(host, port, configuration=configuration, create_protocol=_Client):
        return await asyncio.to_thread(stop)  # the connection stays open, idle, while the server stops


def stop_with_an_idle_connection(host: str, port: int, *, cadata: str, stop: Any) -> Any:
    """Call ``stop()`` (in a thread) while an HTTP/3 connection to the server is open without a request; its
    return value."""
    return asyncio.run(_stop_with_an_idle_connection(host, port, cadata, stop))
