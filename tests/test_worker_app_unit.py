"""The app each worker serves (``worker.app.build``) in-process: which wrappers a request passes through."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

import pytest

from pyfly_hydra.worker.app import SPEC_ENV, HTTPFirst, WorkerApp, build
from pyfly_hydra.worker.drain import GoingAway
from pyfly_hydra.worker.exchange import HTTPExchange
from pyfly_hydra.worker.lifespan import LifespanGuard


def _built(monkeypatch: pytest.MonkeyPatch, **wrappers: Any) -> Any:
    spec = WorkerApp(app="pyfly_hydra.demo:app", factory=False, interface="asgi", **wrappers)
    monkeypatch.setenv(SPEC_ENV, json.dumps(asdict(spec)))
    return build()


def test_an_http_request_skips_the_wrappers_only_websockets_and_lifespan_need(monkeypatch: pytest.MonkeyPatch) -> None:
    app = _built(monkeypatch, lifespan="auto", going_away=True, body_timeout=60)
    assert isinstance(app, HTTPFirst)
    assert isinstance(app.http, HTTPExchange)  # the body timeout, then the user's app
    assert isinstance(app.other, LifespanGuard) and isinstance(app.other.app, GoingAway)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "http_version": "1.1", "headers": [], "root_path": ""}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"Hello, world!"


def test_without_websocket_or_lifespan_wrappers_there_is_no_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(_built(monkeypatch, body_timeout=60), HTTPExchange)


async def _bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app that ignores every scope but HTTP: it returns from lifespan without a word."""


def _lifespan_through(guard: LifespanGuard) -> list[str]:
    """What the server is told when it runs the lifespan protocol through ``guard``."""
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    told: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(events)

    async def send(message: dict[str, Any]) -> None:
        told.append(message["type"])

    asyncio.run(guard({"type": "lifespan"}, receive, send))
    return told


def test_an_app_that_returns_from_lifespan_without_a_word_does_not_speak_it() -> None:
    """auto completes the protocol itself (hypercorn's trio worker failed on it); on says startup failed."""
    assert _lifespan_through(LifespanGuard(_bare_app, mode="auto")) == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert _lifespan_through(LifespanGuard(_bare_app, mode="on")) == ["lifespan.startup.failed"]
