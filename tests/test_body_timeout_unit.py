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
