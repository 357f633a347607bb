"""What every loop adapter shares: a loop is named by ``name`` and built from its ``factory`` import string (an
asyncio event loop), or run by a server that names it (trio, which is not one)."""

from __future__ import annotations

from typing import ClassVar


class LoopAdapter:
    """Base of the built-in loop adapters; subclasses only fill the three class attributes. The loop is
    built in each worker, by the server, from ``factory`` (or the server's own name for it): never here."""

    name: ClassVar[str]
    module: ClassVar[str | None]  # what must be importable; None for the standard library
    # "module:callable" returning a new asyncio event loop; None: not an asyncio loop (trio), which only a server
    # naming it in its ``loops`` runs
    factory: ClassVar[str | None]
