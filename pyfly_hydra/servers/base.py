"""What the three built-in server adapters share: properties, the support table, and its checks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar

from pyfly_hydra.config import GranianProperties, ServerProperties
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.properties import non_default, non_default_granian

if TYPE_CHECKING:
    from pyfly_hydra.apps import AppTarget
    from pyfly_hydra.ports import EventLoopPort
    from pyfly_hydra.reload import WatchedSources

logger = logging.getLogger("pyfly_hydra")


@dataclass(frozen=True)
class Support:
    """How a server honours one ``server.*`` key: its own option, or ``None`` when it cannot.

    ``note`` explains a refusal, or an approximation that is logged once when the key is set.
    """

    option: str | None
    note: str = ""


class ServerAdapter:
    """Base of the built-in adapters: subclasses fill the tables and implement ``run``."""

    name: ClassVar[str]
    module: ClassVar[str]
    support: ClassVar[dict[str, Support]]
    loops: ClassVar[tuple[str, ...]]  # the loop names this server can run in its workers
    runs_loop_factories: ClassVar[bool] = False  # True: also runs any other loop from its factory string
    handles_proxy_headers: ClassVar[bool] = False  # False: the runner wraps the app in ProxyHeadersMiddleware
    native_wsgi: ClassVar[bool] = False  # False: a WSGI app is served through a2wsgi
    native_lifespan: ClassVar[tuple[str, ...]] = ()  # server.lifespan values the server's own switch honours
    reload_sources: WatchedSources | None = None  # what reload watches; set by the runner (serve.make_plan)

    def __init__(self, **properties: Any) -> None:
        granian = properties.pop("granian", None) or GranianProperties()
        if not isinstance(granian, GranianProperties):
            granian = GranianProperties(**dict(granian))
        self.properties = ServerProperties(**properties, granian=granian)

    def version(self) -> str:
        """The installed server's version: its ``__version__`` (it is imported to serve anyway), else metadata."""
        version = getattr(import_module(self.module), "__version__", None)
        if isinstance(version, str):
            return version
        from importlib.metadata import version as distribution_version

        return distribution_version(self.module)

    def check(self, *, loop: EventLoopPort) -> None:
        """Refuse what this server cannot honour, naming the key; log documented approximations."""
        if loop.name not in self.loops and not self.runs_loop_factories:
            raise ConfigError("loop", loop.name, f"{self.name} cannot run this loop; it runs {', '.join(self.loops)}")
        for key, value in non_default(self.properties).items():
            support = self.support.get(key, Support(None, "no equivalent option"))
            if support.option is None:
                raise ConfigError(f"server.{key}", value, f"{self.name} cannot honour it: {support.note}")
            if support.note:
                logger.info("server.%s on %s: %s", key, self.name, support.note)
        if self.name != "granian":
            for key, value in non_default_granian(self.properties).items():
                raise ConfigError(
                    f"server.granian.{key}", value, f"only granian reads server.granian.*; the server is {self.name}"
                )

    def watched_sources(self) -> WatchedSources:
        """What reload watches: as the runner set it, else the reload keys alone."""
        from pyfly_hydra.reload import watched_sources

        if self.reload_sources is not None:
            return self.reload_sources
        p = self.properties
        return watched_sources(
            dirs=p.reload_dirs, includes=p.reload_includes, excludes=p.reload_excludes, output_dir=None
        )

    def run(self, *, app: AppTarget, loop: EventLoopPort) -> int:
        """Serve ``app`` until SIGINT/SIGTERM and return the exit code."""
        raise NotImplementedError


def bind_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
