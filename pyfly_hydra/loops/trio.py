"""trio: structured concurrency, not an asyncio event loop; hypercorn's trio worker runs it (no other server does)."""

from __future__ import annotations

from typing import ClassVar

from pyfly_hydra.loops.base import LoopAdapter


class TrioLoop(LoopAdapter):
    """trio's run loop, started by the server inside each worker; an app on it awaits trio (or anyio)."""

    name: ClassVar[str] = "trio"
    module: ClassVar[str | None] = "trio"
    factory: ClassVar[str | None] = None
