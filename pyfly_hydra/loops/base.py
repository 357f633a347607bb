"""What every loop adapter shares: a loop is named by ``name`` and built from its ``factory`` import string."""

from __future__ import annotations

from typing import ClassVar


class LoopAdapter:
    """Base of the built-in loop adapters; subclasses only fill the three class attributes. The loop is
    built in each worker, by the server, from ``factory`` (or the server's own name for it): never here."""

    name: ClassVar[str]
    module: ClassVar[str | None]  # what must be importable; None for the standard library
    factory: ClassVar[str]  # "module:callable" returning a new event loop
