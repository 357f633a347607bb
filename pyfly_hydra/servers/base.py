"""What the three built-in server adapters share: properties, the support table, and its checks."""

from __future__ import annotations

import collections.abc
import difflib
import enum
import functools
import inspect
import logging
import re
import socket
import types
import typing
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pyfly_hydra.config.properties import key_values, keys_set
from pyfly_hydra.config.schema import ServerProperties
from pyfly_hydra.errors import ConfigError
from pyfly_hydra.registry import SERVER_NAMES, SERVERS
from pyfly_hydra.servers.hooks import Hook, require_hooks
from pyfly_hydra.servers.keys import Support, layers_asked, option_names, owner_of, refused
from pyfly_hydra.supervision.recycling import Recycling
from pyfly_hydra.supervision.supervisor import Supervisor, WorkerTarget

if TYPE_CHECKING:
    from pyfly_hydra.ports import EventLoopPort, Serving

logger = logging.getLogger("pyfly_hydra")


class ServerAdapter:
    """Base of the built-in adapters: subclasses fill the tables and implement ``run``."""

    name: ClassVar[str]
    module: ClassVar[str]
    support: ClassVar[dict[str, Support]]  # every server.* key (``websocket.max_size``): see servers.keys
    reserved_options: ClassVar[dict[str, str | None]] = {}  # native options pyfly-hydra sets -> the key deciding
    loops: ClassVar[tuple[str, ...]]  # the loop names this server can run in its workers
    runs_loop_factories: ClassVar[bool] = False  # True: also runs any other loop from its factory string
    native_wsgi: ClassVar[bool] = False  # False: a WSGI app is served through a2wsgi
    native_constructor: ClassVar[str]  # "module:Name" whose keywords server.options.<name>.* may set
    hooks: ClassVar[tuple[Hook, ...]] = ()  # the server's private internals pyfly-hydra replaces

    def __init__(self, *, properties: ServerProperties) -> None:
        self.properties = properties

    def version(self) -> str:
        """The installed server's version: its ``__version__`` (it is imported to serve anyway), else metadata."""
        version = getattr(import_module(self.module), "__version__", None)
        if isinstance(version, str):
            return version
        from importlib.metadata import version as distribution_version

        return distribution_version(self.module)

    def check(self, *, loop: EventLoopPort) -> None:
        """Refuse what this server cannot honour, naming the key; log documented approximations."""
        keys = keys_set(self.properties)
        require_hooks(self.name, self.version(), self.hooks, keys_set=set(keys))
        self.native_options()
        if loop.name not in self.loops and not (self.runs_loop_factories and loop.factory is not None):
            factories = " and any asyncio loop from its factory" if self.runs_loop_factories else ""
            runs = ", ".join(self.loops) + factories
            elsewhere = _servers_running(loop)
            instead = f"; {' or '.join(f'server={name}' for name in elsewhere)} runs it" if elsewhere else ""
            raise ConfigError("loop", loop.name, f"{self.name} cannot run this loop; it runs {runs}{instead}")
        for key, value in keys.items():
            support = self.key_support(key)
            if support.refused is not None:
                raise ConfigError(f"server.{key}", value, f"{self.name} cannot honour it: {support.refused}")
            if support.note:
                logger.info("server.%s on %s: %s", key, self.name, support.note)

    @classmethod
    def key_support(cls, key: str) -> Support:
        """How this server honours ``key``: its row, or refused (another server's own group, or no row)."""
        return cls.support.get(key) or refused(_no_option(key))

    def layers(self) -> frozenset[str]:
        """The layers of pyfly-hydra (``servers.keys.LAYERS``) that honour this server's keys at their values."""
        return layers_asked(self.support, key_values(self.properties).items())

    @classmethod
    def mapped_options(cls) -> frozenset[str]:
        """The server's own options pyfly-hydra sets: from the key table, and the ones it keeps for itself."""
        return option_names(cls.support) | frozenset(cls.reserved_options)

    @classmethod
    def native_option_names(cls) -> list[str]:
        """Every name ``server.options.<name>.*`` accepts: the constructor's keywords pyfly-hydra leaves alone."""
        mapped = cls.mapped_options()
        return [name for name in constructor_keywords(cls.native_constructor) if name not in mapped]

    def native_options(self) -> dict[str, Any]:
        """``server.options.<name>``, checked: every name a keyword of the server, none that the runner sets."""
        options = dict(self.properties.options.get(self.name) or {})
        if not options:
            return {}
        keywords = constructor_keywords(self.native_constructor)
        constructor = self.native_constructor.replace(":", ".")
        for name, value in options.items():
            key = f"server.options.{self.name}.{name}"
            if name in self.mapped_options():
                owner = owner_of(self.support, self.reserved_options, name)
                instead = f"set server.{owner} instead" if owner else "pyfly-hydra sets it itself"
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

    def supervisor(self, target: WorkerTarget, *, listeners: list[socket.socket], serving: Serving) -> Supervisor:
        """pyfly-hydra's supervisor running ``target`` as this server's workers on ``listeners``, set from the
        keys it honours (workers, drain, reload, recycling, the watchdog, rolls)."""
        p = self.properties
        return Supervisor(
            target,
            server=self.name,
            listeners=listeners,
            workers=p.workers,
            graceful_timeout=p.graceful_timeout,
            sources=serving.reload_sources,
            recycling=Recycling(
                max_lifetime=p.worker_max_lifetime,
                max_rss_mib=p.worker_max_rss_mib,
                rss_check_interval=p.worker_rss_check_interval,
            ),
            max_requests=p.max_requests_per_worker,
            worker_timeout=p.worker_timeout,
            roll_batch=p.roll_batch,
            record=serving.record,
            fork_first=serving.workers_may_fork,
        )

    @staticmethod
    def raw_command(*, app: str, port: int, loop: str) -> list[str]:
        """The server's own command line serving ``app`` with one worker on 127.0.0.1:``port`` (what
        ``benchmarks/compare.py`` measures the runner against); none for a server without one."""
        raise NotImplementedError("this server has no command line of its own")

    def served_http(self) -> str:
        """The HTTP version the server speaks for ``server.http`` (what the startup line and records say)."""
        return self.properties.http

    def connection_request_cap(self) -> tuple[str, int] | None:
        """The native option and number of requests after which the server closes a connection itself
        (None: it never does). A load client that does not reconnect loses that connection for good."""
        return None

    def check_native(self, serving: Serving) -> None:
        """Let the server check its own options as it would when serving (by default: nothing more to check)."""

    def run(self, serving: Serving) -> int:
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


def _no_option(key: str) -> str:
    """Why a key missing from a server's table is refused: another server's own group, or no option."""
    group, _, _ = key.rpartition(".")
    if group in SERVER_NAMES:  # a group named after a server is that server's own (server.granian.*)
        return f"only {group} reads server.{group}.*"
    return "no equivalent option"


def bind_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _servers_running(loop: EventLoopPort) -> list[str]:
    """The built-in servers that run ``loop`` (for the line refusing it elsewhere)."""

    def runs(target: str) -> bool:
        module, _, name = target.rpartition(".")
        adapter = getattr(import_module(module), name)
        return loop.name in adapter.loops or (adapter.runs_loop_factories and loop.factory is not None)

    return [server.name for server in SERVERS if runs(server.target)]
