"""The demo app 5 ms slower on every request: a configuration certainly worse than the demo's own
(8 connections cap it near 1,600 requests/s, the demo serves several times that)."""

from __future__ import annotations

import asyncio
from typing import Any

from pyfly_hydra.demo import app as demo


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await asyncio.sleep(0.005)
    await demo(scope, receive, send)
