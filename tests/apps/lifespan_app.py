"""A test app that records its lifespan events in the file named by $LIFESPAN_LOG, one line per event.

Its startup fails while the file named by $LIFESPAN_FAIL_IF exists."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from pyfly_hydra.demo import app as demo_app


def _record(event: str) -> None:
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {os.getpid()}\n")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                failing = os.environ.get("LIFESPAN_FAIL_IF")
                if failing and os.path.exists(failing):
                    await send({"type": "lifespan.startup.failed", "message": f"{failing} exists"})
                    return
                _record("startup")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.sleep(0)
                _record("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    await demo_app(scope, receive, send)


def create_app() -> Any:
    """A factory, for app_factory=true."""
    return app


not_an_app = {"this": "is a dict"}


async def failing_startup_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app whose lifespan startup raises (a database that is not there)."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("database unreachable")
    await demo_app(scope, receive, send)
