"""rloop: granian's author's event loop, written in Rust (experimental upstream); never chosen by ``auto``."""

from __future__ import annotations

from typing import ClassVar

from pyfly_hydra.loops.base import LoopAdapter


class RloopLoop(LoopAdapter):
    """The rloop event loop, set up by the server inside each worker."""

    name: ClassVar[str] = "rloop"
    module: ClassVar[str | None] = "rloop"
    factory: ClassVar[str | None] = "rloop:new_event_loop"
