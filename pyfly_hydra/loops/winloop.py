"""winloop: the libuv-based event loop for Windows."""

from __future__ import annotations

from typing import ClassVar

from pyfly_hydra.loops.base import LoopAdapter


class WinloopLoop(LoopAdapter):
    """The winloop event loop, set up by the server inside each worker."""

    name: ClassVar[str] = "winloop"
    module: ClassVar[str | None] = "winloop"
    factory: ClassVar[str | None] = "winloop:new_event_loop"
