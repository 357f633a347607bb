"""An ASGI app that freezes once, like a long GC pause: $STALL_AFTER seconds after its first request, the
next request blocks the worker's event loop for $STALL_SECONDS (time.sleep), so every request waits."""

from __future__ import annotations

import os
import time
from typing import Any

STALL_AFTER = float(os.environ.get("STALL_AFTER", "2"))
STALL_SECONDS = float(os.environ.get("STALL_SECONDS", "1"))
_first_request: float | None = None
_stalled = False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _first_request, _stalled
    if scope["type"] != "http":
        return
    now = time.monotonic()
    if _first_request is None:
        _first_request = now
    elif not _stalled and now - _first_request >= STALL_AFTER:
        _stalled = True
        time.sleep(STALL_SECONDS)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
