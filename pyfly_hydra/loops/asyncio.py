"""The standard library's asyncio event loop: always available."""

from __future__ import annotations

import asyncio
from typing import ClassVar


class AsyncioLoop:
    """The standard asyncio event loop."""

    name: ClassVar[str] = "asyncio"
    module: ClassVar[str | None] = None
    factory: ClassVar[str] = "asyncio:new_event_loop"

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new standard-library loop."""
        return asyncio.new_event_loop()
