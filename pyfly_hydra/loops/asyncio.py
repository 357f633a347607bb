"""The standard library's asyncio event loop: always available."""

from __future__ import annotations

from typing import ClassVar

from pyfly_hydra.loops.base import LoopAdapter


class AsyncioLoop(LoopAdapter):
    """The asyncio event loop, set up by the server inside each worker."""

    name: ClassVar[str] = "asyncio"
    module: ClassVar[str | None] = None
    factory: ClassVar[str | None] = "asyncio:new_event_loop"
