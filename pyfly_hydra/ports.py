"""The two ports: what a server adapter and an event-loop adapter must provide.

Unlike PyFly's ``EventLoopPort.configure()``, which set an asyncio policy in the parent process that
no worker ever saw, a loop adapter here only *names* the loop; each server adapter hands that name to
its own per-worker option, so every worker really runs the loop that was asked for.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pyfly_hydra.config.schema import ServerProperties
    from pyfly_hydra.worker.apps import AppTarget


@runtime_checkable
class EventLoopPort(Protocol):
    """An event loop a server can run its workers on."""

    name: ClassVar[str]  # "uvloop", "asyncio", ...
    module: ClassVar[str | None]  # what must be importable; None for the standard library
    factory: ClassVar[str]  # import string "module:callable" returning a new event loop

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """Create a new loop of this kind in the calling process."""
        ...


@runtime_checkable
class ApplicationServerPort(Protocol):
    """An ASGI server that serves an app, blocking until it has shut down."""

    name: ClassVar[str]  # "granian", "uvicorn", ...
    module: ClassVar[str]  # what must be importable for the server to run
    properties: ServerProperties

    def check(self, *, loop: EventLoopPort) -> None:
        """Raise ConfigError for any property or loop this server cannot honour."""
        ...

    def version(self) -> str:
        """The installed server's version."""
        ...

    def run(self, *, app: AppTarget, loop: EventLoopPort) -> int:
        """Serve ``app`` until SIGINT/SIGTERM, drain, and return the process exit code."""
        ...
