"""The two ports: exactly what the runner calls on a server adapter and reads of an event-loop adapter.

Unlike PyFly's ``EventLoopPort.configure()``, which set an asyncio policy in the parent process that
no worker ever saw, a loop adapter here only *names* the loop; each server adapter hands that name (or
its factory) to its own per-worker option, so every worker really runs the loop that was asked for.

A server adapter is built once, from the validated ``server.*`` (``cls(properties=...)``), and never
changed afterwards: what else a run needs (the app, the loop, the job's logging, what reload watches)
is an argument of the method that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from pyfly_hydra.config.schema import ServerProperties
    from pyfly_hydra.supervision.reload import WatchedSources
    from pyfly_hydra.worker.apps import AppTarget


@runtime_checkable
class EventLoopPort(Protocol):
    """An event loop a server can run its workers on."""

    name: ClassVar[str]  # "uvloop", "asyncio", ...
    module: ClassVar[str | None]  # what must be importable; None for the standard library
    factory: ClassVar[str | None]  # "module:callable" returning a new asyncio loop; None: not asyncio (trio)


@dataclass(frozen=True)
class Serving:
    """What the runner hands a server adapter to serve: the app (or the worker-app factory wrapping it), the
    loop its workers run, the job's logging for the server (None: the server's own), what reload watches, the
    run's startup record, where each rolling restart is noted (None: the run keeps none), and whether the first
    workers may fork from the runner (it holds none of the app's state: ``runner.app_check``)."""

    app: AppTarget
    loop: EventLoopPort
    log_config: dict[str, Any] | None = None
    reload_sources: WatchedSources | None = None
    record: Path | None = None
    workers_may_fork: bool = False


@runtime_checkable
class ApplicationServerPort(Protocol):
    """A server that serves an app, blocking until it has shut down (``servers.base.ServerAdapter`` has
    everything but ``run`` and the tables)."""

    name: ClassVar[str]  # "granian", "uvicorn", ...
    module: ClassVar[str]  # what must be importable for the server to run
    native_wsgi: ClassVar[bool]  # False: a WSGI app is served to it through a2wsgi
    properties: ServerProperties

    def check(self, *, loop: EventLoopPort) -> None:
        """Raise ConfigError for any property or loop this server cannot honour."""
        ...

    def layers(self) -> frozenset[str]:
        """The layers pyfly-hydra adds for this server's keys (``servers.keys.LAYERS``)."""
        ...

    def version(self) -> str:
        """The installed server's version."""
        ...

    def served_http(self) -> str:
        """The HTTP version it speaks for ``server.http`` (the startup line and the records say it)."""
        ...

    def connection_request_cap(self) -> tuple[str, int] | None:
        """The native option and count after which it closes a connection itself (None: never)."""
        ...

    def check_native(self, serving: Serving) -> None:
        """Raise ConfigError for a native option the server itself refuses, before anything is bound."""
        ...

    def run(self, serving: Serving) -> int:
        """Serve ``serving.app`` until SIGINT/SIGTERM, drain, and return the process exit code."""
        ...
