"""What the three built-in server adapters share: properties, the support table, and its checks."""

from __future__ import annotations

import collections.abc
import difflib
import enum
import functools
import inspect
import logging
import re
import types
import typing
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pyfly_hydra.config.properties import non_default, non_default_granian, non_default_websocket
from pyfly_hydra.config.schema import GranianProperties, NativeOptions, ServerProperties, WebsocketProperties
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.servers.hooks import Hook, require_hooks
from pyfly_hydra.supervision.recycling import Recycling

if TYPE_CHECKING:
    from pyfly_hydra.ports import EventLoopPort
    from pyfly_hydra.supervision.reload import WatchedSources
    from pyfly_hydra.worker.apps import AppTarget

logger = logging.getLogger("pyfly_hydra")

# The nested groups of ``server.*``: key -> its dataclass.
PROPERTY_GROUPS: dict[str, type[Any]] = {
    "granian": GranianProperties,
    "websocket": WebsocketProperties,
    "options": NativeOptions,
}


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
    websocket_support: ClassVar[dict[str, Support]] = {}  # server.websocket.* keys, as ``support``
    loops: ClassVar[tuple[str, ...]]  # the loop names this server can run in its workers
    runs_loop_factories: ClassVar[bool] = False  # True: also runs any other loop from its factory string
    native_wsgi: ClassVar[bool] = False  # False: a WSGI app is served through a2wsgi
    head_limit_in_worker: ClassVar[bool] = False  # True: server.max_header_bytes checked again on parsed heads
    native_lifespan: ClassVar[tuple[str, ...]] = ()  # server.lifespan values the server's own switch honours
    reload_sources: WatchedSources | None = None  # what reload watches; set by the runner (serve.make_plan)
    log_config: dict[str, Any] | None = None  # the job's logging dictionary for the server; set by the runner
    native_constructor: ClassVar[str]  # "module:Name" whose keywords server.options.<name>.* may set
    mapped_options: ClassVar[frozenset[str]] = frozenset()  # the constructor's names pyfly-hydra sets itself
    hooks: ClassVar[tuple[Hook, ...]] = ()  # the server's private internals pyfly-hydra replaces

    def __init__(self, **properties: Any) -> None:
        for name, group in PROPERTY_GROUPS.items():  # nested groups may arrive as mappings
            value = properties.get(name) or group()
            properties[name] = value if isinstance(value, group) else group(**dict(value))
        self.properties = ServerProperties(**properties)

    def version(self) -> str:
        """The installed server's version: its ``__version__`` (it is imported to serve anyway), else metadata."""
        version = getattr(import_module(self.module), "__version__", None)
        if isinstance(version, str):
            return version
        from importlib.metadata import version as distribution_version

        return distribution_version(self.module)

    def check(self, *, loop: EventLoopPort) -> None:
        """Refuse what this server cannot honour, naming the key; log documented approximations."""
        require_hooks(self.name, self.version(), self.hooks, keys_set=set(non_default(self.properties)))
        self.native_options()
        if loop.name not in self.loops and not self.runs_loop_factories:
            raise ConfigError("loop", loop.name, f"{self.name} cannot run this loop; it runs {', '.join(self.loops)}")
        for key, value in non_default(self.properties).items():
            support = self.support.get(key, Support(None, "no equivalent option"))
            if support.option is None:
                raise ConfigError(f"server.{key}", value, f"{self.name} cannot honour it: {support.note}")
            if support.note:
                logger.info("server.%s on %s: %s", key, self.name, support.note)
        for key, value in non_default_websocket(self.properties).items():
            support = self.websocket_support.get(key, Support(None, "no equivalent option"))
            if support.option is None:
                raise ConfigError(f"server.websocket.{key}", value, f"{self.name} cannot honour it: {support.note}")
        if self.name != "granian":
            for key, value in non_default_granian(self.properties).items():
                raise ConfigError(
                    f"server.granian.{key}", value, f"only granian reads server.granian.*; the server is {self.name}"
                )

    @classmethod
    def key_support(cls) -> dict[str, Support]:
        """``support`` and ``websocket_support`` in one table, keyed as under ``server.`` (``websocket.max_size``)."""
        return {**cls.support, **{f"websocket.{key}": s for key, s in cls.websocket_support.items()}}

    @classmethod
    def native_option_names(cls) -> list[str]:
        """Every name ``server.options.<name>.*`` accepts: the constructor's keywords pyfly-hydra leaves alone."""
        return [name for name in constructor_keywords(cls.native_constructor) if name not in cls.mapped_options]

    def native_options(self) -> dict[str, Any]:
        """``server.options.<name>``, checked: every name a keyword of the server, none that the runner sets."""
        options = dict(getattr(self.properties.options, self.name, None) or {})
        if not options:
            return {}
        keywords = constructor_keywords(self.native_constructor)
        constructor = self.native_constructor.replace(":", ".")
        for name, value in options.items():
            key = f"server.options.{self.name}.{name}"
            if name in self.mapped_options:
                owners = self.key_support().items()
                owner = next((f"server.{k}" for k, s in owners if s.option and name in s.option), None)
                instead = f"set {owner} instead" if owner else "pyfly-hydra sets it itself"
                raise ConfigError(key, value, f"{constructor} gets this from pyfly-hydra; {instead}")
            if name not in keywords:
                close = difflib.get_close_matches(name, list(keywords), n=1)
                hint = f"did you mean server.options.{self.name}.{close[0]}? " if close else ""
                raise ConfigError(key, value, f"not an option of {constructor}; {hint}mode=info lists them")
        values = {name: as_annotated(value, keywords[name]) for name, value in options.items()}
        hints = constructor_hints(self.native_constructor)
        for name, value in values.items():
            if name in hints and not conforms(value, hints[name]):
                expected = keywords[name] or type_name(hints[name])
                key = f"server.options.{self.name}.{name}"
                raise ConfigError(key, options[name], f"{constructor} takes {expected} here")
        return values

    def watched_sources(self) -> WatchedSources:
        """What reload watches: as the runner set it, else the reload keys alone."""
        from pyfly_hydra.supervision.reload import watched_sources

        if self.reload_sources is not None:
            return self.reload_sources
        p = self.properties
        return watched_sources(
            dirs=p.reload_dirs, includes=p.reload_includes, excludes=p.reload_excludes, output_dir=None
        )

    def recycling(self) -> Recycling:
        """When workers are replaced: ``server.worker_max_lifetime`` and ``server.worker_max_rss_mib``."""
        p = self.properties
        return Recycling(
            max_lifetime=p.worker_max_lifetime,
            max_rss_mib=p.worker_max_rss_mib,
            rss_check_interval=p.worker_rss_check_interval,
        )

    def served_http(self) -> str:
        """The HTTP version the server speaks for ``server.http`` (what the startup line and records say)."""
        return self.properties.http

    def connection_request_cap(self) -> tuple[str, int] | None:
        """The native option and number of requests after which the server closes a connection itself
        (None: it never does). A load client that does not reconnect loses that connection for good."""
        return None

    def run(self, *, app: AppTarget, loop: EventLoopPort) -> int:
        """Serve ``app`` until SIGINT/SIGTERM and return the exit code."""
        raise NotImplementedError


