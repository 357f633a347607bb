"""The moment a worker starts draining, told to whatever must go with it (standard library only).

Each server tells it its own way (pyfly-hydra's uvicorn server on its first tick after a stop, hypercorn's
shutdown watch, granian's worker stop signal); ``GoingAway`` listens, and closes every open websocket
with 1001 (going away) at once, where the servers held them to the graceful timeout (hypercorn, then
1011), sent 1012 (uvicorn) or dropped them without a close frame (granian).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send

GOING_AWAY = 1001
_listeners: set[Callable[[], None]] = set()
_draining = False


def started() -> None:
    """The worker starts draining (idempotent): tell every listener once."""
    global _draining
    if _draining:
        return
    _draining = True
    for listener in list(_listeners):
        listener()


def draining() -> bool:
    return _draining


def open_websockets() -> int:
    """How many websockets this worker still holds open (each listens for the drain)."""
    return len(_listeners)


class GoingAway:
    """ASGI wrapper: an open websocket is closed with 1001 when the worker starts draining, and the app's
    ``receive`` then says the client went away (``websocket.disconnect``, code 1001)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "websocket":
            return self.app(scope, receive, send)
        return self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        going = asyncio.Event()
        accepted = closed = False

        def drain() -> None:
            loop.call_soon_threadsafe(going.set)

        async def close_when_going() -> None:
            nonlocal closed
            await going.wait()
            if accepted and not closed:
                closed = True
                await send({"type": "websocket.close", "code": GOING_AWAY})

        async def guarded_send(message: Message) -> None:
            nonlocal accepted, closed
            if closed:
                return  # closed with 1001 already: what the app still sends goes nowhere
            accepted = accepted or message["type"] == "websocket.accept"
            closed = message["type"] == "websocket.close"
            await send(message)

        async def going_receive() -> Message:
            if going.is_set():
                return {"type": "websocket.disconnect", "code": GOING_AWAY}
            received = asyncio.ensure_future(receive())
            gone = asyncio.ensure_future(going.wait())
            await asyncio.wait({received, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if received.done():
                return received.result()
            received.cancel()
            return {"type": "websocket.disconnect", "code": GOING_AWAY}

        _listeners.add(drain)
        closer = loop.create_task(close_when_going())
        try:
            if _draining:
                going.set()
            await self.app(scope, going_receive, guarded_send)
        finally:
            if not going.is_set():
                closer.cancel()
            else:
                await closer  # the 1001 is out before this websocket stops counting as open
            _listeners.discard(drain)
