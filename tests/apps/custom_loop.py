"""A user's own loop adapter: a SelectorEventLoop subclass, run by uvicorn through its factory string."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pyfly_hydra.loops.base import LoopAdapter


class MyEventLoop(asyncio.SelectorEventLoop):
    """Recognisable by its class name in /loop."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    return MyEventLoop()


class MyLoop(LoopAdapter):
    name: ClassVar[str] = "myloop"
    module: ClassVar[str | None] = None
    factory: ClassVar[str] = "custom_loop:new_event_loop"