@functools.cache
def constructor_keywords(target: str) -> dict[str, str]:
    """The keywords ``module:Name`` takes, each with its annotation as text (empty where there is none);
    for a class configured by attributes, its public ones (unannotated). Read once per target."""
    module_name, _, attribute = target.partition(":")
    obj = getattr(import_module(module_name), attribute)
    parameters = {
        p.name: str(p.annotation) if p.annotation is not p.empty else ""
        for p in inspect.signature(obj).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    }
    if parameters:
        return parameters
    return {
        name: ""
        for name, value in sorted(vars(obj).items())
        if not name.startswith("_") and not callable(value) and not isinstance(value, property | classmethod)
    }


@functools.cache
def constructor_hints(target: str) -> dict[str, Any]:
    """The types ``module:Name`` takes: its keywords' resolved annotations, or for a class configured by
    attributes the type of each attribute's default (an ``int`` default takes an int). Read once per target."""
    module_name, _, attribute = target.partition(":")
    obj = getattr(import_module(module_name), attribute)
    try:
        hints = typing.get_type_hints(obj.__init__ if inspect.isclass(obj) else obj)
    except Exception:  # an annotation that does not resolve: no types to check against
        hints = {}
    hints.pop("return", None)
    if any(name in hints for name in constructor_keywords(target)):
        return hints
    defaults = {name: getattr(obj, name, None) for name in constructor_keywords(target)}
    return {name: type(value) for name, value in defaults.items() if type(value) in (bool, int, float, str)}


def conforms(value: Any, hint: Any) -> bool:
    """Whether a YAML value (after ``as_annotated``) is of type ``hint``; True for what cannot be told."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is None or hint is type(None):
        return hint is Any or value is None
    if origin in (typing.Union, types.UnionType):
        return any(conforms(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        items = args[:1] if origin is not tuple or Ellipsis in args else ()
        return isinstance(value, list | tuple) and all(conforms(item, items[0]) for item in value if items)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in {member.value for member in hint} or value in hint.__members__
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str, Path):
        return isinstance(value, hint)
    return True  # a class, a callable, a protocol: the server's own check decides


def type_name(hint: Any) -> str:
    """``hint`` as a user reads it."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def as_annotated(value: Any, annotation: str) -> Any:
    """A YAML value for a keyword annotated ``Path`` or ``Sequence[Path]``: paths, not strings; one string
    for a ``Sequence[str]``: a list of it, as the server's own command line takes one."""
    if isinstance(value, str) and re.search(r"(Sequence|list|tuple)\[str\]", annotation):
        return [value]
    if not re.search(r"\bPath\b", annotation):
        return value
    if re.search(r"(Sequence|list|tuple)\[Path\]", annotation):
        items = [value] if isinstance(value, str) else value
        return [Path(item) for item in items]
    return Path(value) if isinstance(value, str) else value


def bind_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
