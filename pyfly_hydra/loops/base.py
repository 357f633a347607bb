"""What every loop adapter shares: a loop is named by ``name`` and built from its ``factory`` import string."""

from __future__ import annotations

import asyncio
import importlib
from typing import ClassVar


class LoopAdapter:
    """Base of the built-in loop adapters; subclasses only fill the three class attributes."""

    name: ClassVar[str]
    module: ClassVar[str | None]  # what must be importable; None for the standard library
    factory: ClassVar[str]  # "module:callable" returning a new event loop

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new loop of this kind, imported only now."""
        module, _, attribute = self.factory.partition(":")
        loop: asyncio.AbstractEventLoop = getattr(importlib.import_module(module), attribute)()
        return loop
