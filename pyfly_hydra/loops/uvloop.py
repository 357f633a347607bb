"""uvloop: the libuv-based event loop for Linux and macOS."""

from __future__ import annotations

from typing import ClassVar

from pyfly_hydra.loops.base import LoopAdapter


class UvloopLoop(LoopAdapter):
    """The uvloop event loop, set up by the server inside each worker."""

    name: ClassVar[str] = "uvloop"
    module: ClassVar[str | None] = "uvloop"
    factory: ClassVar[str | None] = "uvloop:new_event_loop"
