"""An app that awaits trio itself (loop=trio on hypercorn): it sleeps on trio and answers its pid and trio's task."""

from __future__ import annotations

import json
import os

import trio


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    await trio.sleep(0.001)
    body = json.dumps({"pid": os.getpid(), "task": type(trio.lowlevel.current_task()).__name__}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
