"""uvloop: libuv-based event loop for Linux and macOS."""

from __future__ import annotations

import asyncio
from typing import ClassVar


class UvloopLoop:
    """The uvloop event loop."""

    name: ClassVar[str] = "uvloop"
    module: ClassVar[str | None] = "uvloop"
    factory: ClassVar[str] = "uvloop:new_event_loop"

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new uvloop loop."""
        import uvloop

        return uvloop.new_event_loop()
