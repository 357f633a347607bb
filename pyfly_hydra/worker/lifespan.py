"""``server.lifespan=auto|on|off`` for servers whose own switch is missing or does something else.

uvicorn has ``lifespan=auto|on|off``. granian has only "run it" (``asgi``, which logs a warning when
the app does not speak lifespan, e.g. Django) or "skip it" (``asginl``); hypercorn always runs it and
logs a warning. ``LifespanGuard`` gives both uvicorn's contract:

- ``auto``: run the app's lifespan; an app that raises before its startup completes, or returns without sending
  anything, does not speak lifespan, so the guard completes the protocol itself and logs that at debug level.
- ``on``: the app must complete startup; if it raises or returns without a word, the server is told startup
  failed (and stops).
- ``off``: the app never sees a lifespan event; the guard completes the protocol itself.

Every other scope goes straight to the app: ``__call__`` is a plain function that returns the app's
own coroutine, so a request costs one function call more, not another coroutine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from pyfly_hydra.worker.types import ASGIApp, Message, Receive, Scope, Send

LIFESPAN_MODES = ("auto", "on", "off")
logger = logging.getLogger("pyfly_hydra")


async def _complete_without_app(receive: Receive, send: Send, *, startup_received: bool) -> None:
    """Answer the server's lifespan events in the app's place."""
    if not startup_received:
        await receive()  # lifespan.startup
    await send({"type": "lifespan.startup.complete"})
    await receive()  # lifespan.shutdown
    await send({"type": "lifespan.shutdown.complete"})


class LifespanGuard:
    """An ASGI app wrapper that settles lifespan events the way ``mode`` says."""

    def __init__(self, app: ASGIApp, *, mode: str) -> None:
        if mode not in LIFESPAN_MODES:
            raise ValueError(f"lifespan mode must be one of {', '.join(LIFESPAN_MODES)}, got {mode!r}")
        self.app = app
        self.mode = mode

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Requests go to the app as they are; lifespan goes through the guard."""
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)
        if self.mode == "off":
            return _complete_without_app(receive, send, startup_received=False)
        return self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[str] = []
        sent: list[str] = []

        async def tracked_receive() -> Message:
            message = await receive()
            received.append(message["type"])
            return message

        async def tracked_send(message: Message) -> None:
            sent.append(message["type"])
            await send(message)

        try:
            await self.app(scope, tracked_receive, tracked_send)
        except Exception as error:
            if sent:  # startup settled by the app: what happens now is the server's business
                raise
            if self.mode == "on":
                text = f"the app's lifespan startup raised {type(error).__name__}: {error}"
                logger.error("server.lifespan=on: %s", text)
                await send({"type": "lifespan.startup.failed", "message": text})
                return
            logger.debug("server.lifespan=auto: the app does not speak lifespan (%s: %s)", type(error).__name__, error)
            await _complete_without_app(receive, send, startup_received=bool(received))
            return
        if sent:
            return
        # It returned without a word (a bare ASGI app that ignores the scope): uvicorn goes on without lifespan;
        # hypercorn's trio worker failed on it (it sent the startup event into a closed channel).
        if self.mode == "on":
            text = "the app's lifespan returned without completing startup"
            logger.error("server.lifespan=on: %s", text)
            await send({"type": "lifespan.startup.failed", "message": text})
            return
        logger.debug("server.lifespan=auto: the app returned from lifespan without a word: it does not speak it")
        await _complete_without_app(receive, send, startup_received=bool(received))
