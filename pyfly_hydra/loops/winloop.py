"""winloop: the libuv-based event loop for Windows."""

from __future__ import annotations

import asyncio
from typing import ClassVar


class WinloopLoop:
    """The winloop event loop."""

    name: ClassVar[str] = "winloop"
    module: ClassVar[str | None] = "winloop"
    factory: ClassVar[str] = "winloop:new_event_loop"

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new winloop loop."""
        import winloop

        return winloop.new_event_loop()
