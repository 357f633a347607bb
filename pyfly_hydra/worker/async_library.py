"""The async library a worker's loop runs, and the one primitive pyfly-hydra's layers need from it: a deadline.

Every loop but trio is an asyncio loop; hypercorn's trio worker runs trio, whose ``asyncio`` calls fail ("no
running event loop"). ``server.body_timeout`` bounds each wait of the app's ``receive`` (``worker.exchange``):
``asyncio.timeout`` there, ``trio.fail_after`` under trio, both raising ``TimeoutError`` past the deadline. The
library is chosen once per worker, from the loop it was told to run: a request pays for no detection.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any

ASYNCIO = "asyncio"
TRIO = "trio"
# The loops that are not asyncio loops, each its own library (pyfly_hydra.loops: a loop with no factory).
NOT_ASYNCIO: frozenset[str] = frozenset({TRIO})


def library_of(loop: str) -> str:
    """The async library the loop named ``loop`` runs."""
    return loop if loop in NOT_ASYNCIO else ASYNCIO


class TrioDeadline(AbstractAsyncContextManager[None]):
    """``trio.fail_after(seconds)`` as ``asyncio.timeout`` behaves: an async context raising ``TimeoutError``."""

    def __init__(self, seconds: float) -> None:
        import trio

        self._scope: Any = trio.fail_after(seconds)
        self._too_slow: type[BaseException] = trio.TooSlowError

    async def __aenter__(self) -> None:
        self._scope.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool | None:
        try:
            return self._scope.__exit__(kind, error, traceback)  # type: ignore[no-any-return]
        except self._too_slow:
            raise TimeoutError from None


def deadline_for(library: str) -> Callable[[float], AbstractAsyncContextManager[None]]:
    """The deadline of ``library``: ``async with deadline(seconds):`` raises TimeoutError past ``seconds``."""
    if library == TRIO:
        return TrioDeadline
    import asyncio

    return asyncio.timeout
