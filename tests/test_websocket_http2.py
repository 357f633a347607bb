"""WebSockets over HTTP/2 (RFC 8441, extended CONNECT) where a server offers them: hypercorn does; granian does
not advertise them (SETTINGS_ENABLE_CONNECT_PROTOCOL), and uvicorn serves no HTTP/2. An HTTP/2 client (h2)
speaks the websocket frames (wsproto) on the CONNECT stream."""

from __future__ import annotations

import socket

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

TIMEOUT = 10


class H2Socket:
    """One cleartext HTTP/2 connection (prior knowledge), read event by event."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def events(self) -> list[h2.events.Event]:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        events = self.conn.receive_data(data)
        self.flush()
        return events

    def until(self, kind: type[h2.events.Event]) -> h2.events.Event:
        while True:
            for event in self.events():
                if isinstance(event, kind):
                    return event

    def close(self) -> None:
        self.sock.close()


def connect_protocol_enabled(connection: H2Socket) -> bool:
    """Whether the server's SETTINGS say it accepts extended CONNECT (RFC 8441)."""
    connection.until(h2.events.RemoteSettingsChanged)
    return connection.conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 1


def next_text(connection: H2Socket, frames: FrameProtocol, stream: int) -> str:
    """The next text message the server sends on the websocket's stream."""
    while True:
        data = connection.until(h2.events.DataReceived)
        connection.conn.acknowledge_received_data(data.flow_controlled_length, stream)
        frames.receive_bytes(data.data)
        for frame in frames.received_frames():
            if frame.opcode is Opcode.TEXT:
                return str(frame.payload)


def test_a_websocket_echo_over_http2_on_hypercorn(start_server) -> None:
    running = start_server("server=hypercorn", "server.http=2", http2_only=True)
    connection = H2Socket(running.port)
    assert connect_protocol_enabled(connection)
    stream = connection.conn.get_next_available_stream_id()
    connection.conn.send_headers(
        stream,
        [
            (":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/ws"),
            (":authority", f"127.0.0.1:{running.port}"), ("sec-websocket-version", "13"),
        ],
    )  # fmt: skip
    connection.flush()
    response = connection.until(h2.events.ResponseReceived)
    assert dict(response.headers)[b":status"] == b"200", response.headers
    frames = FrameProtocol(client=True, extensions=[])
    for text in ("hello over h2", "twice"):
        connection.conn.send_data(stream, frames.send_data(text, fin=True))
        connection.flush()
        assert next_text(connection, frames, stream) == text
    connection.conn.send_data(stream, frames.close(1000), end_stream=True)
    connection.flush()
    connection.close()
    assert running.stop() == 0, running.log()


@pytest.mark.parametrize("server", ["granian"])
def test_servers_without_websockets_over_http2_do_not_offer_them(start_server, server: str) -> None:
    """What the docs say per server: granian's HTTP/2 does not advertise extended CONNECT."""
    running = start_server(f"server={server}", "server.http=2", http2_only=True)
    connection = H2Socket(running.port)
    assert not connect_protocol_enabled(connection)
    connection.close()
    assert running.stop() == 0, running.log()
