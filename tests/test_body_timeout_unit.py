"""``server.body_timeout`` in-process: ``HTTPExchange``, the layer every worker puts around the app."""

from __future__ import annotations

import asyncio
from typing import Any

from pyfly_hydra.worker.exchange import HTTPExchange


async def _reading_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _run(messages: list[dict[str, Any]], *, stall: bool, scope_type: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    app = HTTPExchange(_reading_app, body_timeout=0.05)
    asyncio.run(asyncio.wait_for(app({"type": scope_type, "method": "POST"}, receive, send), 5))
    return sent


def test_a_body_that_stops_arriving_is_answered_408_and_the_app_told_the_client_left() -> None:
    sent = _run([{"type": "http.request", "body": b"0123456789", "more_body": True}], stall=True)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


def test_a_complete_body_passes_untouched() -> None:
    chunks = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    sent = _run(chunks, stall=False)
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"4"


def test_other_scopes_go_straight_to_the_app() -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    asyncio.run(HTTPExchange(app, body_timeout=0.05)({"type": "websocket"}, None, None))  # type: ignore[arg-type]
    assert seen == ["websocket"]


def _receive_given(headers: list[tuple[bytes, bytes]], http_version: str) -> tuple[Any, Any]:
    """The ``receive`` the app is handed for a request with these headers, and the server's own."""
    handed: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        handed.append(receive)

    async def server_receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "http_version": http_version, "headers": headers}
    asyncio.run(HTTPExchange(app, body_timeout=0.05)(scope, server_receive, None))  # type: ignore[arg-type]
    return handed[0], server_receive


def test_an_http1_request_without_a_body_costs_no_timer() -> None:
    """Neither Content-Length nor Transfer-Encoding: the app gets the server's own ``receive``."""
    handed, server_receive = _receive_given([(b"host", b"x"), (b"accept", b"*/*")], "1.1")
    assert handed is server_receive


def test_a_request_that_may_have_a_body_is_timed() -> None:
    for headers, version in (
        ([(b"host", b"x"), (b"content-length", b"10")], "1.1"),
        ([(b"transfer-encoding", b"chunked")], "1.1"),
        ([(b"host", b"x")], "2"),  # HTTP/2 frames a body without either header
    ):
        handed, server_receive = _receive_given(headers, version)
        assert handed is not server_receive, (headers, version)


def test_a_stalled_http1_body_with_its_content_length_gets_408() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent and not getattr(receive, "called", False):
            receive.called = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"01234", "more_body": True}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "http_version": "1.1", "headers": [(b"content-length", b"10")]}
    asyncio.run(asyncio.wait_for(HTTPExchange(_reading_app, body_timeout=0.05)(scope, receive, send), 5))
    assert sent[0]["status"] == 408
